"""What a run costs beside its work, counted as it goes: Spark jobs, Delta log reads and Delta commits, per stage.

A small daily run's time goes mostly to fixed costs (a Spark job of a few tasks, a Delta snapshot or history read,
a commit: each a fraction of a second to seconds), so their number is the figure to watch. Spark jobs are counted
by Spark itself (each stage runs under a job group of its own); Delta operations where the job calls Delta: every
read of a table's log (an existence check, a DeltaTable, a read of the table, a history read) and every commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession

DELTA_READS = "delta_reads"
DELTA_COMMITS = "delta_commits"

# The tallies being counted now, innermost last. A Delta operation counts in the innermost only, as a Spark job
# counts in the innermost job group.
_open: list[dict[str, int]] = []


def count(kind: str) -> None:
    """Note one Delta operation of `kind` (DELTA_READS or DELTA_COMMITS) in the innermost open tally."""
    if _open:
        _open[-1][kind] += 1


@dataclass(frozen=True)
class Costs:
    """A stage's Spark jobs, Delta log reads and Delta commits."""

    spark_jobs: int
    delta_reads: int
    delta_commits: int

    def __add__(self, other: Costs) -> Costs:
        return Costs(self.spark_jobs + other.spark_jobs, self.delta_reads + other.delta_reads,
                     self.delta_commits + other.delta_commits)

    def describe(self) -> str:
        return f"Spark jobs {self.spark_jobs}, Delta reads {self.delta_reads}, Delta commits {self.delta_commits}"


NONE = Costs(0, 0, 0)


class Tally:
    """Counts from its creation to `stop()`. Tallies nest: an outer one counts only what runs outside the inner
    ones (each tally's Spark jobs run in a job group of its own); stopping puts the caller's job group back."""

    def __init__(self, spark: SparkSession) -> None:
        self._context = spark.sparkContext
        self._group = f"sessionlake-{uuid.uuid4().hex}"
        self._previous = (self._context.getLocalProperty("spark.jobGroup.id"),
                          self._context.getLocalProperty("spark.job.description"))
        self._delta = {DELTA_READS: 0, DELTA_COMMITS: 0}
        self._costs: Costs | None = None
        _open.append(self._delta)
        self._context.setJobGroup(self._group, "sessionlake")

    def stop(self) -> Costs:
        """The tally's costs; the first call ends it, later calls return the same."""
        if self._costs is None:
            # By identity: two tallies with equal counts are equal dicts, and list.remove would take the first.
            _open[:] = [d for d in _open if d is not self._delta]
            jobs = len(self._context.statusTracker().getJobIdsForGroup(self._group))
            self._context.setLocalProperty("spark.jobGroup.id", self._previous[0])
            self._context.setLocalProperty("spark.job.description", self._previous[1])
            self._costs = Costs(jobs, self._delta[DELTA_READS], self._delta[DELTA_COMMITS])
        return self._costs


@contextmanager
def counting(spark: SparkSession) -> Iterator[Tally]:
    """A Tally of the block, stopped when it ends (read its costs with stop())."""
    tally = Tally(spark)
    try:
        yield tally
    finally:
        tally.stop()
