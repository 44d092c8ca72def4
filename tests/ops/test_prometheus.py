"""The workers' Prometheus metrics, the alert rules (helm/jobprov/files/alerts.yaml) and the pipeline dashboard's
PromQL: naming conventions and `promtool check metrics` on a real exposition, `promtool check rules` and the rule
unit tests, every metric a dashboard or an alert names is one the code exports, and a real Prometheus scraping a
real worker on a real broker (rates, dashboard queries, rule health, the worker-down alert)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobprov.embedded.tansu import free_port
from jobprov.emitters.emitter import create_emitter
from jobprov.emitters.job import Job
from jobprov.schemas.models import PAYLOAD_BY_NAME
from jobprov.settings import EmitterSettings
from jobprov.stream_processors.metrics import DEAD_LETTER_REASONS, ProcessorMetrics
from tests.integration.conftest import Endpoint, kafka, settings_for  # noqa: F401 - fixtures: the test broker
from tests.integration.kafka_helpers import create_topic
from tests.integration.processing import start_worker, stop

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "helm/jobprov/files/alerts.yaml"
ALERT_TESTS = ROOT / "tests/ops/alerts_test.yaml"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
REQUIRED_ALERTS = {
    "JobprovWorkerDown",
    "JobprovDeadLettersRising",
    "JobprovConsumerLagGrowing",
    "JobprovSinkBackpressure",
    "JobprovNoEventsConsumed",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make tools` (it installs Prometheus and promtool)")
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=120)


# --- the exposition ---------------------------------------------------------------------------------------------


def registry_scrape() -> str:
    """The text a worker serves, from the code's own metrics with every method exercised once."""
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry)
    metrics.counted({"JobStarted": 2, "SomethingAnEmitterMadeUp": 1}, {"JobStarted": 2})
    metrics.dead_lettered("undecodable")
    metrics.fold_seconds(0.02, 10)
    metrics.lag(0, 5)
    metrics.backpressure()
    metrics.jobs({"a": "running", "b": "succeeded"})
    return generate_latest(registry).decode()


def sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metric_names_and_labels_follow_the_conventions() -> None:
    text = registry_scrape()
    families = {f.name: f for f in text_string_to_metric_families(text) if not f.name.endswith("_created")}
    assert families, "nothing exported"
    allowed_labels = {"event_type", "reason", "status", "partition"}
    for name, family in families.items():
        assert name.startswith("jobprov_"), name
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        names = {s.name for s in samples}
        if family.type == "counter":
            assert names == {f"{name}_total"}, f"a counter's samples end in _total: {names}"
        else:
            assert not any(n.endswith("_total") for n in names), f"{name}: _total is for counters"
        if family.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"{name}: a histogram is in base units"
        assert not re.search(r"_(milli|micro|nano)?(ms|us|ns|millis|minutes|hours|kb|mb|gb)(_|$)", name), name
        for sample in samples:
            labels = set(sample.labels) - {"le"}
            assert labels <= allowed_labels, f"{sample.name}: unexpected labels {labels}"
            assert not labels & {"job_id", "event_id", "job", "instance"}, sample.name
    consumed = {s.labels["event_type"] for s in families["jobprov_events_consumed"].samples if "_total" in s.name}
    assert consumed == set(PAYLOAD_BY_NAME) | {"unknown"}, "event_type is bounded by the schema's payloads"
    done = promtool("check", "metrics", stdin=text)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_known_label_values_are_exported_at_zero_from_the_start() -> None:
    registry = CollectorRegistry()
    ProcessorMetrics(registry)
    families = text_string_to_metric_families(generate_latest(registry).decode())
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    for reason in DEAD_LETTER_REASONS:
        assert values[("jobprov_dead_letters_total", (("reason", reason),))] == 0
    for event_type in PAYLOAD_BY_NAME:
        assert values[("jobprov_events_consumed_total", (("event_type", event_type),))] == 0
        assert values[("jobprov_events_folded_total", (("event_type", event_type),))] == 0
    assert values[("jobprov_sink_backpressure_total", ())] == 0


# --- PromQL in the dashboards and the rules -------------------------------------------------------------------

_KEYWORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "predict_linear",
    "histogram_quantile",
    "absent",
    "absent_over_time",
    "changes",
    "resets",
    "clamp_min",
    "clamp_max",
    "abs",
    "time",
    "vector",
    "scalar",
    "label_replace",
    "label_join",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "sum_over_time",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (enough PromQL for ours: no nested braces in strings)."""
    if match := re.fullmatch(r"\s*label_values\((?:(\w+)(?:\{[^}]*\})?\s*,)?\s*\w+\)\s*", expr):
        return {match.group(1)} if match.group(1) else set()
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    expr = re.sub(r"(?<![\w.])\d+(\.\d+)?(e[+-]?\d+)?", "", expr)
    return {t for t in re.findall(r"[A-Za-z_:][\w:]*", expr) if t not in _KEYWORDS}


def dashboard_promql() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        data = json.loads(path.read_text())
        for panel in data["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == "prometheus":
                    yield f"{path.name} {panel['title']}/{target['refId']}", target["expr"]
        for variable in data["templating"]["list"]:
            if variable["type"] == "query" and variable["datasource"]["type"] == "prometheus":
                yield f"{path.name} variable {variable['name']}", variable["query"]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_dashboards_and_alerts_name_only_metrics_the_code_exports() -> None:
    exported = sample_names(registry_scrape()) | {"up"}  # up: Prometheus' own, per scrape target
    used: set[str] = set()
    sources = [*dashboard_promql(), *((f"alert {r['alert']}", r["expr"]) for r in alert_rules())]
    assert len(sources) > 15
    for where, expr in sources:
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} are not exported by the workers"
        used |= names
    families = {f.name for f in text_string_to_metric_families(registry_scrape()) if not f.name.endswith("_created")}
    shown = {f for f in families if any(n == f or n.startswith(f + "_") for n in used)}
    assert shown == families, f"exported but on no dashboard or alert: {sorted(families - shown)}"


def test_metric_name_extraction() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(jobprov_fold_batch_seconds_bucket{job=~"$job"}[$__rate_interval])))'
    ) == {"jobprov_fold_batch_seconds_bucket"}
    assert promql_metric_names('a unless a offset 10m > 1e-3 or up{job=~".*"} == 0') == {"a", "up"}
    assert promql_metric_names('label_values(jobprov_events_consumed_total{job=~"$job"}, instance)') == {
        "jobprov_events_consumed_total"
    }


# --- the rules ----------------------------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) >= REQUIRED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c.get("exp_alerts")}
    quiet = {c["alertname"] for t in cases for c in t["alert_rule_test"] if not c.get("exp_alerts")}
    assert firing == set(rules), f"alerts never seen firing in a unit test: {sorted(set(rules) - firing)}"
    assert quiet == set(rules), f"alerts never checked quiet in a unit test: {sorted(set(rules) - quiet)}"


# --- a real Prometheus scraping a real worker -------------------------------------------------------------------


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "jobprov-worker", "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                "--log.level=warn",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            try:
                if check():
                    return
            except (OSError, KeyError, ValueError):
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {what}; log: {self.log.read_text()[-2000:]}"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _value(result: list[dict[str, Any]]) -> float:
    return sum(float(r["value"][1]) for r in result)


def _emit(url: str, settings: EmitterSettings, jobs: int, start: int) -> None:
    emitter = create_emitter(settings)
    for i in range(start, start + jobs):
        with Job(name=f"prom-{i}", provenance={"dataset": "testdata_hsc"}, emitter=emitter) as job:
            job.metric("AM1", 1.0 + i, unit="mas")
    assert emitter.close().delivered > 0


def _dashboard_expr(expr: str) -> str:
    for variable, value in (
        ("$__rate_interval", "30s"),
        ("$__range", "5m"),
        ("$job", "jobprov-worker"),
        ("$instance", ".*"),
    ):
        expr = expr.replace(variable, value)
    return expr


def test_a_real_prometheus_scrapes_a_running_worker(
    kafka: Endpoint,  # noqa: F811 - the integration conftest's fixture
    settings_for: Callable[..., EmitterSettings],  # noqa: F811
    tmp_path: Path,
) -> None:
    tool("prometheus")
    topic = f"events-{uuid.uuid4().hex[:10]}"
    create_topic(kafka.bootstrap, topic, 1)
    create_topic(kafka.bootstrap, f"{topic}.derived", 1)
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    url = f"kafka://{kafka.bootstrap}/{topic}"
    worker = start_worker(kafka.bootstrap, topic, 1, tmp_path)
    port: int = worker.metrics_port  # type: ignore[attr-defined]
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{port}"], [ALERTS])
    try:
        prometheus.wait("the worker up", lambda: _value(prometheus.query('up{job="jobprov-worker"}')) == 1, 120)
        # The real exposition passes promtool and carries every metric the rules and dashboards read (all but
        # the per-status and per-partition gauges exist before the first batch).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            scraped = response.read().decode()
        done = promtool("check", "metrics", stdin=scraped)
        assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
        needed = set().union(*(promql_metric_names(r["expr"]) for r in alert_rules())) - {"up"}
        missing = needed - sample_names(scraped) - {"jobprov_consumer_lag_events", "jobprov_jobs"}
        assert not missing, f"the worker does not export {sorted(missing)}"

        # Events flow: Prometheus sees them as a rate.
        rate = 'sum(rate(jobprov_events_consumed_total{job="jobprov-worker"}[30s]))'
        emitted = 0

        def flowing() -> bool:
            nonlocal emitted
            if _value(prometheus.query(rate)) > 0:
                return True
            _emit(url, settings_for(url), 2, emitted)
            emitted += 2
            time.sleep(3)
            return _value(prometheus.query(rate)) > 0

        prometheus.wait("a positive event rate", flowing, 150)
        assert _value(prometheus.query('sum(jobprov_jobs{job="jobprov-worker", status="succeeded"})')) >= 1

        # Every PromQL of the dashboards runs; the throughput panels show data.
        for where, expr in dashboard_promql():
            if expr.startswith("label_values("):
                continue
            result = prometheus.query(_dashboard_expr(expr))
            if "jobprov_events_consumed_total" in expr or expr.startswith("sum(up"):
                assert result, f"{where}: no data for {expr}"
        for label in ("job", "instance"):
            values = prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": "jobprov_events_consumed_total"})
            assert values, f"the {label} variable would be empty"

        # The rules load and evaluate without errors.
        def rules_evaluated() -> bool:
            groups = prometheus.get("/api/v1/rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert {g["name"] for g in groups} == {"jobprov-workers", "jobprov-pipeline"}
            assert len(rules) == len(alert_rules())
            return all(r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in rules)

        prometheus.wait("the rules evaluated", rules_evaluated, 30)
        assert not prometheus.get("/api/v1/alerts")["alerts"], "an alert is active on a healthy pipeline"

        # The worker goes away: JobprovWorkerDown becomes pending (it fires after its `for`).
        stop(worker)

        def worker_down_pending() -> bool:
            alerts = prometheus.get("/api/v1/alerts")["alerts"]
            return any(a["labels"]["alertname"] == "JobprovWorkerDown" and a["state"] == "pending" for a in alerts)

        prometheus.wait("JobprovWorkerDown pending", worker_down_pending, 30)
    finally:
        stop(worker)
        prometheus.stop()
