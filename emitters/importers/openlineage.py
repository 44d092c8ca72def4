"""OpenLineage RunEvents (the JSON the official clients send) as jobprov events.

A run is a job: its id is the event's ``run.runId``, its name the job's ``name`` (the job's ``namespace`` is the
provenance key ``openlineage.namespace``). Per event type:

- ``START``: the job is submitted and started (kind ``pipeline``; no host is known: the client does not say);
- ``RUNNING`` and ``OTHER``: facets and datasets only;
- ``COMPLETE``, ``FAIL``, ``ABORT``: the job finished ``succeeded``, ``failed`` or ``aborted`` (a ``FAIL`` carries the
  ``errorMessage`` facet's message as the exception message, its programming language as the exception type).

Facets become provenance keys: ``parent`` (``openlineage.parent.run_id``, ``.job_namespace``, ``.job_name``; the
parent run is also the job's parent), ``nominalTime`` (``openlineage.nominal_start_time``, ``..._end_time``),
``errorMessage`` (``openlineage.error.message``, ``.programming_language``), ``processing_engine``
(``openlineage.processing_engine.name``, ``.version``, ``.adapter_version``) and the job facet ``jobType``
(``openlineage.job_type.processing_type``, ``.integration``, ``.job_type``). Input and output datasets are
artifacts used and produced, their URI ``namespace/name`` (``file`` namespaces give ``file://name``).

Event ids derive from the run id, the event type and time and the record's place, so a client that retries a
POST changes nothing. A body that is not a RunEvent (no ``run.runId``, no ``eventType``, no ``eventTime``) raises
:class:`BadInputError` naming the field; a DatasetEvent or JobEvent (no run) gives no records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobprov.emitters.importers.send import BadInputError, Record
from jobprov.schemas.models import (
    ArtifactProduced,
    ArtifactUsed,
    JobFinished,
    JobStarted,
    JobSubmitted,
    ProvenanceDeclared,
)

IMPORTER = "openlineage"
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
_FINISHED = {"COMPLETE": "succeeded", "FAIL": "failed", "ABORT": "aborted"}
# facet name -> (facet field, provenance key suffix)
_RUN_FACETS: dict[str, tuple[tuple[str, str], ...]] = {
    "nominalTime": (("nominalStartTime", "nominal_start_time"), ("nominalEndTime", "nominal_end_time")),
    "errorMessage": (("message", "error.message"), ("programmingLanguage", "error.programming_language")),
    "processing_engine": (
        ("name", "processing_engine.name"),
        ("version", "processing_engine.version"),
        ("openlineageAdapterVersion", "processing_engine.adapter_version"),
    ),
}
_JOB_TYPE = (
    ("processingType", "job_type.processing_type"),
    ("integration", "job_type.integration"),
    ("jobType", "job_type.job_type"),
)


def dataset_uri(dataset: dict[str, Any]) -> str:
    """An OpenLineage dataset (namespace + name) as one URI: ``s3://bucket`` + ``path`` -> ``s3://bucket/path``."""
    namespace, name = str(dataset.get("namespace", "")), str(dataset.get("name", ""))
    if namespace == "file":
        return f"file://{name}" if name.startswith("/") else f"file:///{name}"
    if "://" in namespace:
        return f"{namespace.rstrip('/')}/{name.lstrip('/')}"
    return f"{namespace}:{name}"


def _time(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise ValueError("eventTime: missing")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"eventTime: {raw!r} is not ISO 8601") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _facets(owner: dict[str, Any]) -> dict[str, Any]:
    facets = owner.get("facets")
    return facets if isinstance(facets, dict) else {}


def _provenance(run_facets: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    values = {"openlineage.namespace": str(job.get("namespace", ""))}
    for facet_name, fields in _RUN_FACETS.items():
        facet = run_facets.get(facet_name)
        if isinstance(facet, dict):
            for field, key in fields:
                if facet.get(field) is not None:
                    values[f"openlineage.{key}"] = str(facet[field])
    parent = run_facets.get("parent")
    if isinstance(parent, dict):
        run, pjob = parent.get("run") or {}, parent.get("job") or {}
        for key, value in (
            ("run_id", run.get("runId")),
            ("job_namespace", pjob.get("namespace")),
            ("job_name", pjob.get("name")),
        ):
            if value:
                values[f"openlineage.parent.{key}"] = str(value)
    job_type = _facets(job).get("jobType")
    if isinstance(job_type, dict):
        for field, key in _JOB_TYPE:
            if job_type.get(field):
                values[f"openlineage.{key}"] = str(job_type[field])
    return values


def read_run_event(body: Any, source: str = "RunEvent") -> list[Record]:
    """The records of one OpenLineage event (see the module docstring)."""
    if not isinstance(body, dict):
        raise BadInputError(source, ["not a JSON object"])
    run, job = body.get("run"), body.get("job")
    if run is None and "eventType" not in body:
        return []  # a DatasetEvent or JobEvent: static metadata, no run to record
    problems = []
    if not isinstance(run, dict) or not isinstance(run.get("runId"), str) or not run["runId"]:
        problems.append("run.runId: missing")
    if not isinstance(job, dict) or not job.get("name"):
        problems.append("job.name: missing")
    event_type = body.get("eventType", "OTHER")
    if event_type not in EVENT_TYPES:
        problems.append(f"eventType: {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    try:
        when = _time(body.get("eventTime"))
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise BadInputError(source, problems)
    assert isinstance(run, dict) and isinstance(job, dict)
    job_id, run_facets = run["runId"], _facets(run)
    parent = run_facets.get("parent")
    parent_id = ((parent.get("run") or {}).get("runId") if isinstance(parent, dict) else None) or None
    prefix = f"{event_type}@{body['eventTime']}"
    records: list[Record] = []
    if event_type == "START":
        submitted = JobSubmitted(name=str(job["name"]), kind="pipeline", parent_job_id=parent_id)
        records.append(Record(job_id, submitted, when, f"{prefix} submitted"))
        records.append(Record(job_id, JobStarted(host="", os="", kernel="", cwd=""), when, f"{prefix} started"))
    records.append(Record(job_id, ProvenanceDeclared(values=_provenance(run_facets, job)), when, f"{prefix} facets"))
    for direction, cls in (("inputs", ArtifactUsed), ("outputs", ArtifactProduced)):
        for i, dataset in enumerate(body.get(direction) or []):
            if not isinstance(dataset, dict) or not dataset.get("name"):
                raise BadInputError(source, [f"{direction}[{i}]: a dataset needs a namespace and a name"])
            records.append(Record(job_id, cls(uri=dataset_uri(dataset)), when, f"{prefix} {direction} {i}"))
    status = _FINISHED.get(event_type)
    if status is not None:
        error = run_facets.get("errorMessage") if status == "failed" else None
        error = error if isinstance(error, dict) else {}
        finished = JobFinished(
            status=status,
            exception_type=error.get("programmingLanguage"),
            exception_message=error.get("message"),
        )
        records.append(Record(job_id, finished, when, f"{prefix} finished"))
    return records
