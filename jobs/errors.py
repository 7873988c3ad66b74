"""The errors the job reports to its user, each with its exit code in the command line (plain Python: the report
command catches them without importing Spark)."""

from __future__ import annotations


class InputError(ValueError):
    """The input cannot be read as events: a missing path or partition, a missing column (the message lists those
    found), a column of a type events cannot have, or files of another format than input.format."""


class OutputError(ValueError):
    """The output cannot be written: output.catalog names a schema the session's catalog does not have."""


class ConflictError(RuntimeError):
    """Another run is writing to the same output; this run stopped before writing its own days."""


class AccountingError(RuntimeError):
    """A run's row counts do not add up: rows read != rows sessionized + quarantined + deduplicated +
    non-interactive."""
