"""The ClickHouse store as the workers' :class:`~jobprov.stream_processors.checkpoint.StateStore`: a job's events
from ``events`` (ordered by job id first, so one job's events are one range of the primary key), the checkpoints
from ``job_states``, ``resident_jobs`` and ``partition_watermarks``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from jobprov.sinks.clickhouse.ddl import Target

_CHUNK = 2_000  # job ids per query: bounded query text whatever the number of jobs


class ClickHouseStateStore:
    def __init__(self, client: Any, database: str) -> None:
        Target(database)  # a plain identifier, or ConfigError
        self.client, self.database = client, database

    def job_events(self, job_ids: Sequence[str]) -> Iterator[bytes]:
        # No FINAL: a row stored twice is one event folded twice, which the fold recognises as a duplicate.
        sql = f"SELECT raw FROM {self.database}.events WHERE job_id IN {{jobs:Array(String)}}"  # noqa: S608
        for start in range(0, len(job_ids), _CHUNK):
            rows = self.client.query(
                sql, parameters={"jobs": list(job_ids[start : start + _CHUNK])}, column_formats={"raw": "bytes"}
            ).result_rows
            for (raw,) in rows:
                yield raw

    def load(self, job_ids: Sequence[str]) -> tuple[dict[str, tuple[int, str, bytes]], list[bytes]]:
        # One round trip for the common case (a batch's new jobs: neither): the snapshots, and the events of the
        # jobs that have none. Those jobs are picked before the events are read, so the primary key skips the
        # events of the others: filtering the events read instead read every event of the jobs with snapshots,
        # and a resume cost what its jobs had run (benchmarks/state.py: 16 ms at 100k events, 31 at 1M; 14 now).
        sql = (
            "SELECT job_id, 1, fold_version, registry_version, state "  # noqa: S608 - checked identifier
            f"FROM {self.database}.job_states FINAL WHERE job_id IN {{jobs:Array(String)}} "
            "UNION ALL SELECT job_id, 0, 0, '', raw "
            f"FROM {self.database}.events WHERE job_id IN (SELECT arrayJoin({{jobs:Array(String)}}) AS job_id WHERE "
            f"job_id NOT IN (SELECT job_id FROM {self.database}.job_states WHERE job_id IN {{jobs:Array(String)}}))"
        )
        found: dict[str, tuple[int, str, bytes]] = {}
        events: list[bytes] = []
        for start in range(0, len(job_ids), _CHUNK):
            rows = self.client.query(
                sql,
                parameters={"jobs": list(job_ids[start : start + _CHUNK])},
                column_formats={"state": "bytes", "raw": "bytes"},
            ).result_rows
            for job_id, is_snapshot, fold_version, registry_version, data in rows:
                if is_snapshot:
                    found[job_id] = (int(fold_version), registry_version, data)
                else:
                    events.append(data)
        return found, events

    def resident_jobs(self, topic: str, partitions: Sequence[int]) -> dict[str, int]:
        rows = self.client.query(
            f"SELECT job_id, partition FROM {self.database}.resident_jobs FINAL "  # noqa: S608 - checked identifier
            "WHERE topic = {topic:String} AND partition IN {partitions:Array(Int32)} AND resident = 1",
            parameters={"topic": topic, "partitions": list(partitions)},
        ).result_rows
        return {job_id: int(partition) for job_id, partition in rows}

    def watermark(self, topic: str, partitions: Sequence[int]) -> int | None:
        rows = self.client.query(
            f"SELECT max(max_event_time_ms), count() FROM {self.database}.partition_watermarks FINAL "  # noqa: S608
            "WHERE topic = {topic:String} AND partition IN {partitions:Array(Int32)}",
            parameters={"topic": topic, "partitions": list(partitions)},
        ).result_rows
        return int(rows[0][0]) if rows and rows[0][1] else None
