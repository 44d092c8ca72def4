"""Alerts end to end on the real broker and engine: a scan raises them (events), the worker's fold makes the alerts
table, people triage them (events), they are listed by state, and a replay of the log rebuilds the same states.
Through the HTTP API and through the CLI, with a webhook receiver hearing of the new alerts.

The campaign of test_queries: a numpy upgrade moves AM1 on hsc (bands r and all) up by 1.5 from night UPGRADE.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from click.testing import CliRunner

from jobprov.cli.main import cli
from jobprov.emitters.importers.send import to_events
from jobprov.query.alert_loop import Activity, AlertLoop, scan_and_raise
from jobprov.query.alerts import SENDER, alert_id, list_alerts, raised_records, scan
from jobprov.query.api import create_app
from jobprov.query.store import Store
from jobprov.query.tokens import token_hash
from jobprov.schemas.wire import encode_event
from jobprov.settings import AlertSettings, ApiSettings, EmitterSettings
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.sinks.clickhouse.state import ClickHouseStateStore
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from jobprov.stream_processors.replay import from_events_table, replay, verify
from tests.integration.conftest import _CHDB_STORE, Endpoint, serving
from tests.integration.kafka_helpers import consume, events_of
from tests.integration.processing import ListDeadLetters
from tests.integration.test_queries import UPGRADE, job_id, loaded  # noqa: F401 - the fixture
from tests.integration.test_web import browser  # noqa: F401 - the fixture
from tests.integration.test_webhooks import Receiver

WRITER = "alerts-writer-token"
WRITE = {"Authorization": f"Bearer {WRITER}"}
FIRST_BAD = {job_id(UPGRADE, "hsc", band) for band in ("r", "all")}


@pytest.fixture
def api(loaded: Store, kafka: Endpoint, topic: str, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    events = EmitterSettings(url=kafka.url(topic), spool_dir=str(tmp_path / "spool"), flush_timeout_s=10.0)
    access = ApiSettings(tokens=(f"{token_hash(WRITER)}:write",))
    with serving(create_app(loaded, settings=access, events=events)) as url:
        yield url


class Log:
    """What the broker holds of the test's topic, folded into the store as it grows by the worker's Processor with
    the worker's state store: each batch by a new processor, so an alert's state comes back from the store, as
    after a restart."""

    def __init__(self, kafka: Endpoint, topic: str, store: Store) -> None:
        self.kafka, self.topic, self.store, self.seen = kafka, topic, store, 0

    def fold_new(self, expected: int) -> None:
        messages = consume(self.kafka.bootstrap, self.topic, expected=self.seen + expected, idle=1.0)
        new = messages[self.seen :]
        assert len(new) == expected, f"{len(new)} new events, expected {expected}"
        self.seen = len(messages)
        client, db = self.store.client, self.store.database
        processor = Processor(
            ClickHouseSink(client, db), ListDeadLetters(), FoldContext(), state_store=ClickHouseStateStore(client, db)
        )
        processor.process_batch([RawEvent(encode_event(e), self.topic, 0, i) for i, e in enumerate(events_of(new))])


def _states(store: Store) -> dict[str, str]:
    return {a["alert_id"]: a["state"] for a in list_alerts(store)}


def test_raise_list_triage_and_replay_through_the_api(
    api: str,
    loaded: Store,  # noqa: F811
    kafka: Endpoint,
    topic: str,
) -> None:
    log = Log(kafka, topic, loaded)

    refused = httpx.post(f"{api}/api/v1/alerts/scan")
    assert refused.status_code == 401, "a scan records events: it takes a write token"
    scanned = httpx.post(f"{api}/api/v1/alerts/scan", headers=WRITE, timeout=60).json()
    raised = {a["first_bad_job"]: a for a in scanned["raised"]}
    assert set(raised) == FIRST_BAD and scanned["buckets"] == 4
    for a in raised.values():
        assert a["alert_id"] == alert_id("AM1", a["bucket"], a["first_bad_job"])
        assert a["changes"] == ["software.numpy: 1.26.4 → 2.0.1"] and a["state"] == "untriaged"
    log.fold_new(2)

    listed = httpx.get(f"{api}/api/v1/alerts", headers=WRITE).json()
    assert {a["first_bad_job"] for a in listed} == FIRST_BAD
    assert all(a["state"] == "untriaged" and a["size"] == pytest.approx(1.5, abs=0.1) for a in listed)
    again = httpx.post(f"{api}/api/v1/alerts/scan", headers=WRITE, timeout=60).json()
    assert again["raised"] == [], "a change that has its alert raises nothing new"

    first, second = sorted(raised[j]["alert_id"] for j in FIRST_BAD)
    body = {"state": "ack", "note": "numpy 2 upgrade", "author": "ann"}
    assert httpx.post(f"{api}/api/v1/alerts/{first}/triage", json=body).status_code == 401
    done = httpx.post(f"{api}/api/v1/alerts/{first}/triage", json=body, headers=WRITE)
    assert done.status_code == 200 and done.json()["state"] == "acknowledged"
    httpx.post(f"{api}/api/v1/alerts/{second}/triage", json={"state": "wontfix"}, headers=WRITE).raise_for_status()
    unknown = httpx.post(f"{api}/api/v1/alerts/{first[:-1]}x/triage", json=body, headers=WRITE)
    assert unknown.status_code == 404 and f"did you mean {first}" in unknown.json()["detail"]
    bad = httpx.post(f"{api}/api/v1/alerts/{first}/triage", json={"state": "fixd"}, headers=WRITE)
    assert bad.status_code == 400 and "did you mean fixed" in bad.json()["detail"]
    log.fold_new(2)

    def by_state(state: str) -> list[dict[str, str]]:
        return list(httpx.get(f"{api}/api/v1/alerts", headers=WRITE, params={"state": state}).json())

    acked = [(a["alert_id"], a["note"], a["author"], a["triages"]) for a in by_state("acknowledged")]
    assert acked == [(first, "numpy 2 upgrade", "ann", 1)]
    assert [a["alert_id"] for a in by_state("wontfix")] == [second]
    assert by_state("untriaged") == []
    wrong = httpx.get(f"{api}/api/v1/alerts", headers=WRITE, params={"state": "acked"})
    assert wrong.status_code == 422 and "acknowledged" in str(wrong.json()["detail"]), "the state's choices named"

    live = _states(loaded)
    shadow = f"{loaded.database}_shadow"
    replay(from_events_table(loaded.client, loaded.database), loaded.client, shadow, progress=False)
    assert _states(Store(loaded.client, shadow)) == live == {first: "acknowledged", second: "wontfix"}
    assert verify(loaded.client, loaded.database, shadow).clean, "replay rebuilds the alerts table row for row"
    loaded.client.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_scan_triage_and_list_through_the_cli_with_a_webhook(
    loaded: Store,  # noqa: F811
    kafka: Endpoint,
    topic: str,
    tmp_path: Path,
) -> None:
    log = Log(kafka, topic, loaded)
    receiver = Receiver(fail_first=1)
    env = {
        "JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database,
        "JOBPROV_ALERTS_WEBHOOKS": f"slack={receiver.url}",
        "JOBPROV_ALERTS_WEBHOOK_BACKOFF_S": "0.1",
        "JOBPROV_SPOOL_DIR": str(tmp_path / "spool"),
    }
    store = ["--store", f"chdb://{_CHDB_STORE[0]}"]
    runner = CliRunner()

    def run(*args: str) -> str:
        done = runner.invoke(cli, ["--url", kafka.url(topic), *args], env=env, catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return done.output

    try:
        scanned = json.loads(run("alerts", "scan", *store, "--format", "json"))
        assert {a["first_bad_job"] for a in scanned["raised"]} == FIRST_BAD
        texts = sorted(body["text"] for _, body in receiver.bodies)
        assert len(texts) == 2 and all(t.startswith("Regression in AM1 [band=") for t in texts), texts
        assert receiver.attempts == 3, "the first post failed and was tried again"
    finally:
        receiver.close()
    log.fold_new(2)
    assert "0 new alerts" in run("alerts", "scan", *store)

    table = run("query", *store, "alerts", "--state", "untriaged")
    ids = sorted(a["alert_id"] for a in scanned["raised"])
    assert all(i in table for i in ids) and "software.numpy: 1.26.4 → 2.0.1" in table
    assert "→ acknowledged" in run("alert", "ack", ids[0], "--note", "expected", "--author", "bob", *store)
    assert "→ fixed" in run("alert", "fixed", ids[1], *store)
    log.fold_new(2)
    acked = json.loads(run("query", *store, "alerts", "--state", "acknowledged", "--format", "json"))
    assert [(a["alert_id"], a["note"], a["author"]) for a in acked] == [(ids[0], "expected", "bob")]
    assert _states(loaded) == {ids[0]: "acknowledged", ids[1]: "fixed"}

    missing = runner.invoke(cli, ["--url", kafka.url(topic), "alert", "ack", "nope", *store], env=env)
    assert missing.exit_code == 2 and "unknown alert 'nope'" in missing.output


def test_the_web_page_lists_alerts_and_triages_them(
    api: str,
    loaded: Store,  # noqa: F811
    kafka: Endpoint,
    topic: str,
    browser: Any,  # noqa: F811
) -> None:
    log = Log(kafka, topic, loaded)
    httpx.post(f"{api}/api/v1/alerts/scan", headers=WRITE, timeout=60).raise_for_status()
    log.fold_new(2)

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.add_init_script(f"sessionStorage.setItem('jobprov.token', '{WRITER}')")  # as the page's prompt keeps it
    page.goto(f"{api}/alerts?state=untriaged")
    page.wait_for_selector("#alerts tbody tr")
    rows = page.locator("#alerts tbody tr")
    assert rows.count() == 2
    text = page.locator("#alerts tbody").inner_text()
    assert text.count("software.numpy: 1.26.4 → 2.0.1") == 2 and job_id(UPGRADE, "hsc", "r") in text
    assert text.count(" mas (regression)") == 2
    first = rows.first
    alert = first.get_attribute("data-alert")
    first.locator("input.note").fill("numpy 2 is expected to move AM1")
    first.locator('button[data-state="acknowledged"]').click()
    page.wait_for_function("document.querySelector('#summary').textContent.includes('recorded')")
    assert first.locator("td.state").inner_text() == "acknowledged (recorded)"
    log.fold_new(1)

    page.goto(f"{api}/alerts?state=acknowledged")
    page.wait_for_selector("#alerts tbody tr")
    assert page.locator("#alerts tbody tr").count() == 1
    assert page.locator("#alerts tbody tr").first.get_attribute("data-alert") == alert
    assert page.locator("td.state").inner_text() == "acknowledged: numpy 2 is expected to move AM1"
    assert page.locator("#state").input_value() == "acknowledged"
    assert errors == []


def test_the_service_loop_raises_each_alert_once_and_tells_the_webhook(
    loaded: Store,  # noqa: F811
    kafka: Endpoint,
    topic: str,
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    events = EmitterSettings(url=kafka.url(topic), spool_dir=str(tmp_path / "spool"), flush_timeout_s=10.0)
    settings = AlertSettings(scan_interval_s=0.3, webhooks=(receiver.url,))
    loop = AlertLoop(loaded, events, settings)
    try:
        loop.start()
        deadline = time.monotonic() + 60
        while loop.passes < 3 and time.monotonic() < deadline:  # passes before the worker folds the raises
            time.sleep(0.1)
        assert loop.passes >= 3
        assert loop.notifier is not None and loop.notifier.idle(10)
    finally:
        loop.stop()
        receiver.close()
    bodies = [body["alert"] for _, body in receiver.bodies]
    assert sorted(b["first_bad_job"] for b in bodies) == sorted(FIRST_BAD), "one notification per new alert"
    Log(kafka, topic, loaded).fold_new(2)  # and one event each, however many passes ran
    assert {a["alert_id"] for a in list_alerts(loaded)} == {b["alert_id"] for b in bodies}
    assert scan_and_raise(loaded, events).raised == [], "once folded, a pass of its own raises nothing"


def test_a_scan_asked_through_the_api_shares_the_loops_memory(
    loaded: Store,  # noqa: F811
    kafka: Endpoint,
    topic: str,
    tmp_path: Path,
) -> None:
    """In `jobprov up` the API's scan is a pass of the service's loop: whichever raises an alert first, the other
    neither sends it again nor notifies twice, even before the worker has folded it."""
    receiver = Receiver()
    events = EmitterSettings(url=kafka.url(topic), spool_dir=str(tmp_path / "spool"), flush_timeout_s=10.0)
    loop = AlertLoop(loaded, events, AlertSettings(scan_interval_s=0, webhooks=(receiver.url,)))
    access = ApiSettings(tokens=(f"{token_hash(WRITER)}:write",))
    app = create_app(loaded, settings=access, events=events, notifier=loop.notifier, scan_pass=loop.scan_now)
    try:
        with serving(app) as url:
            first = httpx.post(f"{url}/api/v1/alerts/scan", headers=WRITE, timeout=60)
            assert {a["first_bad_job"] for a in first.json()["raised"]} == FIRST_BAD
            assert loop.run_once() is not None and loop.last is not None and loop.last.raised == []
            again = httpx.post(f"{url}/api/v1/alerts/scan", headers=WRITE, timeout=60)
            assert again.json()["raised"] == []
            assert loop.notifier is not None and loop.notifier.idle(10)
    finally:
        loop.stop()
        receiver.close()
    assert sorted(body["alert"]["first_bad_job"] for _, body in receiver.bodies) == sorted(FIRST_BAD)
    Log(kafka, topic, loaded).fold_new(2)  # one event per alert, three passes
    assert loop.passes == 3 and loop.raised == 2


def test_a_change_the_detector_places_a_point_away_is_the_alert_already_raised(loaded: Store) -> None:  # noqa: F811
    (hsc_r, hsc_all) = sorted(scan(loaded).raised, key=lambda a: a.label["band"] != "r")
    assert hsc_r.label["band"] == "r" and hsc_all.label["band"] == "all"
    # An alert raised earlier for the same change, placed one point later (the series was shorter then).
    earlier = dataclasses.replace(
        hsc_r,
        first_bad_job=job_id(UPGRADE + 1, "hsc", "r"),
        alert_id=alert_id("AM1", hsc_r.bucket, job_id(UPGRADE + 1, "hsc", "r")),
    )
    events = to_events(raised_records([earlier], datetime.now(UTC)), SENDER)
    processor = Processor(ClickHouseSink(loaded.client, loaded.database), ListDeadLetters(), FoldContext())
    processor.process_batch([RawEvent(encode_event(e), "t", 0, i) for i, e in enumerate(events)])
    assert [a.alert_id for a in scan(loaded).raised] == [hsc_all.alert_id], "hsc r has its alert already"
    assert hsc_all.alert_id == alert_id("AM1", hsc_all.bucket, job_id(UPGRADE, "hsc", "all")), "ids are stable"


def test_the_service_loop_waits_for_the_worker_to_be_quiet_at_most_an_interval(
    loaded: Store,  # noqa: F811
    kafka: Endpoint,
    topic: str,
    tmp_path: Path,
) -> None:
    """Ingestion first: a pass waits while the worker folds; a worker that never rests delays it by one interval."""
    events = EmitterSettings(url=kafka.url(topic), spool_dir=str(tmp_path / "spool"), flush_timeout_s=10.0)
    activity = Activity(quiet_s=0.3)
    folding = threading.Event()
    folding.set()

    def worker() -> None:  # folds a batch every 50 ms while set
        while folding.is_set():
            activity.folded()
            time.sleep(0.05)

    threading.Thread(target=worker, daemon=True).start()
    loop = AlertLoop(loaded, events, AlertSettings(scan_interval_s=30.0), activity=activity)
    first_pass = 1.0
    try:
        with mock.patch("jobprov.query.alert_loop.FIRST_PASS_S", first_pass):
            started = time.monotonic()
            loop.start()
            time.sleep(first_pass + 1.5)
            assert loop.passes == 0 and loop.deferrals == 1, "no pass while the worker folds"
            folding.clear()
            quiet_from = time.monotonic()
            deadline = quiet_from + 20
            while loop.passes == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert loop.passes == 1, "the pass runs once the worker is quiet, well before the interval is up"
            assert time.monotonic() - started < 30.0
    finally:
        folding.clear()
        loop.stop()

    # A worker that never rests: the pass runs anyway, an interval after it was due.
    folding.set()
    threading.Thread(target=worker, daemon=True).start()
    loop = AlertLoop(loaded, events, AlertSettings(scan_interval_s=1.0), activity=activity)
    try:
        started = time.monotonic()
        loop.start()
        deadline = started + 30
        while loop.passes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loop.passes >= 1 and loop.deferrals >= 1
        assert time.monotonic() - started >= 2.0, "the first pass (due after 1 s) waited its interval"
        assert activity.busy()
    finally:
        folding.clear()
        loop.stop()
