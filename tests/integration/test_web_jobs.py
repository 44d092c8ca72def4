"""Every page of the web UI, for every kind of job the demo makes, in a real headless Chromium on a real
`jobprov up`: a job wrapped by `jobprov run` (with resource samples), a backfilled one, a retried one, a failed
one and one aborted by SIGTERM. Any console error or uncaught exception on any page fails the test."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import jobprov
from jobprov.embedded.service import ServiceInfo
from jobprov.emitters.emitter import create_emitter
from jobprov.settings import load_emitter_settings
from tests.integration.test_up import EMIT, JOBPROV, Up
from tests.integration.test_web import browser  # noqa: F401 (the fixture)

BACKFILL = datetime(2026, 9, 21, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo_jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A running service holding one job of each kind; yields its API URL and the job ids by kind."""
    home = tmp_path_factory.mktemp("web-jobs") / "home"
    up = Up(home).start()
    try:
        env = {**up.env, "JOBPROV_SAMPLE_INTERVAL_S": "0.2"}
        ids = {"wrapped": "wrapped-1", "aborted": "aborted-1", "backfilled": "backfilled-1", "retried": "retried-1",
               "failed": "failed-1", "rerun": "rerun-1", "slashed": "wf/step 1 é"}  # fmt: skip
        for value in ("1.0", "2.0"):  # the same id run twice: not a retry, a second run
            subprocess.run([*JOBPROV, "run", "--name", "rerun", "--job-id", ids["rerun"], "--", "sh", "-c",
                            f"{EMIT} metric RR1 {value}"], env=env, check=True)  # fmt: skip
        subprocess.run([*JOBPROV, "run", "--name", "shell_metric", "--job-id", ids["wrapped"], "-p", "band=r", "--",
                        "sh", "-c", f"sleep 1; {EMIT} metric TE1 0.93 --unit arcsec"], env=env, check=True)  # fmt: skip
        killed = subprocess.Popen([*JOBPROV, "run", "--name", "long_job", "--job-id", ids["aborted"], "--",
                                   "sleep", "30"], env=env)  # fmt: skip
        time.sleep(1.5)
        killed.send_signal(signal.SIGTERM)
        assert killed.wait(timeout=30) == 128 + signal.SIGTERM

        settings = load_emitter_settings({"url": up.env["JOBPROV_URL"], "spool_dir": str(home / "spool"),
                                          "capture_packages": False, "capture_git": False}, env={})  # fmt: skip
        emitter = create_emitter(settings)
        with jobprov.job(name="validate_drp", job_id=ids["backfilled"], provenance={"dataset": "hsc"},
                         time=BACKFILL, emitter=emitter) as job:  # fmt: skip
            job.declare(software={"numpy": "1.26.4"})
            job.metric("AM1", 10.2, unit="mas")
        for attempt in (1, 2):
            with jobprov.job(name="validate_drp", job_id=ids["retried"], attempt=attempt, emitter=emitter) as job:
                if attempt == 1:
                    job.finish(status="failed")  # a node failure; the retry succeeds
                    continue
                job.metric("AM1", 10.4, unit="mas")
        with jobprov.job(name="align", job_id=ids["slashed"], emitter=emitter):  # a workflow's run/node id
            pass
        try:
            with jobprov.job(name="validate_drp", job_id=ids["failed"], emitter=emitter):
                raise RuntimeError("butler repository not found")
        except RuntimeError:
            pass
        emitter.close()
        counts = up.wait_for_jobs(len(ids))
        assert counts == {"succeeded": 5, "failed": 1, "aborted": 1}, counts
        info = ServiceInfo.read(home)
        assert info is not None
        yield info.api_url, ids
    finally:
        up.stop()


def _open(browser: Any, url: str, ready: str) -> tuple[Any, list[str]]:  # noqa: F811
    """The page, once ``ready`` is drawn, and every console error and uncaught exception it has raised."""
    page = browser.new_page(viewport={"width": 1200, "height": 1500})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"exception: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.goto(url)
    page.wait_for_selector(ready)
    page.wait_for_load_state("networkidle")
    return page, errors


