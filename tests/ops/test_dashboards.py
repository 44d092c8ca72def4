"""The Grafana dashboards (dashboards/build.py): generated files in sync, valid against the Grafana schema models
of the foundation SDK, consistent ids and datasources, and every SQL query run on the real ClickHouse engine over
a folded workload, with Grafana's variable interpolation and the ClickHouse plugin's macros applied."""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from dashboards import build
from jobprov.emitters.importers.send import to_events
from jobprov.query.alerts import SENDER, raised_records, scan, triage_record
from jobprov.query.backend import LocalBackend
from jobprov.query.series import baseline, series
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    Annotation,
    Event,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    Producer,
    ProvenanceDeclared,
    ResourceSample,
)
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.sink import ClickHouseDeadLetters, ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from tests.integration.conftest import store  # noqa: F401 - the shared per-process chdb store, one database per test
from tests.integration.test_queries import NIGHTS, T0, UPGRADE, campaign, job_id

ROOT = Path(__file__).resolve().parents[2]
ALL = "$__all"  # Grafana's value for the "All" option

# --- the generated files and the schema ------------------------------------------------------------------------


def committed() -> dict[str, dict[str, Any]]:
    """The committed dashboards, by file name."""
    found = {path.name: json.loads(path.read_text()) for path in sorted((ROOT / "dashboards").glob("*.json"))}
    assert set(found) == {"jobprov-regressions.json", "jobprov-jobs.json", "jobprov-pipeline.json"}
    return found


def test_committed_files_are_what_build_generates() -> None:
    stale = build.stale_files(ROOT)
    assert not stale, f"run `python dashboards/build.py`: {[str(p) for p in stale]} differ from what it generates"
    for name in committed():
        assert (ROOT / "helm/jobprov/dashboards" / name).read_bytes() == (ROOT / "dashboards" / name).read_bytes()
        assert re.fullmatch(r"[-._a-zA-Z0-9]+", name), "a dashboard file name is a ConfigMap key"
    assert build.main(["--check"]) == 0


def _is_model(value: object) -> bool:
    return callable(getattr(value, "to_json", None)) and type(value).__module__.startswith("grafana_foundation_sdk")


def _check_type(value: Any, hint: Any, where: str, errors: list[str]) -> None:
    """Is ``value`` what the SDK's schema type ``hint`` allows? Models, enums, literals, containers, scalars."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            _check_type(value, options[0], where, errors)
            return
        attempts: list[str] = []
        for option in options:
            attempt: list[str] = []
            _check_type(value, option, where, attempt)
            if not attempt:
                return
            attempts += attempt
        errors.append(f"{where}: {value!r} is none of {options}: {'; '.join(attempts)}")
    elif origin is typing.Literal:
        if value not in args:
            errors.append(f"{where}: {value!r} not in {args}")
    elif origin is list:
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list, got {value!r}")
            return
        for i, item in enumerate(value):
            _check_type(item, args[0], f"{where}[{i}]", errors)
    elif origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            errors.append(f"{where}: expected a mapping with text keys, got {value!r}")
            return
        for key, item in value.items():
            _check_type(item, args[1], f"{where}.{key}", errors)
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if value not in {member.value for member in hint}:
            errors.append(f"{where}: {value!r} is not a {hint.__name__}")
    elif hint is bool:
        if not isinstance(value, bool):
            errors.append(f"{where}: expected a boolean, got {value!r}")
    elif hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{where}: expected an integer, got {value!r}")
    elif hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            errors.append(f"{where}: expected a number, got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            errors.append(f"{where}: expected text, got {value!r}")
    elif hint is object or hint is Any:
        if _is_model(value):
            _check_model(value, where, errors)
    elif isinstance(hint, type) and hasattr(hint, "from_json"):
        # The SDK keeps some nested objects as plain dicts (links, transformations): read them with the model.
        if isinstance(value, dict):
            value = hint.from_json(value)
        if not isinstance(value, hint):
            errors.append(f"{where}: expected {hint.__name__}, got {value!r}")
            return
        _check_model(value, where, errors)
    elif hint is cogvariants.Dataquery:
        if not isinstance(value, cogvariants.Dataquery):
            errors.append(f"{where}: not a data query: {value!r}")
        elif _is_model(value):
            _check_model(value, where, errors)
    else:
        errors.append(f"{where}: no check for {hint!r}")


def _check_model(value: Any, where: str, errors: list[str]) -> None:
    hints = typing.get_type_hints(type(value))
    for name, item in vars(value).items():
        if name not in hints:
            errors.append(f"{where}.{name}: not in the schema of {type(value).__name__}")
            continue
        _check_type(item, hints[name], f"{where}.{name}", errors)


def _without_annotation_queries(data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dashboard with each annotation target cut to the SDK's AnnotationTarget fields, and the query parts."""
    data = json.loads(json.dumps(data))
    queries = []
    for annotation in data.get("annotations", {}).get("list", []):
        target = annotation.get("target")
        if target is not None:
            sdk_keys = {"limit", "matchAny", "tags", "type"}
            queries.append({k: v for k, v in target.items() if k not in sdk_keys})
            annotation["target"] = {k: v for k, v in target.items() if k in sdk_keys}
    return data, queries


