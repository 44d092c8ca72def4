"""The web page and the regression plots, checked in a real headless Chromium and by reading their pixels.

The API serves a store loaded with the known-answer campaign (four buckets of AM1; numpy 1.26.4 -> 2.0.1 shifts
hsc from night UPGRADE on), so the page must show four lines, ring the hsc regressions in red, and say that
numpy changed when the ring is hovered or clicked.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobprov.query.backend import LocalBackend
from jobprov.query.plots import PALETTE, REGRESSION, series_html, series_png
from jobprov.query.store import Store
from tests.integration.conftest import serving
from tests.integration.test_queries import UPGRADE, job_id, loaded  # noqa: F401 (the fixture)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def count_pixels(png: bytes, colour: str, tolerance: int = 40) -> int:
    """Pixels within ``tolerance`` (per channel) of ``colour``."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    close = np.abs(pixels - np.array(_rgb(colour), dtype=np.int16)) <= tolerance
    return int(close.all(axis=-1).sum())


@pytest.fixture
def api(loaded: Store) -> Iterator[str]:  # noqa: F811
    from jobprov.query.api import create_app

    with serving(create_app(loaded)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no {CHROMIUM}: run `make tools` (installs Chromium from Debian)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_series_page_shows_buckets_regressions_and_what_changed(api: str, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{api}/?metric=AM1&min_points=5")  # the campaign is 12 nights; the upgrade comes on night 7
    page.wait_for_selector("#chart svg polyline")
    assert page.locator("#min_points").input_value() == "5"

    assert page.locator("#metric option").all_inner_texts() == ["AM1 (mas): 48 points, 4 buckets"]
    assert page.locator("#chart svg polyline").count() == 4
    legend = page.locator("#chart .legend").inner_text()
    for dataset in ("hsc", "cfht"):
        for band in ("r", "all"):
            assert f"band={band}, dataset={dataset} (12)" in legend
    rings = page.locator("#chart circle.regression")
    assert rings.count() >= 2
    onsets = page.locator('#chart circle.regression[data-onset="1"]')
    assert sorted(onsets.nth(i).get_attribute("data-job") for i in range(onsets.count())) == [
        job_id(UPGRADE, "hsc", "all"),
        job_id(UPGRADE, "hsc", "r"),
    ]

    onsets.first.hover(force=True)
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible()
    assert "software.numpy: 1.26.4 → 2.0.1" in tooltip.inner_text()
    onsets.first.click(force=True)
    assert "What changed: software.numpy: 1.26.4 → 2.0.1" in page.locator("#explain").inner_text()
    table = page.locator("#regressions tbody").inner_text()
    assert table.count("software.numpy: 1.26.4 → 2.0.1") == 2

    shot = page.locator("#chart svg").screenshot(path=str(tmp_path / "series.png"))
    assert count_pixels(shot, REGRESSION) > 100  # the red rings are drawn
    for colour in PALETTE[:4]:
        assert count_pixels(shot, colour, tolerance=25) > 200, f"no line drawn in {colour}"
    assert count_pixels(shot, PALETTE[4], tolerance=25) < 20  # and no fifth line
    assert errors == []


def test_job_page_shows_provenance_attempts_and_lineage(api: str, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{api}/?metric=AM1")
    page.wait_for_selector("#chart svg circle.point")
    wanted = job_id(UPGRADE - 2, "hsc", "r")
    # Points of neighbouring buckets overlap at this scale: send the click to this job's point itself.
    page.locator(f'#chart circle.point[data-job="{wanted}"]').dispatch_event("click")
    page.wait_for_url(f"{api}/jobs/{wanted}")
    page.wait_for_selector("#provenance td")

    assert wanted in page.locator("#title").inner_text()
    provenance = page.locator("#provenance").inner_text()
    assert "context\tctx.software.numpy\t1.26.4" in provenance and "parameter\tparam.dataset\thsc" in provenance
    assert provenance.index("param.dataset") < provenance.index("ctx.software.numpy") < provenance.index("sys.host")
    assert "succeeded" in page.locator("#summary").inner_text()
    assert page.locator("#attempts td").count() >= 2
    shot = page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
    assert count_pixels(shot, "#1a7f37", tolerance=30) > 10  # the succeeded status, in green
    missing = page.goto(f"{api}/api/v1/jobs/no-such-job")
    assert missing is not None and missing.status == 404
    assert errors == []


def test_plots_as_png_and_standalone_html(loaded: Store, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    backend = LocalBackend(loaded)
    lines = backend.series("AM1")
    found = backend.regressions("AM1", window=6, k=4.0, min_points=5, onset_only=False)
    png = series_png("AM1", lines, found, tmp_path / "am1.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert count_pixels(png, REGRESSION, tolerance=30) > 100
    for colour in PALETTE[:4]:
        assert count_pixels(png, colour, tolerance=25) > 100, f"no line drawn in {colour}"

    report = series_html("AM1", lines, found, tmp_path / "report" / "am1.html")
    page = browser.new_page()
    page.goto(report.as_uri())
    page.wait_for_selector("#chart svg polyline")
    assert page.locator("#chart svg polyline").count() == 4
    assert page.locator('#chart circle.regression[data-onset="1"]').count() == 2
    assert page.get_by_text("software.numpy: 1.26.4 → 2.0.1").count() >= 2


def test_the_cli_prints_the_same_through_the_api_and_refuses_bad_parameters_with_the_reason(
    api: str,
    loaded: Store,  # noqa: F811
) -> None:
    from click.testing import CliRunner

    from jobprov.cli.main import cli
    from tests.integration.conftest import _CHDB_STORE

    runner = CliRunner()
    direct = ["query", "--store", f"chdb://{_CHDB_STORE[0]}"]
    remote = ["query", "--api", api]
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    for verb in (
        ["series", "AM1", "--format", "csv"],
        ["regressions", "AM1", "--min-points", "5", "--format", "json"],
        ["compare", job_id(UPGRADE - 1, "hsc", "r"), job_id(UPGRADE, "hsc", "r")],
        ["job", job_id(3, "cfht", "r")],
        ["status"],
        ["metrics"],
    ):
        here = runner.invoke(cli, [*direct, *verb], env=env, catch_exceptions=False)
        there = runner.invoke(cli, [*remote, *verb], catch_exceptions=False)
        assert here.exit_code == there.exit_code == 0, (here.output, there.output)
        assert here.stdout == there.stdout, verb
    bad = runner.invoke(cli, [*remote, "regressions", "AM1", "--window", "1"])
    assert bad.exit_code == 2 and "window" in bad.output
    missing = runner.invoke(cli, [*remote, "job", "no-such-job"])
    assert missing.exit_code == 2 and "no job 'no-such-job'" in missing.output


def test_page_asks_for_a_token_once_when_the_api_needs_one(loaded: Store, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from jobprov.query.api import create_app
    from jobprov.query.tokens import token_hash
    from jobprov.settings import ApiSettings

    with serving(create_app(loaded, settings=ApiSettings(tokens=(f"{token_hash('page-token')}:read",)))) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        asked: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def answer(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept("page-token")

        page.on("dialog", answer)
        page.goto(f"{url}/?metric=AM1")
        page.wait_for_selector("#chart svg polyline")
        assert page.locator("#chart svg polyline").count() == 4
        assert len(asked) == 1 and "token" in asked[0]  # once: the tab keeps it for the following requests
        assert errors == []


def test_page_draws_no_point_for_a_non_finite_value(loaded: Store, api: str, browser: Any) -> None:  # noqa: F811
    """Values stored before the emitter refused NaN/±Inf come as null: the line breaks there, the rest is drawn."""
    import math

    from jobprov.sinks.clickhouse.sink import ClickHouseSink
    from jobprov.stream_processors.records import MetricPoint

    sink = ClickHouseSink(loaded.client, loaded.database)
    values = [1.0, 2.0, math.nan, 3.0, math.inf, 4.0, -math.inf, 5.0]
    job = job_id(0, "hsc", "r")
    sink.write([MetricPoint(job, f"odd-{i}", "ODD", v, "s", 1_780_000_000_000 + i * 60_000, 1, None, {}, "b-odd",
                            {"dataset": "hsc"}, "r1", 1) for i, v in enumerate(values)])  # fmt: skip
    sink.flush(60)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{api}/?metric=ODD&min_points=2&window=2")
    page.wait_for_selector("#chart svg polyline")
    assert page.locator("#chart svg circle.point").count() == 5
    assert page.locator("#chart svg polyline").count() == 4  # broken at each of the three non-finite values
    assert errors == []