@pytest.mark.parametrize("kind", ["wrapped", "aborted", "backfilled", "retried", "failed", "rerun", "slashed"])
def test_every_job_page_loads_without_errors(
    demo_jobs: tuple[str, dict[str, str]],
    browser: Any,  # noqa: F811
    kind: str,
    tmp_path: Path,
) -> None:
    api, ids = demo_jobs
    page, errors = _open(browser, f"{api}/jobs/{urllib.parse.quote(ids[kind], safe='')}", "#summary td")
    title = page.locator("#title").inner_text()
    assert ids[kind] in title and "cannot load" not in title, title
    summary = page.locator("#summary").inner_text()
    resources = page.locator("#resources")
    if kind in ("wrapped", "aborted", "rerun"):  # `jobprov run` samples the process tree
        page.wait_for_selector("#resources svg polyline")
        assert page.locator("#resources svg circle.point").count() >= 2
        assert "resource=rss" in resources.inner_text()
    else:
        assert resources.inner_text() == "no resource samples"
    if kind == "aborted":
        assert "aborted" in summary and "SIGTERM (15)" in summary and "143" in summary
    if kind == "retried":
        attempts = page.locator("#attempts").inner_text()  # the first attempt stays failed
        assert "1\tfailed (superseded)" in attempts and "2\tsucceeded" in attempts
    if kind == "rerun":
        assert "attempt 1: started 2 times (by 2 emitters): the job id was reused" in summary
    else:
        assert "reused" not in summary
    if kind == "failed":
        assert "RuntimeError: butler repository not found" in summary
    if kind == "slashed":  # the CLI asks the running service for an id holding "/", a space and "é"
        shown = subprocess.run([*JOBPROV, "query", "--api", api, "job", ids[kind]], capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        assert ids[kind] in shown.stdout and "succeeded" in shown.stdout
    if kind == "backfilled":
        assert "2026-09-21T02:00:00" in summary  # its own start, and a real duration
        with urllib.request.urlopen(f"{api}/api/v1/jobs/{ids[kind]}", timeout=10) as response:
            assert 0 <= json.load(response)["duration_ms"] < 60_000
    page.screenshot(path=str(tmp_path / f"{kind}.png"), full_page=True)
    assert errors == [], errors


@pytest.mark.parametrize("metric", ["AM1", "TE1"])
def test_every_series_page_loads_without_errors_and_links_to_its_jobs(
    demo_jobs: tuple[str, dict[str, str]],
    browser: Any,  # noqa: F811
    metric: str,
) -> None:
    api, ids = demo_jobs
    page, errors = _open(browser, f"{api}/?metric={metric}", "#chart svg circle.point")
    jobs = {page.locator("#chart circle.point").nth(i).get_attribute("data-job")
            for i in range(page.locator("#chart circle.point").count())}  # fmt: skip
    wanted = {"AM1": {ids["backfilled"], ids["retried"]}, "TE1": {ids["wrapped"]}}[metric]
    assert jobs == wanted
    job = sorted(wanted)[0]
    page.locator(f'#chart circle.point[data-job="{job}"]').dispatch_event("click")
    page.wait_for_url(f"{api}/jobs/{job}")
    page.wait_for_selector("#summary td")
    page.wait_for_load_state("networkidle")
    assert errors == [], errors


def test_the_job_page_says_why_a_malformed_line_cannot_be_drawn(
    demo_jobs: tuple[str, dict[str, str]],
    browser: Any,  # noqa: F811
) -> None:
    """The chart's one data shape is checked before drawing: rows where columns belong is named, not a
    TypeError from deep inside the drawing code."""
    api, _ = demo_jobs
    page, _ = _open(browser, f"{api}/?metric=AM1", "#chart svg")
    message = page.evaluate(
        """() => { try { jobprovChart.renderSeries(document.createElement("div"),
                 { metric: "X", lines: [{ label: {}, points: [] }] }); return ""; } catch (e) { return e.message; } }"""
    )
    assert "times_ms must be an array" in message
    unequal = page.evaluate(
        """() => { try { jobprovChart.line({}, "", [1, 2], [1], ["a", "b"]); return ""; }
                   catch (e) { return e.message; } }"""
    )
    assert "unequal length" in unequal
