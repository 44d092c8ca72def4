# ruff: noqa: RUF009 - the field helpers (text, number, pairs, …) return dataclasses.field(...)
"""The questions the query layer answers and their parameters, defined once.

Each question is a frozen dataclass; each field a parameter, with its type, default, bounds
(:mod:`jobprov.query.limits`), help, and its names on the command line and over HTTP
(:mod:`jobprov.query.parameters` says how). Everything else is derived from these classes: the CLI's arguments
and options (:mod:`jobprov.cli.options`), the HTTP API's routes and query parameters (:mod:`jobprov.query.api`),
the HTTP client's request (:meth:`Question.http_request`) and the local backend's call
(:mod:`jobprov.query.backend`). Adding a parameter is one field here.

A question checks its values when it is made, whoever makes it: a bad value raises :class:`ParameterError`
naming the parameter and the reason, which the CLI reports as a usage error on its option and the HTTP API as a
422 naming the query parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from jobprov.query.limits import DEPTH, DEVIATIONS, MIN_POINTS, ROWS, WINDOW
from jobprov.query.parameters import (
    ARGUMENT,
    KINDS,
    ParameterError,
    Question,
    Spec,
    argument,
    choice,
    flag,
    many,
    number,
    pairs,
    text,
    time,
)
from jobprov.stream_processors.provenance import CHANGE_KINDS

__all__ = ["ARGUMENT", "KINDS", "QUESTIONS", "ParameterError", "Question", "Spec", "argument", "number"]

# --- the questions -------------------------------------------------------------------------------------------

_EXCLUDE = "Leave out jobs annotated so."
_WHERE = 'A group: "ATTR OP VALUE | …" (every group must hold).'


@dataclass(frozen=True)
class Series(Question):
    ROUTE = "/series/{metric:path}"
    SUMMARY = "A metric over time, one line per bucket or chosen keys"
    metric: str = argument("The metric.")
    group_by: tuple[str, ...] = many("Group by these provenance keys instead of the bucket.")
    filters: Mapping[str, str] = pairs("Only jobs with this provenance.", http="filter", cli="--filter")
    exclude_annotated: Mapping[str, str] = pairs(_EXCLUDE)
    since: datetime | None = time("ISO 8601 time: only points at or after it.")
    until: datetime | None = time("ISO 8601 time: only points before it.")
    bucket: str | None = text("Only this bucket (its id, as `jobprov query bucket` prints it).")


@dataclass(frozen=True)
class Bucket(Question):
    ROUTE = "/buckets/{metric:path}"
    SUMMARY = "Which bucket this provenance belongs to, and its baseline"
    metric: str = argument("The metric.")
    provenance: Mapping[str, str] = pairs("The provenance of the metric.", cli=ARGUMENT, metavar="KEY=VALUE...")
    last: int = number(50, ROWS, "Points in the baseline.")
    as_of: str | None = text("A job id or an ISO 8601 time: the baseline of the points strictly before it.")
    exclude_annotated: Mapping[str, str] = pairs(_EXCLUDE)


@dataclass(frozen=True)
class Compare(Question):
    ROUTE = "/compare"
    SUMMARY = "Provenance keys and input checksums that differ between two jobs"
    job_a: str = argument("A job id.", http="a")
    job_b: str = argument("Another job id.", http="b")
    include_env: bool = flag("Every row: environment variables, and each package.", cli="--all")
    namespace: str | None = choice(CHANGE_KINDS, "Only parameters, context, collected facts or inputs.")


@dataclass(frozen=True)
class Regressions(Question):
    ROUTE = "/regressions/{metric:path}"
    SUMMARY = "Changes of level per bucket: regressions and improvements"
    metric: str = argument("The metric.")
    method: str | None = choice(
        ("changepoint", "rolling_median"), "Default: the metric's policy in the registry (changepoint)."
    )
    window: int = number(10, WINDOW, "rolling_median: points in the baseline.")
    k: float = number(4.0, DEVIATIONS, "rolling_median: robust deviations that count.", cli="-k")
    min_points: int = number(10, MIN_POINTS, "rolling_median: points of a bucket before any is judged.")
    onset_only: bool = flag(
        "rolling_median: only the first outlier of each run of outliers.", default=True, cli="--all", switch=False,
        switch_help="rolling_median: every outlier, not only each run's first.",
    )  # fmt: skip
    exclude_annotated: Mapping[str, str] = pairs(_EXCLUDE)


@dataclass(frozen=True)
class Check(Question):
    ROUTE = "/check"
    SUMMARY = "A job's points against their buckets' current level (CI gating)"
    job_id: str | None = text("A job id.", http="job", cli=ARGUMENT)
    metric: str | None = text("Only this metric (required with --bucket).")
    bucket: str | None = text("Judge the newest job of this bucket (its id) instead of JOB_ID; needs --metric.")


@dataclass(frozen=True)
class Lineage(Question):
    ROUTE = "/lineage"
    SUMMARY = "Ancestors or descendants of a job or an artifact"
    ref: str = argument("A job id, an artifact URI, or a job:/artifact: node.")
    direction: str = choice(("up", "down"), "up: ancestors; down: descendants.", "up", cli="--down", switch="down",
                            switch_help="Descendants instead of ancestors.")  # fmt: skip
    depth: int = number(10, DEPTH, "Levels to walk.")
    stop_at: Mapping[str, str] = pairs("Do not go past jobs with this provenance.")
    containment: bool = flag("Follow parent jobs and workflows too, not only used/produced.")


@dataclass(frozen=True)
class FindJobs(Question):
    ROUTE = "/jobs"
    SUMMARY = "Jobs matching every where-group (ATTR OP VALUE | …)"
    where: tuple[str, ...] = argument(_WHERE, "many", cli="--where")
    limit: int = number(1000, ROWS, "At most this many.")


@dataclass(frozen=True)
class FindArtifacts(FindJobs):
    ROUTE = "/artifacts"
    SUMMARY = "Artifacts matching every where-group, each with its producers, consumers and annotations"


@dataclass(frozen=True)
class Outputs(Question):
    ROUTE = "/lineage/outputs"
    SUMMARY = "Outputs of the jobs that have an ancestor job matching a query"
    where: tuple[str, ...] = argument('The jobs: "ATTR OP VALUE | …" (groups AND).', "many", cli="--where")
    ancestor: tuple[str, ...] = argument("An ancestor job they must have: groups as --where.", "many", cli="--ancestor")
    depth: int = number(20, DEPTH, "Levels to walk.")


@dataclass(frozen=True)
class GroupJobs(Question):
    ROUTE = "/job-groups"
    SUMMARY = "Jobs grouped by provenance keys or job columns, counted per status"
    keys: tuple[str, ...] = argument('Keys, e.g. "param.band", "sys.host", "job.kind".', "many", http="key",
                                     metavar="KEY...")  # fmt: skip
    where: tuple[str, ...] = many("Only jobs matching this group: " + _WHERE)
    limit: int = number(1000, ROWS, "Groups (the largest first).")


@dataclass(frozen=True)
class RunsTable(Question):
    ROUTE = "/runs"
    SUMMARY = "Runs side by side: status, members, chosen parameters and annotations"
    run_ids: tuple[str, ...] = argument("Run ids.", "many", http="run", metavar="RUN...")
    parameters: tuple[str, ...] = many("A parameter to show (model or param.model).", http="param", cli="--param")
    annotations: tuple[str, ...] = many("An annotation key to show.", http="annotation", cli="--annotation")


@dataclass(frozen=True)
class CompareRuns(Question):
    ROUTE = "/compare-runs"
    SUMMARY = "How two runs differ: programs, parameters, inputs, outputs, structure"
    run_a: str = argument("A run id.", http="a")
    run_b: str = argument("Another run id.", http="b")


def _naming(name: str, route: str, summary: str, *field: str) -> type[Question]:
    """A question whose only parameter (if any) names the thing asked about: ``field`` is (name, help)."""
    fields = [(field[0], str, argument(field[1]))] if field else []
    namespace = {"ROUTE": route, "SUMMARY": summary, "__module__": __name__}
    made: type[Question] = dataclasses.make_dataclass(name, fields, bases=(Question,), frozen=True, namespace=namespace)
    return made


# Ids may hold "/" (workflow tools name jobs run/node): they are path parameters that span segments, and the
# resources route comes before the job's so that ".../resources" is not read as part of an id.
Resources = _naming("Resources", "/jobs/{job_id:path}/resources", "A job's resource samples in time order",
                    "job_id", "A job id.")  # fmt: skip
Job = _naming("Job", "/jobs/{job_id:path}", "Everything about one job", "job_id", "A job id.")
Run = _naming("Run", "/runs/{run_id:path}", "A run and its members: program, parameters, status, artifacts",
              "run_id", "A run id.")  # fmt: skip
Artifact = _naming("Artifact", "/artifact", "One artifact: producers, consumers, revisions, annotations", "uri",
                   "The artifact's URI.")  # fmt: skip
Status = _naming("Status", "/status", "Jobs by status")
Metrics = _naming("Metrics", "/metrics", "Every metric with points: unit, points, buckets, newest point")


QUESTIONS: tuple[type[Question], ...] = (
    Metrics, Series, Bucket, Compare, Regressions, Check, Lineage, Outputs, FindJobs, FindArtifacts, Resources,
    Job, Artifact, GroupJobs, RunsTable, Run, CompareRuns, Status,
)  # fmt: skip
"""Every question, in the order the HTTP API declares their routes (a route that is a prefix of another comes
after it)."""
