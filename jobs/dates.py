"""Calendar rules shared by the stages: the date of an instant in a given time zone."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

_DAY_US = 86_400_000_000


def local_date(instant: Column, timezone: str) -> Column:
    """The calendar date of `instant` (a timestamp column) in `timezone`, whatever the Spark session's zone is."""
    # from_utc_timestamp shifts the instant's microseconds by the zone's offset at that instant: plain arithmetic,
    # never a cast through the session zone (which loses the hour that zone repeats at the end of summer time).
    local_us = F.unix_micros(F.from_utc_timestamp(instant, timezone))
    return F.date_from_unix_date(((local_us - F.pmod(local_us, F.lit(_DAY_US))) / _DAY_US).cast("int"))
