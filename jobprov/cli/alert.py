"""`jobprov alert ack|invalid|fixed|wontfix|improvement ALERT_ID` and `jobprov alerts scan`.

A triage is an event (``AlertTriaged``) sent where `jobprov emit` sends (the configured emitter URL, with the
spool as fallback), after checking, with whoever answers queries (a running `jobprov up`'s API, or the store), that
the alert exists. A scan runs the detector where the store is: in this process when the store is opened here (its
new alerts' events go to the emitter URL, and the configured webhooks hear of them), else through the API of the
running service (a write token in $JOBPROV_API_TOKEN; `jobprov up` also scans by itself every
``alerts.scan_interval_s``).
"""

from __future__ import annotations

import os
from typing import Any

import click

from jobprov.cli.common import SuggestingGroup, settings_from
from jobprov.cli.query import FORMATS, _backend, _emit, _run
from jobprov.errors import ConfigError
from jobprov.query.alerts import VERBS

STORE = click.option("--store", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
API = click.option("--api", envvar="JOBPROV_API_URL", help="Ask this query API (http(s)://host:port) instead.")


@click.group(cls=SuggestingGroup)
def alert() -> None:
    """Triage alerts (detected changes of level), or scan for new ones."""


alerts = alert  # `jobprov alerts scan` reads better; one group under both names


def _triage_command(verb: str, state: str) -> click.Command:
    @click.argument("alert_id")
    @click.option("--note", help="Why: a link, a cause, what was done.")
    @click.option("--author", default=lambda: os.environ.get("USER"), help="Who (default: $USER).")
    @STORE
    @API
    @click.pass_context
    def command(
        ctx: click.Context, alert_id: str, note: str | None, author: str | None, store: str | None, api: str | None
    ) -> None:
        from jobprov.query.alerts import triage

        ctx.obj = {"store": store, "api": api}
        (found,) = _run(lambda: _backend(ctx).alerts(alert=alert_id))
        _run(lambda: triage(alert_id, state, settings_from(ctx), note=note, author=author))
        click.echo(f"{alert_id}: {found['state']} → {state} (recorded; `jobprov query alerts` shows it once folded)")

    command.__doc__ = f"Mark ALERT_ID {state}."
    return alert.command(verb)(command)


for _verb, _state in VERBS.items():
    _triage_command(_verb, _state)


@alert.command()
@STORE
@API
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def scan(ctx: click.Context, store: str | None, api: str | None, fmt: str) -> None:
    """Run the detector of `query regressions` on every bucket now and raise an alert per new regression."""
    from jobprov.query.alert_loop import notifier_from
    from jobprov.query.backend import LocalBackend
    from jobprov.settings import load_alert_settings

    ctx.obj = {"store": store, "api": api}
    backend = _backend(ctx)
    notifier = None
    if isinstance(backend, LocalBackend):
        try:
            notifier = notifier_from(load_alert_settings(config_file=ctx.find_root().params.get("config")))
        except ConfigError as exc:
            raise click.UsageError(f"configuration error: {exc}") from exc
        backend.events, backend.notifier = settings_from(ctx), notifier
    try:
        report: dict[str, Any] = _run(backend.scan_alerts)
    finally:
        if notifier is not None:
            notifier.idle(30.0)  # the webhooks hear of the new alerts before the command ends (bounded)
            notifier.close()
    rows = [
        {"alert_id": a["alert_id"], "metric": a["metric"], "label": a["label"], "first_bad_job": a["first_bad_job"],
         "before": f"{a['before']:.4g}", "size": f"{a['size']:.4g}", "direction": a["direction"]}
        for a in report["raised"]
    ]  # fmt: skip
    if fmt == "table":
        click.echo(f"{report['buckets']} buckets scanned in {report['seconds']:.2f}s; {len(rows)} new alerts")
    _emit(rows, fmt, report)