@pytest.mark.parametrize("name", sorted(committed()))
def test_dashboard_validates_against_the_grafana_schema_models(name: str) -> None:
    data = committed()[name]
    # The panels' options and field configs, and the Prometheus queries, are read by their models (otherwise the
    # SDK keeps them as they are), and ClickHouse targets by the strict model of dashboards/build.py.
    cogplugins.register_default_plugins()
    build.register_clickhouse_query()
    parsed = model.Dashboard.from_json(data)
    errors: list[str] = []
    _check_model(parsed, name, errors)
    assert not errors, "\n".join(errors)
    # Unmarshalled and marshalled again, nothing is lost: no key the schema does not know, nothing misplaced.
    expected, annotation_queries = _without_annotation_queries(data)
    again = json.loads(json.dumps(parsed, cls=JSONEncoder))
    for original, panel in zip(expected["panels"], again["panels"], strict=True):
        # The SDK gives a panel without custom field config the plugin's default one: only that may appear.
        if "fieldConfig" in original and "custom" not in original["fieldConfig"]["defaults"]:
            config = cogruntime.panelcfg_config(original["type"])
            hook = config.field_config_from_json_hook if config else None
            default = json.loads(json.dumps(hook({}), cls=JSONEncoder)) if hook else None
            assert panel["fieldConfig"]["defaults"].pop("custom", None) == default
    assert again == expected
    for query in annotation_queries:
        assert build.ClickHouseQuery.from_json(query).to_json()["rawSql"] == query["rawSql"]
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == build.CLICKHOUSE_TYPE:
                build.ClickHouseQuery.from_json(target)
    assert data["schemaVersion"] >= 39 and data["uid"] == name.removesuffix(".json")
    assert "jobprov" in data["tags"]


def test_the_strict_clickhouse_model_refuses_what_grafana_would_not_run() -> None:
    good = build.ClickHouseQuery("SELECT 1", build.FORMAT_TABLE, "A").to_json()
    good = json.loads(json.dumps(good, cls=JSONEncoder))
    build.ClickHouseQuery.from_json(good)
    for bad in (
        {**good, "rawsql": "SELECT 1"},
        {**good, "format": 0},
        {**good, "rawSql": " "},
        {**good, "datasource": {"type": build.CLICKHOUSE_TYPE, "uid": "other"}},
    ):
        with pytest.raises(ValueError, match=r"\w"):
            build.ClickHouseQuery.from_json(bad)


def _panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data["panels"]:
        yield panel
        yield from panel.get("panels", [])


