"""A job as OpenLineage RunEvents, built with openlineage-python's generated classes (spec 2-0-2).

From a job document (``query/jobs.py``, as ``jobprov query job --format json`` prints it):

- ``START`` at the job's start (or submission); then, for a finished job, ``COMPLETE`` (succeeded), ``FAIL``
  (failed) or ``ABORT`` (aborted, preempted, lost) at its end. A job still running has its ``START`` only.
- ``run.runId``: the job id when it is a UUID (a run that came in through OpenLineage keeps its id), else a
  uuid5 of it (stable: exporting twice gives the same ids). ``job``: namespace ``openlineage.namespace`` from the
  provenance, else ``jobprov``; name the job's name.
- Run facets: ``parent`` (the parent job, else the workflow, its runId made the same way), ``errorMessage`` (a
  failed job's exception; the language is the exception type, the spec requires one), ``processing_engine``
  (jobprov and its version), ``nominalTime`` when the provenance has ``openlineage.nominal_start_time``. Job
  facet ``jobType`` (``BATCH``, integration ``JOBPROV``, the job's kind).
- Inputs and outputs: the artifacts the job used and produced, split into namespace (scheme and authority) and
  name (the path), the inverse of the ingest's ``namespace/name``.

A run (a job with members, ``query/runs.py``) is its own job's events and its members', in event time order
(:func:`runs_events`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from jobprov import __version__

PRODUCER = f"https://pypi.org/project/jobprov/{__version__}"
_NAMESPACE = uuid.UUID("9f0b8a52-3c1d-4e6f-8a7b-2d4c6e8f0a1b")  # fixed: exported run ids derive from it
_TERMINAL = {"succeeded": "COMPLETE", "failed": "FAIL", "aborted": "ABORT", "preempted": "ABORT", "lost": "ABORT"}


def run_id(job_id: str) -> str:
    """The OpenLineage run id of a job: its own id if that is a UUID, else a uuid5 of it."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, job_id))


def split_uri(uri: str) -> tuple[str, str]:
    """An artifact URI as an OpenLineage dataset (namespace, name)."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return "file", parts.path
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"
    namespace, sep, name = uri.partition(":")
    return (namespace, name) if sep and name else ("jobprov", uri)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value).replace("+00:00", "Z")


def _datasets(job: dict[str, Any], relation: str) -> list[tuple[str, str]]:
    out = []
    for edge in job.get("lineage", []):
        if edge.get("relation") != relation:
            continue
        node = edge["src"] if relation == "used" else edge["dst"]
        if isinstance(node, str) and node.startswith("artifact:"):
            out.append(split_uri(node[len("artifact:") :]))
    return out


def runs_events(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The RunEvents of several jobs (a run and its members) in event time order; a member's ``parent`` facet
    names the run by the run's job name when the run is among them."""
    names = {job["job_id"]: str(job.get("name") or job["job_id"]) for job in jobs}
    events = [event for job in jobs for event in run_events(job, names)]
    return sorted(events, key=lambda e: datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")))


def run_events(job: dict[str, Any], parent_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The job's RunEvents as the JSON objects the spec defines (see the module docstring). ``parent_names``:
    job names by id, for the parent facet of a job whose parent came in other than through OpenLineage."""
    try:
        from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
        from openlineage.client.generated import (
            error_message_run,
            job_type_job,
            nominal_time_run,
            parent_run,
            processing_engine_run,
        )
        from openlineage.client.serde import Serde
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("OpenLineage export needs openlineage-python: pip install 'jobprov[openlineage]'") from exc

    provenance: dict[str, str] = job.get("provenance") or {}
    namespace = provenance.get("openlineage.namespace") or "jobprov"
    facets: dict[str, Any] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=__version__, name="jobprov", producer=PRODUCER
        )
    }
    parent = job.get("parent_job_id") or job.get("workflow_id")  # a workflow's task: the workflow is its parent
    if parent:
        parent_name = provenance.get("openlineage.parent.job_name") or (parent_names or {}).get(parent) or parent
        parent_ns = provenance.get("openlineage.parent.job_namespace") or namespace
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_id(parent)),
            job=parent_run.Job(namespace=parent_ns, name=parent_name),
            producer=PRODUCER,
        )
    if provenance.get("openlineage.nominal_start_time"):
        facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=provenance["openlineage.nominal_start_time"],
            nominalEndTime=provenance.get("openlineage.nominal_end_time"),
            producer=PRODUCER,
        )
    job_facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="JOBPROV", jobType=str(job.get("kind") or "job").upper(),
            producer=PRODUCER,
        )
    }  # fmt: skip
    ol_job = Job(namespace=namespace, name=str(job.get("name") or job["job_id"]), facets=job_facets)
    rid = run_id(job["job_id"])
    inputs = [InputDataset(namespace=ns, name=name) for ns, name in _datasets(job, "used")]
    outputs = [OutputDataset(namespace=ns, name=name) for ns, name in _datasets(job, "produced")]
    start = job.get("started_at") or job.get("submitted_at") or job.get("last_event_at")
    events = [
        RunEvent(
            eventType=RunState.START, eventTime=_iso(start), run=Run(runId=rid, facets=facets), job=ol_job,
            inputs=inputs, outputs=[], producer=PRODUCER,
        )
    ]  # fmt: skip
    terminal = _TERMINAL.get(str(job.get("status")))
    if terminal is not None:
        end_facets: dict[str, Any] = {}
        if terminal == "FAIL" and job.get("exception_message"):
            end_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=job["exception_message"],
                programmingLanguage=job.get("exception_type") or "unknown",
                producer=PRODUCER,
            )
        end = job.get("finished_at") or job.get("last_event_at")
        events.append(
            RunEvent(
                eventType=RunState[terminal], eventTime=_iso(end), run=Run(runId=rid, facets=end_facets),
                job=ol_job, inputs=inputs, outputs=outputs, producer=PRODUCER,
            )
        )  # fmt: skip
    return [dict(Serde.to_dict(e)) for e in events]
