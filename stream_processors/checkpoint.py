"""Where a worker's state comes back from: the contract between the processor and the store it writes to.

The store keeps the workers' checkpoints, written with the records of each flush: each job's fold state as of that
flush (a snapshot), which jobs each partition's worker held in memory, and the newest event time it had folded. A
job comes back from its snapshot; when there is none it can use (another fold or registry version), from its
stored events folded again (the fold's state is a pure function of a job's events). A worker assigned a partition
loads just the jobs its last worker held and resumes at the group's committed offset: the cost follows the jobs
active then, not the log, nor how long those jobs have been running.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class StateStore(Protocol):
    def job_events(self, job_ids: Sequence[str]) -> Iterable[bytes]:
        """The stored events (as on the wire) of these jobs; nothing for a job the store does not know."""
        ...

    def load(self, job_ids: Sequence[str]) -> tuple[dict[str, tuple[int, str, bytes]], list[bytes]]:
        """The latest snapshot of each of these jobs that has one (job id -> fold version, registry version, state
        bytes), and the stored events of those that have none."""
        ...

    def resident_jobs(self, topic: str, partitions: Sequence[int]) -> dict[str, int]:
        """Job id -> partition, for the jobs the partitions' last worker held in memory."""
        ...

    def watermark(self, topic: str, partitions: Sequence[int]) -> int | None:
        """The newest event time (epoch ms) folded from these partitions, if any."""
        ...