@pytest.mark.parametrize("name", sorted(committed()))
def test_panel_ids_are_unique_and_panels_do_not_overlap(name: str) -> None:
    panels = list(_panels(committed()[name]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}: {ids}"
    boxes = []
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        boxes.append((panel["title"], pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"]))
    for i, (title, x0, y0, x1, y1) in enumerate(boxes):
        for other, a0, b0, a1, b1 in boxes[i + 1 :]:
            assert x1 <= a0 or a1 <= x0 or y1 <= b0 or b1 <= y0, f"{title!r} overlaps {other!r} in {name}"
    for panel in panels:
        if panel["type"] != "row":
            assert panel.get("title") and panel.get("description"), f"{name}: every panel says what it shows"


def _datasource_refs(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in _panels(data):
        if panel["type"] == "row":
            continue
        yield f"panel {panel['title']!r}", panel["datasource"]
        for target in panel.get("targets", []):
            assert target["datasource"] == panel["datasource"], f"{panel['title']}: a target on another datasource"
            yield f"panel {panel['title']!r} target {target['refId']}", target["datasource"]
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["datasource"]
    for annotation in data["annotations"].get("list", []):
        yield f"annotation {annotation['name']!r}", annotation["datasource"]
        yield f"annotation {annotation['name']!r} target", annotation["target"]["datasource"]


def test_every_datasource_is_one_the_provisioning_defines() -> None:
    provisioned = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/jobprov.yaml").read_text())
    known = {(d["type"], d["uid"]) for d in provisioned["datasources"]}
    assert known == {(build.CLICKHOUSE_TYPE, build.CLICKHOUSE_UID), (build.PROMETHEUS_TYPE, build.PROMETHEUS_UID)}
    for name, data in committed().items():
        for where, ref in _datasource_refs(data):
            assert (ref.get("type"), ref.get("uid")) in known, f"{name} {where}: unknown datasource {ref}"
    providers = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/jobprov.yaml").read_text())
    assert providers["apiVersion"] == 1
    assert [p["type"] for p in providers["providers"]] == ["file"]
    assert providers["providers"][0]["options"]["path"].startswith("/")


# --- Grafana's interpolation and the ClickHouse plugin's macros ------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def _format(values: list[str], fmt: str | None) -> str:
    """Grafana's formats; without one, the ClickHouse plugin quotes a multi-value (``'a','b'``), not a single one."""
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt is None:
        return "'" + "','".join(values) + "'" if len(values) > 1 else values[0]
    if fmt in ("raw", "text"):
        return ",".join(values)
    raise AssertionError(f"format {fmt!r} not emulated here")


@dataclass
class Grafana:
    """Variables of one dashboard with chosen values (``ALL`` for the All option), resolved as Grafana would."""

    dashboard: dict[str, Any]
    selected: Mapping[str, str | list[str]]
    run: Callable[[str], list[tuple[Any, ...]]]
    time_from: datetime
    time_to: datetime
    interval_s: int = 3600

    def variable(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [v for v in self.dashboard["templating"]["list"] if v["name"] == name]
        assert len(found) == 1, f"no variable {name}"
        return found[0]

    def options(self, name: str) -> list[tuple[str, str]]:
        """(value, text) of a query variable: its query's first column is the value, the second the text."""
        rows = self.run(self.expand(self.variable(name)["query"]))
        return [(str(r[0]), str(r[-1])) for r in rows]

    def _replacement(self, name: str, fmt: str | None) -> str:
        variable = self.variable(name)
        if variable["type"] in ("constant", "textbox") and name not in self.selected:
            return _format([variable["query"]], fmt)
        chosen = self.selected[name]
        if chosen == ALL or chosen == [ALL]:
            assert variable.get("includeAll"), f"{name} has no All option"
            if variable.get("allValue"):
                return str(variable["allValue"])  # a custom all value is never formatted
            return _format([value for value, _ in self.options(name)], fmt)
        values = chosen if isinstance(chosen, list) else [chosen]
        assert len(values) == 1 or variable.get("multi"), f"{name} takes one value"
        return _format(values, fmt)

    def interpolate(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(3)
            if name.startswith("__"):
                return match.group(0)  # the plugin's macros and Grafana's own variables
            return self._replacement(name, match.group(2))

        return _VARIABLE.sub(replace, text)

    def expand(self, sql: str) -> str:
        """Interpolate, then apply the plugin's macros (pkg/macros/macros.go) the way sqlds parses them."""
        return expand_macros(self.interpolate(sql), self.time_from, self.time_to, self.interval_s)


def _macro_args(text: str) -> tuple[list[str] | None, int]:
    if not text.startswith("("):
        return None, 0
    depth, arg, args = 0, "", list[str]()
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
            if depth == 1:
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                return [*args, arg.strip()], i + 1
        elif char == "," and depth == 1:
            args.append(arg.strip())
            arg = ""
            continue
        arg += char
    raise AssertionError(f"unclosed macro arguments: {text[:80]!r}")


def expand_macros(sql: str, start: datetime, end: datetime, interval_s: int) -> str:
    fr, to = int(start.timestamp()), int(end.timestamp())
    fr_ms, to_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def one_column(args: list[str] | None, name: str) -> str:
        assert args is not None and len(args) == 1, f"$__{name} takes one argument"
        # A plain column: older versions of the plugin split arguments on every comma.
        assert re.fullmatch(r"[A-Za-z_][\w.]*", args[0]), f"$__{name}({args[0]}): use a plain column"
        return args[0]

    macros: dict[str, Callable[[list[str] | None], str]] = {
        "timeFilter_ms": lambda a: (
            f"{one_column(a, 'timeFilter_ms')} >= fromUnixTimestamp64Milli({fr_ms}) AND "
            f"{one_column(a, 'timeFilter_ms')} <= fromUnixTimestamp64Milli({to_ms})"
        ),
        "timeInterval_ms": lambda a: (
            f"toStartOfInterval(toDateTime64({one_column(a, 'timeInterval_ms')}, 3), "
            f"INTERVAL {interval_s * 1000} millisecond)"
        ),
        "timeInterval": lambda a: (
            f"toStartOfInterval(toDateTime({one_column(a, 'timeInterval')}), INTERVAL {interval_s} second)"
        ),
        "timeFilter": lambda a: (
            f"{one_column(a, 'timeFilter')} >= toDateTime({fr}) AND {one_column(a, 'timeFilter')} <= toDateTime({to})"
        ),
        "fromTime_ms": lambda a: f"fromUnixTimestamp64Milli({fr_ms})",
        "toTime_ms": lambda a: f"fromUnixTimestamp64Milli({to_ms})",
        "fromTime": lambda a: f"toDateTime({fr})",
        "toTime": lambda a: f"toDateTime({to})",
        "interval_s": lambda a: str(interval_s),
    }
    for name in sorted(macros, key=len, reverse=True):  # sqlds applies longer names first
        pattern = re.compile(rf"\$__{name}\b")
        while match := pattern.search(sql):
            args, length = _macro_args(sql[match.end() :])
            sql = sql[: match.start()] + macros[name](args) + sql[match.end() + length :]
    leftover = re.findall(r"\$\{?\w+", sql)
    assert not leftover, f"not interpolated: {leftover}"
    return sql


def test_interpolation_and_macros_behave_like_grafana_and_the_plugin() -> None:
    dashboard = {
        "templating": {
            "list": [
                {"name": "one", "type": "query", "query": "q"},
                {"name": "many", "type": "query", "query": "q", "multi": True, "includeAll": True},
                {"name": "custom", "type": "query", "query": "q", "multi": True, "includeAll": True, "allValue": "'*'"},
                {"name": "database", "type": "constant", "query": "jobprov"},
            ]
        }
    }
    grafana = Grafana(
        dashboard,
        {"one": "it's", "many": ["a", "b"], "custom": ALL},
        run=lambda sql: [("x",), ("y",)],
        time_from=datetime(2026, 1, 1, tzinfo=UTC),
        time_to=datetime(2026, 1, 2, tzinfo=UTC),
        interval_s=60,
    )
    assert grafana.interpolate("${one:singlequote} ${many:singlequote} $many ${custom:singlequote} $database.t") == (
        "'it\\'s' 'a','b' 'a','b' '*' jobprov.t"
    )
    assert grafana.expand("$__timeFilter(t) AND x <= $__toTime GROUP BY $__timeInterval(t)") == (
        "t >= toDateTime(1767225600) AND t <= toDateTime(1767312000) AND x <= toDateTime(1767312000) "
        "GROUP BY toStartOfInterval(toDateTime(t), INTERVAL 60 second)"
    )
    with pytest.raises(AssertionError, match="plain column"):
        grafana.expand("$__timeFilter(if(a, b, c))")


# --- the queries on real data ----------------------------------------------------------------------------------

PRODUCER = Producer("ops-test", "0", "p")
EXTRA_START = T0 + timedelta(days=NIGHTS)


def _event(eid: str, job: str, payload: Any, at: datetime, seq: int, attempt: int = 1) -> Event:
    return Event(eid, job, type(payload).__name__, ms(at), ms(at), PRODUCER, seq, attempt, payload=payload)


def batch_jobs() -> list[Event]:
    """Batch jobs next to the campaign's CI jobs: a failure, an abort, a retry on another host, a finish without
    a start (an anomaly), resource samples; all known by construction."""
    events: list[Event] = []

    def job(name: str, steps: Sequence[tuple[Any, int]]) -> None:
        for seq, (payload, attempt) in enumerate(steps, 1):
            at = EXTRA_START + timedelta(minutes=10 * len(events))
            events.append(_event(f"{name}-{seq}", name, payload, at, seq, attempt))

    def samples(rss: int, attempt: int = 1) -> list[tuple[Any, int]]:
        return [
            (
                ResourceSample(
                    cpu_user_s=i * 1.0,
                    cpu_system_s=0.5,
                    rss_bytes=rss * i,
                    peak_rss_bytes=rss * i,
                    io_read_bytes=1000 * i,
                    io_write_bytes=10 * i,
                    threads=4,
                ),
                attempt,
            )
            for i in (1, 2)
        ]

    start = JobStarted(host="node-1", os="linux", kernel="6.1", cwd="/scratch")
    job(
        "b-failed",
        [
            (JobSubmitted(name="reduce", kind="batch"), 1),
            (start, 1),
            *samples(100 << 20),
            (
                JobFinished(
                    status="failed",
                    exit_code=3,
                    exception_type="ValueError",
                    exception_message="bad input",
                    duration_ms=1200_000,
                ),
                1,
            ),
        ],
    )
    job(
        "b-aborted",
        [
            (JobSubmitted(name="reduce", kind="batch"), 1),
            (start, 1),
            (JobFinished(status="aborted", signal=15, duration_ms=60_000), 1),
        ],
    )
    job(
        "b-retried",
        [
            (JobSubmitted(name="simulate", kind="batch"), 1),
            (start, 1),
            (JobFinished(status="preempted"), 1),
            (JobStarted(host="node-2", os="linux", kernel="6.1", cwd="/scratch"), 2),
            *samples(300 << 20, 2),
            (ProvenanceDeclared(values={"dataset": "sim"}), 2),
            (MetricMeasured(name="TPUT", value=5.0), 2),
            (JobFinished(status="succeeded", exit_code=0, duration_ms=3600_000), 2),
        ],
    )
    job("b-orphan", [(JobFinished(status="succeeded", exit_code=0), 1)])
    # A late annotation on an artifact, drawn when it was made.
    events.append(
        _event(
            "art-note",
            "b-retried",
            Annotation(key="checked", value="yes", target_type="artifact", target="file:///out/sim.h5"),
            EXTRA_START + timedelta(hours=6),
            99,
        )
    )
    return events


GARBAGE = [b"", b"\xc3\x01not an event", b"{}"]


@dataclass
class Loaded:
    client: Any
    database: str
    store: Store
    acked: str = ""  # the alert acknowledged

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client.query(sql).result_rows]


@pytest.fixture
def loaded(store: Any) -> Loaded:  # noqa: F811 - the integration conftest's fixture
    """The campaign (nightly CI jobs, a numpy upgrade that moves AM1 on hsc) and batch jobs, folded by the real
    Processor into the embedded ClickHouse, with three undecodable messages dead-lettered into its table."""
    database = store.jobprov_database
    processor = Processor(ClickHouseSink(store, database), ClickHouseDeadLetters(store, database), FoldContext())
    raw = [encode_event(e) for e in [*campaign(), *batch_jobs()]] + GARBAGE
    processor.process_batch([RawEvent(data, "events", 0, i) for i, data in enumerate(raw)])
    # The alert scan's events and a triage, as `jobprov alerts scan` and `jobprov alert ack` send them.
    loaded = Loaded(store, database, Store(store, database))
    raised = scan(loaded.store).raised
    (loaded.acked,) = [a.alert_id for a in raised if a.label["band"] == "r"]
    now = datetime.now(UTC)
    records = [*raised_records(raised, now), triage_record(loaded.acked, "ack", now, "numpy 2")]
    events = [encode_event(e) for e in to_events(records, SENDER)]
    processor.process_batch([RawEvent(data, "events", 0, len(raw) + i) for i, data in enumerate(events)])
    return loaded


TIME_FROM = T0 - timedelta(days=1)


def _time_to() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)  # dead letters are stamped with the wall clock


def _grafana(loaded: Loaded, uid: str, selected: Mapping[str, str | list[str]], **kw: Any) -> Grafana:
    (data,) = [d for d in committed().values() if d["uid"] == uid]
    return Grafana(data, {"database": loaded.database, **selected}, loaded.run, TIME_FROM, _time_to(), **kw)


@dataclass
class Query:
    where: str
    sql: str
    fmt: int | None  # None: a variable query


def clickhouse_queries(data: dict[str, Any]) -> list[Query]:
    found = []
    for panel in _panels(data):
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == build.CLICKHOUSE_TYPE:
                found.append(Query(f"{panel['title']}/{target['refId']}", target["rawSql"], target["format"]))
    for variable in data["templating"]["list"]:
        if variable["type"] == "query" and variable["datasource"]["type"] == build.CLICKHOUSE_TYPE:
            found.append(Query(f"variable {variable['name']}", variable["query"], None))
    for annotation in data["annotations"].get("list", []):
        target = annotation["target"]
        if target["datasource"]["type"] == build.CLICKHOUSE_TYPE:
            found.append(Query(f"annotation {annotation['name']}", target["rawSql"], build.FORMAT_TABLE))
    return found


# The columns every query returns, by dashboard uid and query (panel title/refId, variable or annotation).
COLUMNS: dict[str, dict[str, list[str]]] = {
    "jobprov-regressions": {
        "variable metric": ["metric"],
        "variable bucket": ["bucket", "label"],
        "variable prov_key": ["key"],
        "variable prov_value": ["value"],
        "annotation jobprov annotations": ["time", "title", "text", "tags"],
        "variable state": ["state"],
        "annotation Alerts": ["time", "title", "text", "tags"],
        "Points/A": ["points"],
        "Buckets/A": ["buckets"],
        "Alerts raised/A": ["alerts"],
        "Jobs/A": ["jobs"],
        "${metric} by provenance bucket/A": ["time", "bucket", "value"],
        "${metric} by provenance bucket/B": ["time", "series", "value"],
        "Alerts/A": [
            "time",
            "bucket",
            "alert_id",
            "state",
            "direction",
            "before",
            "after",
            "size",
            "relative_size",
            "confidence",
            "last_good_job",
            "first_bad_job",
            "changes",
            "note",
            "raised_at",
        ],
        "Bucket baselines/A": [
            "bucket",
            "points",
            "baseline_points",
            "median",
            "mad",
            "mean",
            "stdev",
            "min_value",
            "max_value",
            "unit",
            "last_time",
            "id",
        ],
    },
    "jobprov-jobs": {
        "variable kind": ["kind"],
        "variable host": ["host"],
        "Jobs/A": ["jobs"],
        "Success rate/A": ["success_rate"],
        "Failed, aborted or lost/A": ["failed"],
        "With anomalies/A": ["anomalous"],
        "Jobs by status/A": ["time", "status", "jobs"],
        "Failures and retries/A": ["time", "failed", "retried"],
        "Failed, aborted and lost jobs/A": [
            "time",
            "job_id",
            "name",
            "kind",
            "host",
            "status",
            "attempts",
            "exit_code",
            "signal",
            "exception_type",
            "exception_message",
            "duration_s",
        ],
        "Retried jobs/A": ["time", "job_id", "name", "kind", "host", "status", "attempts", "attempt_statuses"],
        "Jobs with anomalies/A": ["time", "job_id", "name", "status", "anomalies"],
        "Duration by kind/A": ["time", "kind", "p50", "p95"],
        "Memory by host/A": ["time", "host", "rss_bytes"],
        "Resource usage by kind and host/A": [
            "kind",
            "host",
            "jobs",
            "duration_p50_s",
            "duration_max_s",
            "cpu_s",
            "cpu_per_job_s",
            "peak_rss_bytes",
            "io_read_bytes",
            "io_write_bytes",
        ],
    },
    "jobprov-pipeline": {
        "Stored dead letters/A": [
            "time",
            "reason",
            "source_topic",
            "source_partition",
            "source_offset",
            "detail",
            "size_bytes",
        ]
    },
}

SCENARIOS: dict[str, list[dict[str, str | list[str]]]] = {
    "jobprov-regressions": [
        {"metric": "AM1", "bucket": ALL, "prov_key": "dataset", "prov_value": ALL, "state": ALL},
        {
            "metric": "AM1",
            "bucket": ALL,
            "prov_key": "software.numpy",
            "prov_value": ["2.0.1"],
            "exclude": "quality=bad",
            "state": ["acknowledged", "untriaged"],
        },
    ],
    "jobprov-jobs": [
        {"kind": ALL, "host": ALL},
        {"kind": ["batch", "unknown"], "host": ["node-1", "node-2", "unknown"]},
    ],
    "jobprov-pipeline": [{}],
}


def _is_number(type_name: str) -> bool:
    return bool(re.search(r"Int|Float|Decimal|UInt", type_name))


def test_every_clickhouse_query_runs_and_returns_its_columns(loaded: Loaded) -> None:
    for name, data in committed().items():
        queries = clickhouse_queries(data)
        assert {q.where for q in queries} == set(COLUMNS[data["uid"]]), f"{name}: COLUMNS is not up to date"
        for selected in SCENARIOS[data["uid"]]:
            grafana = _grafana(loaded, data["uid"], selected)
            for query in queries:
                sql = grafana.expand(query.sql)
                try:
                    result = loaded.client.query(sql)
                except Exception as exc:
                    raise AssertionError(f"{name} {query.where} ({selected}) failed: {exc}\n{sql}") from exc
                what = f"{name} {query.where} with {selected}"
                assert list(result.column_names) == COLUMNS[data["uid"]][query.where], what
                assert result.result_rows, f"{what}: no rows on data that has them"
                types_ = [t.name for t in result.column_types]
                if query.fmt == build.FORMAT_TIME_SERIES:
                    assert "DateTime" in types_[0], f"{what}: a time series starts with its time column"
                    assert any(_is_number(t) for t in types_[1:]), f"{what}: no value column"
                if query.where.startswith("annotation"):
                    assert "DateTime" in types_[0] and "String" in types_[2], what


def _table(loaded: Loaded, uid: str, title: str, selected: Mapping[str, str | list[str]]) -> list[dict[str, Any]]:
    grafana = _grafana(loaded, uid, selected)
    (query,) = [q for q in clickhouse_queries(grafana.dashboard) if q.where == f"{title}/A"]
    result = loaded.client.query(grafana.expand(query.sql))
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


REGRESSIONS = {"metric": "AM1", "bucket": ALL, "prov_key": "dataset", "prov_value": ALL, "state": ALL}


def test_the_alerts_panel_shows_what_the_api_gives(loaded: Loaded) -> None:
    """The dashboard reads the detector's results (the alerts table), not a copy of its rule: the same alerts,
    states and numbers as ``jobprov query alerts`` / ``/api/v1/alerts``."""
    rows = _table(loaded, "jobprov-regressions", "Alerts", REGRESSIONS)
    expected = LocalBackend(loaded.store).alerts()
    assert len(expected) == 2, "the upgrade moved AM1 in two hsc buckets"
    assert sorted((r["alert_id"], r["state"], r["first_bad_job"], r["last_good_job"], r["changes"]) for r in rows) == (
        sorted((a["alert_id"], a["state"], a["first_bad_job"], a["last_good_job"], "; ".join(a["changes"]))
               for a in expected)
    )  # fmt: skip
    by_id = {r["alert_id"]: r for r in rows}
    for a in expected:
        got = by_id[a["alert_id"]]
        assert got["bucket"] == ", ".join(f"{k}={v}" for k, v in sorted(a["label"].items()))
        assert (got["before"], got["size"], got["confidence"]) == pytest.approx(
            (a["before"], a["size"], a["confidence"])
        )
        assert got["after"] == pytest.approx(a["before"] + a["size"]) and got["direction"] == a["direction"]
    acked = _table(loaded, "jobprov-regressions", "Alerts", {**REGRESSIONS, "state": ["acknowledged"]})
    assert [(r["alert_id"], r["note"]) for r in acked] == [(loaded.acked, "numpy 2")]


def test_the_upgrade_shows_as_two_alerts_with_what_changed(loaded: Loaded) -> None:
    rows = _table(loaded, "jobprov-regressions", "Alerts", REGRESSIONS)
    assert sorted((r["bucket"], r["first_bad_job"], r["changes"]) for r in rows) == [
        ("band=all, config.hash=, dataset=hsc", job_id(UPGRADE, "hsc", "all"), "software.numpy: 1.26.4 → 2.0.1"),
        ("band=r, config.hash=, dataset=hsc", job_id(UPGRADE, "hsc", "r"), "software.numpy: 1.26.4 → 2.0.1"),
    ]
    grafana = _grafana(loaded, "jobprov-regressions", REGRESSIONS)
    (annotation,) = [q for q in clickhouse_queries(grafana.dashboard) if q.where == "annotation Alerts"]
    texts = sorted(r[2] for r in loaded.run(grafana.expand(annotation.sql)))
    assert len(texts) == 2 and all("changed: software.numpy: 1.26.4 → 2.0.1" in t for t in texts)
    (points,) = [q for q in clickhouse_queries(grafana.dashboard) if q.where == "${metric} by provenance bucket/B"]
    on_line = {(line.label["band"], p.value) for line in series(loaded.store, "AM1") for p in line.points}
    drawn = loaded.run(grafana.expand(points.sql))
    assert len(drawn) == 2 and all(("r", v) in on_line or ("all", v) in on_line for _, _, v in drawn)


def test_series_panel_and_variables_agree_with_the_query_layer(loaded: Loaded) -> None:
    grafana = _grafana(loaded, "jobprov-regressions", REGRESSIONS)
    assert [value for value, _ in grafana.options("metric")] == ["AM1", "TPUT"]
    buckets = dict(grafana.options("bucket"))
    lines = series(loaded.store, "AM1")
    assert buckets == {line.bucket: ", ".join(f"{k}={v}" for k, v in sorted(line.label.items())) for line in lines}
    assert "software.numpy" in [v for v, _ in grafana.options("prov_key")]
    (query,) = [q for q in clickhouse_queries(grafana.dashboard) if q.where == "${metric} by provenance bucket/A"]
    rows = loaded.run(grafana.expand(query.sql))
    expected = sorted((buckets[line.bucket or ""], p.time, p.value) for line in lines for p in line.points)
    assert sorted((b, t.replace(tzinfo=UTC), v) for t, b, v in rows) == expected  # the stored doubles
    # One bucket, and a provenance filter: only the hsc r points after the upgrade.
    (hsc_r,) = [line for line in lines if line.label == {"dataset": "hsc", "band": "r", "config.hash": ""}]
    narrowed = _grafana(
        loaded,
        "jobprov-regressions",
        {**REGRESSIONS, "bucket": [hsc_r.bucket or ""], "prov_key": "software.numpy", "prov_value": ["2.0.1"]},
    )
    rows = loaded.run(narrowed.expand(query.sql))
    assert [r[2] for r in rows] == pytest.approx([p.value for p in hsc_r.points[UPGRADE:]])


def test_bucket_baselines_agree_with_the_query_layer(loaded: Loaded) -> None:
    rows = _table(loaded, "jobprov-regressions", "Bucket baselines", REGRESSIONS)
    assert len(rows) == 4
    for row in rows:
        stats = baseline(loaded.store, "AM1", row["id"], last=50)
        assert row["points"] == NIGHTS and row["baseline_points"] == stats.count
        for column, value in (
            ("median", stats.median),
            ("mad", stats.mad),
            ("mean", stats.mean),
            ("stdev", stats.stdev),
            ("min_value", stats.minimum),
            ("max_value", stats.maximum),
        ):
            assert row[column] == pytest.approx(value), column
        assert row["last_time"].replace(tzinfo=UTC) == stats.last_time and row["unit"] == "mas"


def test_jobs_panels_count_what_the_workload_holds(loaded: Loaded) -> None:
    everything = {"kind": ALL, "host": ALL}
    grafana = _grafana(loaded, "jobprov-jobs", everything)
    assert [v for v, _ in grafana.options("kind")] == ["batch", "ci", "unknown"]
    assert [v for v, _ in grafana.options("host")] == ["ci-runner-1", "node-1", "node-2", "unknown"]
    ci_jobs = NIGHTS * 4
    stats = {
        title: _table(loaded, "jobprov-jobs", title, everything)[0]
        for title in ("Jobs", "Success rate", "Failed, aborted or lost", "With anomalies")
    }
    assert stats["Jobs"]["jobs"] == ci_jobs + 4
    assert stats["Failed, aborted or lost"]["failed"] == 2
    assert stats["Success rate"]["success_rate"] == pytest.approx((ci_jobs + 2) / (ci_jobs + 4))
    assert stats["With anomalies"]["anomalous"] >= 1
    failed = _table(loaded, "jobprov-jobs", "Failed, aborted and lost jobs", everything)
    assert sorted((r["job_id"], r["status"], r["exit_code"], r["signal"]) for r in failed) == [
        ("b-aborted", "aborted", None, 15),
        ("b-failed", "failed", 3, None),
    ]
    (retried,) = _table(loaded, "jobprov-jobs", "Retried jobs", everything)
    assert (retried["job_id"], retried["attempts"], retried["host"]) == ("b-retried", 2, "node-2")
    assert retried["attempt_statuses"] == "1: retried, 2: succeeded"
    anomalous = _table(loaded, "jobprov-jobs", "Jobs with anomalies", everything)
    assert "b-orphan" in [r["job_id"] for r in anomalous]
    usage = {
        (r["kind"], r["host"]): r for r in _table(loaded, "jobprov-jobs", "Resource usage by kind and host", everything)
    }
    assert usage[("ci", "ci-runner-1")]["jobs"] == ci_jobs
    assert usage[("batch", "node-2")]["peak_rss_bytes"] == 600 << 20
    memory = _table(loaded, "jobprov-jobs", "Memory by host", {"kind": ["batch"], "host": ["node-2"]})
    assert max(r["rss_bytes"] for r in memory) == 600 << 20 and {r["host"] for r in memory} == {"node-2"}


def test_stored_dead_letters_panel_lists_the_garbage(loaded: Loaded) -> None:
    rows = _table(loaded, "jobprov-pipeline", "Stored dead letters", {})
    first = len(campaign()) + len(batch_jobs())
    assert sorted(r["source_offset"] for r in rows) == [first + i for i in range(len(GARBAGE))]
    assert {r["reason"] for r in rows} <= {"undecodable", "unknown_schema"}
