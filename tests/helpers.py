"""Shared test helpers."""

from datetime import datetime


def utc(text: str) -> datetime:
    """The UTC instant 'YYYY-MM-DDTHH:MM[:SS[.fff]]' as Spark collects it: a naive datetime in this UTC process."""
    return datetime.fromisoformat(text)
