"""Where a worker's state comes back from: the contract between the processor and the store it writes to.

The fold's state is a pure function of a job's events, so a job's state is brought back by folding its events
again, read from the store's copy of the log (no serialized state to keep compatible across fold versions). The
store also keeps the workers' checkpoints, written with the records of each batch: which jobs each partition's
worker held in memory, and the newest event time it had folded. A worker that is assigned a partition loads just
those jobs and resumes at the group's committed offset: the cost follows the jobs active then, not the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class StateStore(Protocol):
    def job_events(self, job_ids: Sequence[str]) -> Iterable[bytes]:
        """The stored events (as on the wire) of these jobs; nothing for a job the store does not know."""
        ...

    def resident_jobs(self, topic: str, partitions: Sequence[int]) -> dict[str, int]:
        """Job id -> partition, for the jobs the partitions' last worker held in memory."""
        ...

    def watermark(self, topic: str, partitions: Sequence[int]) -> int | None:
        """The newest event time (epoch ms) folded from these partitions, if any."""
        ...
