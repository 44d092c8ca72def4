"""Versioned ClickHouse migrations, applied idempotently by `jobprov db migrate`.

One code path for every deployment: the embedded engine (chdb) and a single server use these statements
as they are; a cluster sets ``cluster`` and the same statements gain ``ON CLUSTER`` and Replicated engines.
Nothing else differs. Every time is ``DateTime64(3, 'UTC')``, written explicitly (the engine would otherwise
use the host's time zone).

Deduplication: every derived table is a ReplacingMergeTree keyed by the record's key and versioned by
``state_version`` (plus ``is_deleted`` for metric points, which move when late provenance re-buckets them);
reads use ``FINAL``. The events table is keyed by ``(job_id, event_id)``: a re-sent event is one row.
``resident_jobs``, ``job_states`` and ``partition_watermarks`` are the workers' checkpoints, not derived from the
log: which jobs a partition's worker held in memory, each job's fold state, and the newest event time it had seen,
written with the records of each flush, so a worker that takes a partition over loads just those jobs and resumes.
``buckets`` holds one row per metric and bucket (its key values and unit): the sink writes a bucket's row the first
time it sees the bucket, so a series is labelled by a lookup instead of a scan of its points. ``alerts`` holds the
detector's findings and their triage, folded from the alert events like any derived table.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobprov.errors import ConfigError

TS = "DateTime64(3, 'UTC')"


@dataclass(frozen=True)
class Target:
    database: str = "jobprov"
    cluster: str | None = None  # production: ON CLUSTER + Replicated engines

    def __post_init__(self) -> None:
        # Names are spliced into DDL (identifiers cannot be query parameters): only plain identifiers pass.
        for what, name in (("database", self.database), ("cluster", self.cluster)):
            if name is not None and not name.isidentifier():
                raise ConfigError(f"clickhouse_{what}", f"{name!r} is not a plain identifier")

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def engine(self, version: str | None = None, is_deleted: str | None = None) -> str:
        args = ", ".join(a for a in (version, is_deleted) if a)
        if self.cluster:
            path = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
            return f"ReplicatedReplacingMergeTree({path}{', ' + args if args else ''})"
        return f"ReplacingMergeTree({args})"


def _table(t: Target, name: str, columns: str, engine: str, order_by: str, extra: str = "") -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {t.database}.{name}{t.on_cluster} (\n{columns}\n) "
        f"ENGINE = {engine} ORDER BY ({order_by}){extra}"
    )


def migrations(t: Target) -> list[tuple[int, str, list[str]]]:
    """(version, description, statements), in order. Never edit a released migration: add one."""
    return [
        (
            1,
            "database and the derived tables",
            [
                f"CREATE DATABASE IF NOT EXISTS {t.database}{t.on_cluster}",
                _table(
                    t,
                    "events",
                    f"""    event_id String,
    job_id String,
    event_type LowCardinality(String),
    event_time {TS},
    emitted_at {TS},
    producer String,
    producer_instance String,
    seq UInt64,
    attempt UInt16,
    raw String CODEC(ZSTD(3)),
    ingested_at {TS} DEFAULT now64(3)""",
                    t.engine(),
                    "job_id, event_id",
                ),
                _table(
                    t,
                    "jobs",
                    f"""    job_id String,
    name Nullable(String),
    kind LowCardinality(Nullable(String)),
    status LowCardinality(String),
    attempts UInt16,
    submitted_at Nullable({TS}),
    started_at Nullable({TS}),
    finished_at Nullable({TS}),
    last_event_at {TS},
    exit_code Nullable(Int32),
    signal Nullable(Int32),
    exception_type Nullable(String),
    exception_message Nullable(String),
    host Nullable(String),
    duration_ms Nullable(Int64),
    cpu_user_s Nullable(Float64),
    cpu_system_s Nullable(Float64),
    peak_rss_bytes Nullable(Int64),
    io_read_bytes Nullable(Int64),
    io_write_bytes Nullable(Int64),
    parent_job_id Nullable(String),
    workflow_id Nullable(String),
    dag_node Nullable(String),
    submitter Nullable(String),
    scheduler_ids Map(String, String),
    attempt_statuses Map(String, String),
    anomalies Array(String),
    event_count UInt32,
    state_version UInt64,
    fold_version UInt16""",
                    t.engine("state_version"),
                    "job_id",
                ),
                _table(
                    t,
                    "provenance",
                    """    job_id String,
    values Map(String, String),
    default_bucket String,
    config_snapshot_uri Nullable(String),
    state_version UInt64,
    fold_version UInt16""",
                    t.engine("state_version"),
                    "job_id",
                ),
                _table(
                    t,
                    "metric_points",
                    f"""    metric LowCardinality(String),
    bucket String,
    time {TS},
    job_id String,
    event_id String,
    value Float64,
    unit LowCardinality(Nullable(String)),
    attempt UInt16,
    step LowCardinality(Nullable(String)),
    tags Map(String, String),
    bucket_keys Map(String, String),
    registry_version LowCardinality(String),
    state_version UInt64,
    is_deleted UInt8,
    fold_version UInt16""",
                    t.engine("state_version", "is_deleted"),
                    "metric, bucket, time, job_id, event_id",
                ),
                _table(
                    t,
                    "resources",
                    f"""    job_id String,
    event_id String,
    time {TS},
    attempt UInt16,
    cpu_user_s Float64,
    cpu_system_s Float64,
    rss_bytes Int64,
    peak_rss_bytes Int64,
    io_read_bytes Nullable(Int64),
    io_write_bytes Nullable(Int64),
    threads UInt32,
    processes UInt32,
    state_version UInt64,
    fold_version UInt16""",
                    t.engine("state_version"),
                    "job_id, event_id",
                ),
                _table(
                    t,
                    "lineage",
                    f"""    src String,
    dst String,
    relation LowCardinality(String),
    job_id String,
    event_id String,
    time {TS},
    role Nullable(String),
    checksum Nullable(String),
    size_bytes Nullable(Int64),
    step Nullable(String),
    state_version UInt64,
    fold_version UInt16,
    INDEX src_idx src TYPE bloom_filter GRANULARITY 1""",
                    t.engine("state_version"),
                    "dst, src, relation, job_id, event_id",
                ),
                _table(
                    t,
                    "annotations",
                    f"""    target_type LowCardinality(String),
    target String,
    key_name String,
    value String,
    author Nullable(String),
    time {TS},
    job_id String,
    event_id String,
    state_version UInt64,
    fold_version UInt16""",
                    t.engine("state_version"),
                    "target_type, target, key_name, job_id, event_id",
                ),
                _table(
                    t,
                    "steps",
                    f"""    job_id String,
    attempt UInt16,
    name String,
    step_attempt UInt16,
    status LowCardinality(String),
    parent_step Nullable(String),
    started_at Nullable({TS}),
    finished_at Nullable({TS}),
    exception_type Nullable(String),
    exception_message Nullable(String),
    caveats Array(String),
    state_version UInt64,
    fold_version UInt16""",
                    t.engine("state_version"),
                    "job_id, attempt, name, step_attempt",
                ),
                _table(
                    t,
                    "dead_letters",
                    f"""    source_topic String,
    source_partition Int32,
    source_offset Int64,
    reason LowCardinality(String),
    detail String,
    raw String CODEC(ZSTD(3)),
    received_at {TS} DEFAULT now64(3)""",
                    t.engine(),
                    "source_topic, source_partition, source_offset",
                ),
            ],
        ),
        (
            2,
            "buckets: each metric's buckets with their key values and unit (the series' labels)",
            [
                _table(
                    t,
                    "buckets",
                    """    metric LowCardinality(String),
    bucket String,
    keys Map(String, String),
    unit LowCardinality(Nullable(String))""",
                    t.engine(),
                    "metric, bucket",
                ),
                copy_buckets(t),
            ],
        ),
        (
            3,
            "the workers' checkpoints (resident jobs, job states, watermarks) and a job index on metric points",
            [
                f"ALTER TABLE {t.database}.metric_points{t.on_cluster} "
                "ADD INDEX IF NOT EXISTS job_idx job_id TYPE bloom_filter GRANULARITY 1",
                f"ALTER TABLE {t.database}.metric_points{t.on_cluster} MATERIALIZE INDEX job_idx",
                _table(
                    t,
                    "resident_jobs",
                    """    topic String,
    partition Int32,
    job_id String,
    resident UInt8,
    version UInt64""",
                    t.engine("version"),
                    "topic, partition, job_id",
                ),
                _table(
                    t,
                    "job_states",
                    """    job_id String,
    state String CODEC(ZSTD(3)),
    registry_version LowCardinality(String),
    state_version UInt64,
    fold_version UInt16""",
                    t.engine("state_version"),
                    "job_id",
                ),
                _table(
                    t,
                    "partition_watermarks",
                    """    topic String,
    partition Int32,
    max_event_time_ms Int64""",
                    t.engine("max_event_time_ms"),
                    "topic, partition",
                ),
            ],
        ),
        (
            4,
            "attempts: each attempt of a job with its own host, times, outcome, resources and caveats",
            [
                _table(
                    t,
                    "attempts",
                    f"""    job_id String,
    attempt UInt16,
    status LowCardinality(String),
    superseded Bool,
    host Nullable(String),
    submitted_at Nullable({TS}),
    started_at Nullable({TS}),
    finished_at Nullable({TS}),
    duration_ms Nullable(Int64),
    exit_code Nullable(Int32),
    signal Nullable(Int32),
    exception_type Nullable(String),
    exception_message Nullable(String),
    cpu_user_s Nullable(Float64),
    cpu_system_s Nullable(Float64),
    peak_rss_bytes Nullable(Int64),
    io_read_bytes Nullable(Int64),
    io_write_bytes Nullable(Int64),
    caveats Array(String),
    state_version UInt64,
    fold_version UInt16""",
                    t.engine("state_version"),
                    "job_id, attempt",
                ),
            ],
        ),
        (5, "alerts: each detected change with its latest triage (folded from the alert events)", [alerts_table(t)]),
    ]


def alerts_table(t: Target) -> str:
    """One row per alert, the highest ``state_version`` kept: a raise or triage delivered again, or replayed,
    is the same row. ``state`` is ``untriaged`` until someone triages it."""
    return _table(
        t,
        "alerts",
        f"""    alert_id String,
    metric LowCardinality(String),
    bucket String,
    label Map(String, String),
    unit LowCardinality(Nullable(String)),
    method LowCardinality(String),
    direction LowCardinality(String),
    last_good_job String,
    first_bad_job String,
    first_bad_event String,
    change_time {TS},
    before Float64,
    size Float64,
    relative_size Nullable(Float64),
    confidence Nullable(Float64),
    changes Array(String),
    raised_at {TS},
    state LowCardinality(String),
    note Nullable(String),
    author Nullable(String),
    triaged_at Nullable({TS}),
    triages UInt32,
    state_version UInt64,
    fold_version UInt16""",
        t.engine("state_version"),
        "alert_id",
    )


def copy_buckets(t: Target) -> str:
    """The buckets of the points stored, copied into ``buckets``: for points the sink did not write (those
    stored before the table existed, a bulk load). A row written twice is one row (ReplacingMergeTree by metric and
    bucket). Delete rows carry the keys of the bucket their point moved to, so they are left out. Data, not
    DDL: no ON CLUSTER (on a cluster the replicated table carries the rows to every replica)."""
    # The database name is a checked identifier (Target), not user text.
    return (
        f"INSERT INTO {t.database}.buckets (metric, bucket, keys, unit) "  # noqa: S608
        "SELECT metric, bucket, any(bucket_keys), any(unit) "
        f"FROM {t.database}.metric_points WHERE is_deleted = 0 GROUP BY metric, bucket"
    )
