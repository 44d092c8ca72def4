"""The query parameters are defined once (jobprov.query.params): the CLI options, the HTTP query parameters and the
HTTP client's requests are derived from the questions, so a question survives each face unchanged, and a bad
value is refused on each face naming the parameter and the reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import click
import pytest
from click.testing import CliRunner
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from jobprov.cli.options import make, options
from jobprov.query import limits
from jobprov.query import params as p
from jobprov.query.api import http_parameters
from jobprov.query.params import ARGUMENT, QUESTIONS, ParameterError, Question

ODD = "pc1/A ü 1"  # an id with "/", a space and a non-ASCII letter
T = datetime(2026, 10, 1, 2, 3, 4, tzinfo=UTC)

# One question of each kind, every field away from its default where it has one.
SAMPLES: list[Question] = [
    p.Metrics(),
    p.Series(ODD, group_by=("band", "param.dataset"), filters={"band": "r", "x": "a=b"},
             exclude_annotated={"quality": "bad"}, since=T, until=T, bucket="b1"),
    p.Bucket(ODD, {"dataset": "hsc", "band": "r"}, last=7, as_of=ODD, exclude_annotated={"q": "bad"}),
    p.Compare(ODD, "b/2", include_env=True, namespace="input"),
    p.Regressions(ODD, method="rolling_median", window=6, k=2.5, min_points=5, onset_only=False,
                  exclude_annotated={"q": "bad"}),
    p.Check(ODD, metric="AM1", bucket="b1"),
    p.Lineage(f"artifact:s3://b/{ODD}.fits", direction="down", depth=3, stop_at={"program": "softmean"},
              containment=True),
    p.Outputs(("job.name = softmean",), ("job.name = align_warp", "param.model = 12"), depth=4),
    p.FindJobs(("job.name = softmean", "param.model = 12 | param.model = 9"), limit=5),
    p.FindArtifacts((f"uri ~ s3://b/{ODD}",), limit=3),
    p.Resources(ODD),
    p.Job(ODD),
    p.Artifact(f"s3://bucket/out dir/{ODD}.parq"),
    p.GroupJobs(("param.band", "job.kind"), where=("job.status = failed",), limit=9),
    p.RunsTable((ODD, "r2"), parameters=("model",), annotations=("quality",)),
    p.Run(ODD),
    p.CompareRuns(ODD, "r/2"),
    p.Status(),
]  # fmt: skip


def test_every_question_has_a_sample_and_every_field_a_help() -> None:
    assert {type(q) for q in SAMPLES} == set(QUESTIONS)
    for question in QUESTIONS:
        for spec in question.specs():
            assert spec.param.help, f"{question.__name__}.{spec.name} has no help"
            assert spec.param.kind in p.KINDS


@pytest.fixture(scope="module")
def echo() -> TestClient:
    """Each question's route, reading its parameters as the API does and answering with the question's fields."""
    app = FastAPI()
    api = APIRouter(prefix="/api/v1")
    for question in QUESTIONS:

        def endpoint(asked: Any = Depends(http_parameters(question))) -> dict[str, Any]:  # noqa: B008
            return {"type": type(asked).__name__, "repr": repr(asked)}

        api.add_api_route(question.ROUTE, endpoint, methods=["GET"], name=question.__name__)
    app.include_router(api)
    return TestClient(app)


@pytest.mark.parametrize("question", SAMPLES, ids=lambda q: type(q).__name__)
def test_a_question_asked_over_http_arrives_unchanged(echo: TestClient, question: Question) -> None:
    path, query = question.http_request()
    response = echo.get(f"/api/v1{path}", params=query)
    assert response.status_code == 200, response.text
    assert response.json() == {"type": type(question).__name__, "repr": repr(question)}


def _cli_args(question: Question) -> list[str]:
    """The command line that asks ``question`` (options after the arguments)."""
    positional: list[str] = []
    flags: list[str] = []
    for spec in question.specs():
        value = getattr(question, spec.name)
        param = spec.param
        if value is None or value == spec.default:
            continue
        items = [f"{k}={v}" for k, v in value.items()] if param.kind == "pairs" else None
        items = items if items is not None else list(value) if param.kind == "many" else None
        if param.cli == ARGUMENT:
            positional += items if items is not None else [str(value)]
        elif param.switch is not None or param.kind == "flag":
            flags.append(spec.cli_name)
        elif items is not None:
            flags += [x for item in items for x in (spec.cli_name, item)]
        else:
            flags += [spec.cli_name, value.isoformat() if isinstance(value, datetime) else str(value)]
    return positional + flags


def _command(question: type[Question], seen: list[Question]) -> click.Command:
    @click.command()
    @options(question)
    def command(**given: Any) -> None:
        seen.append(make(question, given))

    return command


@pytest.mark.parametrize("question", SAMPLES, ids=lambda q: type(q).__name__)
def test_a_question_asked_on_the_command_line_arrives_unchanged(question: Question) -> None:
    seen: list[Question] = []
    result = CliRunner().invoke(_command(type(question), seen), _cli_args(question))
    assert result.exit_code == 0, result.output
    assert seen == [question]


@pytest.mark.parametrize(
    ("question", "args", "option", "reason"),
    [
        (p.Regressions, ["AM1", "--window", "1"], "--window", "1 is not in the range 2<=x<=1000"),
        (p.Regressions, ["AM1", "-k", "0"], "-k", "0.0 is not in the range 1<=x<=1000"),
        (p.Regressions, ["AM1", "--method", "magic"], "--method", "'magic' is not one of"),
        (p.Series, ["AM1", "--filter", "no-equals-sign"], "--filter", "expected KEY=VALUE, got 'no-equals-sign'"),
        (p.Series, ["AM1", "--since", "yesterday"], "--since", "'yesterday' is not an ISO 8601 time"),
        (p.Bucket, ["AM1", "band"], "KEY=VALUE...", "expected KEY=VALUE, got 'band'"),
        (p.Lineage, ["j", "--depth", "51"], "--depth", "51 is not in the range 1<=x<=50"),
        (p.FindJobs, ["--limit", "5"], "--where", "Missing option"),
        (p.FindJobs, ["--where", "a = 1", "--limit", "0"], "--limit", "0 is not in the range 1<=x<=100000"),
    ],
)
def test_a_bad_value_on_the_command_line_is_a_usage_error_naming_its_option(
    question: type[Question], args: list[str], option: str, reason: str
) -> None:
    result = CliRunner().invoke(_command(question, []), args)
    assert result.exit_code == 2
    assert option in result.output and reason in result.output


@pytest.mark.parametrize(
    ("path", "parameter", "reason"),
    [
        ("/api/v1/regressions/AM1?window=1", "window", "greater than or equal to 2"),
        ("/api/v1/regressions/AM1?k=nan", "k", ""),
        ("/api/v1/regressions/AM1?method=magic", "method", "pattern"),
        ("/api/v1/buckets/AM1?last=0", "last", "greater than or equal to 1"),
        ("/api/v1/jobs?where=x%20%3D%201&limit=100001", "limit", "less than or equal to 100000"),
        ("/api/v1/lineage?ref=j&direction=sideways", "direction", "pattern"),
        ("/api/v1/series/AM1?since=yesterday", "since", "datetime"),
    ],
)
def test_a_bad_value_over_http_is_a_422_naming_its_parameter(
    echo: TestClient, path: str, parameter: str, reason: str
) -> None:
    response = echo.get(path)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == parameter and reason in error["msg"]


def test_a_bad_pair_over_http_is_a_422_naming_the_http_parameter(echo: TestClient) -> None:
    response = echo.get("/api/v1/series/AM1", params={"filter": "no-equals-sign"})
    assert response.status_code == 422
    assert response.json()["detail"] == "filter: expected KEY=VALUE, got 'no-equals-sign'"


def test_the_bounds_are_the_limits_and_python_callers_meet_them_too() -> None:
    bounds = {(q.__name__, s.name): s.param.bounds for q in QUESTIONS for s in q.specs() if s.param.bounds}
    assert bounds[("Regressions", "window")] is limits.WINDOW and bounds[("Lineage", "depth")] is limits.DEPTH
    assert bounds[("FindJobs", "limit")] is limits.ROWS and bounds[("Bucket", "last")] is limits.ROWS
    with pytest.raises(ParameterError, match=r"window: must be between 2 and 1000, got 1") as caught:
        p.Regressions("AM1", window=1)
    assert (caught.value.name, caught.value.reason) == ("window", "must be between 2 and 1000, got 1")
    with pytest.raises(ParameterError, match=r"k: must be between 1 and 1000, got nan"):
        p.Regressions("AM1", k=float("nan"))
    with pytest.raises(ParameterError, match=r"namespace: one of parameter"):
        p.Compare("a", "b", namespace="params")
    with pytest.raises(ParameterError, match=r"where: at least one value is required"):
        p.FindJobs(())
    with pytest.raises(TypeError):
        p.Series("AM1", windw=3)  # type: ignore[call-arg]  # a misspelt parameter is not ignored


def test_a_field_added_to_a_question_reaches_every_face() -> None:
    @dataclasses.dataclass(frozen=True)
    class Probe(Question):
        ROUTE = "/probe/{name:path}"
        SUMMARY = "A question made up here"
        name: str = p.argument("A name.")
        fresh: int = p.number(3, limits.DEPTH, "A parameter added in one place.")

    path, query = Probe("a/b", fresh=4).http_request()
    assert (path, query) == ("/probe/a%2Fb", [("fresh", "4")])
    seen: list[Question] = []
    assert CliRunner().invoke(_command(Probe, seen), ["a/b", "--fresh", "4"]).exit_code == 0
    assert seen == [Probe("a/b", fresh=4)]
    app = FastAPI()
    app.add_api_route(Probe.ROUTE, lambda asked=Depends(http_parameters(Probe)): repr(asked))  # noqa: B008
    assert TestClient(app).get("/probe/a%2Fb", params={"fresh": 4}).json() == repr(Probe("a/b", fresh=4))
    assert TestClient(app).get("/probe/x", params={"fresh": 99}).status_code == 422
