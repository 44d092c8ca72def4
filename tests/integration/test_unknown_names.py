"""A name the store does not know (a metric, a provenance key) is an error naming the close matches, in the
query layer, the CLI (exit 2), the HTTP API (404) and the web page; never an empty answer."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from jobprov.cli.main import cli
from jobprov.errors import UnknownNameError
from jobprov.query.attributes import find_jobs
from jobprov.query.series import baseline, regressions, series
from jobprov.query.store import Store
from tests.integration.test_queries import loaded  # noqa: F401 (the fixture)
from tests.integration.test_web import api, browser  # noqa: F401 (the fixtures)


@pytest.mark.parametrize(
    ("metric", "advice"),
    [("AM2", "did you mean AM1?"), ("am1", "did you mean AM1?"), ("NOPE", "known: AM1")],
)
def test_an_unknown_metric_is_an_error_with_close_matches(loaded: Store, metric: str, advice: str) -> None:  # noqa: F811
    for ask in (
        lambda: series(loaded, metric),
        lambda: series(loaded, metric, group_by=["dataset"]),
        lambda: regressions(loaded, metric),
        lambda: baseline(loaded, metric, "0" * 16),
    ):
        with pytest.raises(UnknownNameError, match=f"unknown metric '{metric}': {advice}"):
            ask()


def test_a_known_metric_with_nothing_left_by_the_filters_is_an_empty_answer(loaded: Store) -> None:  # noqa: F811
    assert series(loaded, "AM1", filters={"dataset": "no-such-dataset"}) == []


def test_an_unknown_provenance_key_in_find_names_the_job_attribute(loaded: Store) -> None:  # noqa: F811
    with pytest.raises(UnknownNameError, match=r"unknown attribute 'status': did you mean job\.status"):
        find_jobs(loaded, ["status = succeeded"])
    with pytest.raises(UnknownNameError, match=r"unknown attribute 'datset': did you mean dataset"):
        find_jobs(loaded, ["datset = hsc"])
    assert find_jobs(loaded, ["dataset = no-such-dataset"]) == []  # a known key, no match: empty
    assert len(find_jobs(loaded, ["job.status = succeeded", "dataset = hsc"])) > 0


def test_the_cli_and_the_api_refuse_unknown_names(api: str) -> None:  # noqa: F811
    runner = CliRunner()
    for args, advice in (
        (["series", "AM2"], "did you mean AM1?"),
        (["series", "am1", "--format", "csv"], "did you mean AM1?"),
        (["regressions", "NOPE"], "known: AM1"),
        (["plot", "AM2", "--png", "x.png"], "did you mean AM1?"),
        (["find", "--where", "status = succeeded"], "did you mean job.status"),
    ):
        result = runner.invoke(cli, ["query", "--api", api, *args])
        assert result.exit_code == 2, (args, result.output)
        assert advice in result.output and "(no rows)" not in result.output, (args, result.output)
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{api}/api/v1/series/NOPE", timeout=10)
    assert caught.value.code == 404


def test_the_web_page_says_a_metric_is_unknown(api: str, browser: Any) -> None:  # noqa: F811
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{api}/?metric=am1")
    page.wait_for_function("document.getElementById('chart').textContent.includes('cannot load')")
    assert "unknown metric 'am1': did you mean AM1?" in page.locator("#chart").inner_text()
    # The only error is the browser's own line about the API's 404 answer, which the page explains.
    assert all("404" in e for e in errors) and len(errors) <= 2, errors
    page.goto(f"{api}/?metric=AM1")
    page.wait_for_selector("#chart svg polyline")
