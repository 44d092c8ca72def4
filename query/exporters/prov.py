"""Jobs and artifacts as W3C PROV documents, built with the ``prov`` library (PROV-JSON, PROV-N, PROV-O Turtle).

From job documents (``query/jobs.py``):

- each job is an activity ``job:<id>`` (start and end times, ``jobprov:status``, ``jobprov:name``, ``jobprov:kind``,
  exit code, exception; each provenance value as ``jobprov:<key>``, each annotation as ``jobprov:annotation.<key>``);
  each of its attempts an activity ``job:<id>/attempt/<n>`` (``jobprov:job``, ``jobprov:status``), a retry
  ``wasInformedBy`` the attempt before it; a job with a parent (or a workflow) ``wasInformedBy`` the parent's
  activity, so a run exported with its members links each member to the run;
- each artifact an entity ``artifact:<percent-encoded URI>`` (``prov:location`` the URI, checksum and role when
  known): ``used`` by the jobs that read it, ``wasGeneratedBy`` the job that wrote it;
- agents: the host it ran on (``host:<name>``, a ``prov:SoftwareAgent``) and the submitter (``user:<name>``, a
  ``prov:Person``), each ``wasAssociatedWith`` the job.

Identifiers are percent-encoded so that every serialization is valid and loads back into ``prov`` unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

FORMATS = {"json": "json", "provn": "provn", "ttl": "rdf"}
NAMESPACE = "https://jobprov.dev/ns#"


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _local(value: str) -> str:
    return quote(value, safe="-._~")


def document(jobs: list[dict[str, Any]]) -> Any:
    """A ``prov.model.ProvDocument`` of these jobs (see the module docstring)."""
    try:
        from prov.model import PROV_LOCATION, PROV_TYPE, ProvDocument
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("PROV export needs the prov library: pip install 'jobprov[prov]'") from exc

    doc = ProvDocument()
    doc.add_namespace("jobprov", NAMESPACE)
    for prefix in ("job", "artifact", "host", "user"):
        doc.add_namespace(prefix, f"{NAMESPACE}{prefix}/")
    entities: dict[str, Any] = {}
    agents: dict[str, Any] = {}
    for job in jobs:
        job_id = job["job_id"]
        attributes: dict[Any, Any] = {PROV_TYPE: "jobprov:Job", "jobprov:status": job.get("status") or "unknown"}
        for key in ("name", "kind", "exit_code", "exception_type", "exception_message", "workflow_id"):
            if job.get(key) is not None:
                attributes[f"jobprov:{key}"] = job[key]
        for key, value in sorted((job.get("provenance") or {}).items()):
            attributes[f"jobprov:{_local(key)}"] = value
        for note in job.get("annotations") or []:
            attributes[f"jobprov:annotation.{_local(note['key_name'])}"] = note["value"]
        activity = doc.activity(
            f"job:{_local(job_id)}", _time(job.get("started_at")), _time(job.get("finished_at")), attributes
        )
        previous = None
        for number, status in sorted((job.get("attempt_statuses") or {}).items(), key=lambda kv: int(kv[0])):
            attempt = doc.activity(
                f"job:{_local(job_id)}/attempt/{number}",
                other_attributes={PROV_TYPE: "jobprov:Attempt", "jobprov:job": job_id, "jobprov:status": status},
            )
            if previous is not None:
                doc.wasInformedBy(attempt, previous)
            previous = attempt
        parent = job.get("parent_job_id") or job.get("workflow_id")  # a run's member: informed by the run
        if parent:
            doc.wasInformedBy(activity, f"job:{_local(parent)}")
        for kind, key, agent_type in (("host", "host", "prov:SoftwareAgent"), ("user", "submitter", "prov:Person")):
            if job.get(key):
                name = f"{kind}:{_local(job[key])}"
                if name not in agents:
                    agents[name] = doc.agent(name, {PROV_TYPE: agent_type})
                doc.wasAssociatedWith(activity, agents[name])
        for edge in job.get("lineage") or []:
            relation = edge.get("relation")
            if relation not in ("used", "produced"):
                continue
            node = edge["src"] if relation == "used" else edge["dst"]
            if not str(node).startswith("artifact:"):
                continue
            uri = str(node)[len("artifact:") :]
            entity = entities.get(uri)
            if entity is None:
                entity_attributes: dict[Any, Any] = {PROV_LOCATION: uri}
                if edge.get("checksum"):
                    entity_attributes["jobprov:checksum"] = edge["checksum"]
                entity = entities[uri] = doc.entity(f"artifact:{_local(uri)}", entity_attributes)
            if relation == "used":
                doc.used(activity, entity)
            else:
                doc.wasGeneratedBy(entity, activity)
    return doc


def serialize(doc: Any, fmt: str) -> str:
    """The document as PROV-JSON (``json``), PROV-N (``provn``) or PROV-O Turtle (``ttl``)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "ttl":
        return str(doc.serialize(format="rdf", rdf_format="turtle"))
    return str(doc.serialize(format=FORMATS[fmt], **({"indent": 2} if fmt == "json" else {})))
