"""A run with its members, inputs and outputs as an RO-Crate (``rocrate`` library), following the Process Run Crate
profile (https://w3id.org/ro/wfrun/process/0.5).

From job documents (``query/jobs.py``) of a run's own job (when it has one) and its members:

- each job is a ``CreateAction`` ``#job-<id>``: ``name``, ``startTime``, ``endTime``, ``actionStatus``
  (``CompletedActionStatus`` for succeeded, ``FailedActionStatus`` for failed, aborted, preempted or lost,
  ``ActiveActionStatus`` while running), ``error`` (a failed job's exception), ``instrument`` the program (a
  ``SoftwareApplication`` ``#program-<name>``), ``agent`` the submitter (a ``Person`` ``#user-<name>``), ``object``
  the artifacts it used and ``result`` those it produced;
- the run's own action (or, for a workflow id with no job of its own, one made for it) takes as ``object`` the
  artifacts its members used that no member produced, and as ``result`` everything its members produced; its
  instrument is a ``ComputationalWorkflow`` named for the run, the crate's ``mainEntity``;
- artifacts are ``File`` entities identified by their URIs (percent-encoded where a URI character is not allowed),
  listed in the root dataset's ``hasPart``.

It is not a Workflow Run Crate: that profile needs the workflow's definition as a file, which jobprov does not
hold. ``datePublished`` is the run's last time, so the same run always gives the same crate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
_STATUS = {
    "succeeded": "CompletedActionStatus",
    "failed": "FailedActionStatus",
    "aborted": "FailedActionStatus",
    "preempted": "FailedActionStatus",
    "lost": "FailedActionStatus",
}


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text.replace("+00:00", "Z")


def _ref(value: str) -> str:
    return quote(value, safe="-._~")


def _artifacts(job: dict[str, Any], relation: str) -> list[str]:
    side = "src" if relation == "used" else "dst"
    found = [
        str(edge[side])[len("artifact:") :]
        for edge in job.get("lineage") or []
        if edge.get("relation") == relation and str(edge.get(side, "")).startswith("artifact:")
    ]
    return sorted(set(found))


def crate(run_id: str, run_job: dict[str, Any] | None, members: list[dict[str, Any]]) -> Any:
    """An ``rocrate.rocrate.ROCrate`` of the run (see the module docstring); write it with ``.write(dir)``."""
    try:
        from rocrate.model.contextentity import ContextEntity
        from rocrate.rocrate import ROCrate
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("RO-Crate export needs the rocrate library: pip install 'jobprov[rocrate]'") from exc

    doc = ROCrate()
    files: dict[str, Any] = {}
    entities: dict[str, Any] = {}

    def entity(identifier: str, kind: str, name: str) -> Any:
        if identifier not in entities:
            entities[identifier] = doc.add(ContextEntity(doc, identifier, properties={"@type": kind, "name": name}))
        return entities[identifier]

    def file(uri: str) -> Any:
        if uri not in files:
            identifier = quote(uri, safe=":/?#[]@!$&'()*+,;=%~")
            files[uri] = doc.add_file(identifier, fetch_remote=False, validate_url=False, properties={"name": uri})
        return files[uri]

    def action(job: dict[str, Any], instrument: Any, used: list[str], produced: list[str]) -> Any:
        properties: dict[str, Any] = {"name": str(job.get("name") or job["job_id"])}
        for key, field in (("startTime", "started_at"), ("endTime", "finished_at")):
            if _iso(job.get(field)):
                properties[key] = _iso(job.get(field))
        status = _STATUS.get(str(job.get("status")), "ActiveActionStatus")
        properties["actionStatus"] = {"@id": f"http://schema.org/{status}"}
        if status == "FailedActionStatus" and job.get("exception_message"):
            properties["error"] = str(job["exception_message"])
        if job.get("submitter"):
            properties["agent"] = {"@id": entity(f"#user-{_ref(job['submitter'])}", "Person", job["submitter"]).id}
        return doc.add_action(
            instrument,
            identifier=f"#job-{_ref(job['job_id'])}",
            object=[file(u) for u in used],
            result=[file(u) for u in produced],
            properties=properties,
        )

    produced_inside: set[str] = set()
    outputs: list[str] = []
    inputs: list[str] = []
    for member in members:
        program = str(member.get("name") or member["job_id"])
        instrument = entity(f"#program-{_ref(program)}", "SoftwareApplication", program)
        used, produced = _artifacts(member, "used"), _artifacts(member, "produced")
        action(member, instrument, used, produced)
        produced_inside.update(produced)
        outputs += produced
        inputs += used
    own = run_job or {"job_id": run_id, "name": run_id}
    run_name = str(own.get("name") or run_id)
    workflow = entity(f"#workflow-{_ref(run_name)}", "ComputationalWorkflow", run_name)
    run_used = sorted({u for u in [*inputs, *_artifacts(own, "used")] if u not in produced_inside})
    run_produced = sorted({*outputs, *_artifacts(own, "produced")})
    action(own, workflow, run_used, run_produced)
    doc.root_dataset["name"] = f"jobprov run {run_id}"
    doc.root_dataset["mainEntity"] = {"@id": workflow.id}
    doc.root_dataset["conformsTo"] = [{"@id": PROCESS_RUN_CRATE}]
    entity(PROCESS_RUN_CRATE, "CreativeWork", "Process Run Crate")["version"] = "0.5"
    times = [t for j in [own, *members] for t in (j.get("finished_at"), j.get("last_event_at")) if t is not None]
    if times:
        doc.root_dataset["datePublished"] = _iso(max(times, key=str))
    return doc
