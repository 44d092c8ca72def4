"""Shared CLI plumbing: settings from options, parsing of k=v pairs and event times."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

import click

from jobprov.errors import ConfigError
from jobprov.settings import (
    ApiSettings,
    EmitterSettings,
    ProcessorSettings,
    load_api_settings,
    load_emitter_settings,
    load_processor_settings,
)


class SuggestingGroup(click.Group):
    """A command group that answers a mistyped command with the close ones (`jobprov qurey` -> query)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            matches = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
            hint = f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


def settings_from(ctx: click.Context, **overrides: Any) -> EmitterSettings:
    """Settings from the group's --config/--url/--spool-dir plus overrides; a bad key exits 2 naming it."""
    root = ctx.find_root().params
    merged = {"url": root.get("url"), "spool_dir": root.get("spool_dir"), **overrides}
    try:
        return load_emitter_settings(merged, config_file=root.get("config"))
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from exc


def processor_settings_from(ctx: click.Context, *, need_store: bool = False, **overrides: Any) -> ProcessorSettings:
    """Processor settings from the group's --config plus overrides (None values ignored); a bad key exits 2
    naming it; ``need_store`` exits 2 when no ClickHouse URL is configured."""
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = load_processor_settings(values, config_file=ctx.find_root().params.get("config"))
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from exc
    if need_store and settings.sink_url is None:
        raise click.UsageError("no store: pass chdb:///dir or http(s)://host:8123 (or set JOBPROV_PROCESSOR_SINK_URL)")
    return settings


def api_options(command: Any) -> Any:
    """The query API's access options, shared by `jobprov serve` and `jobprov up` (each also a setting)."""
    tokens = "Accepted tokens: lines of SHA256HEX read|write ($JOBPROV_API_TOKENS_FILE)."
    hosts = "A Host name to answer besides localhost, 127.0.0.1 and [::1] (repeatable)."
    origins = "An origin (scheme://host[:port]) whose pages may call the API (repeatable)."
    for option in reversed(
        [
            click.option("--tokens-file", help=tokens),
            click.option("--allowed-host", "allowed_hosts", multiple=True, help=hosts),
            click.option("--cors-origin", "cors_origins", multiple=True, help=origins),
        ]
    ):
        command = option(command)
    return command


def api_settings_from(
    ctx: click.Context, tokens_file: str | None, allowed_hosts: tuple[str, ...], cors_origins: tuple[str, ...]
) -> ApiSettings:
    """Query API settings from --config and the environment, with the options above over them; a bad key exits 2."""
    values: dict[str, Any] = {"tokens_file": tokens_file}
    if allowed_hosts:
        values["allowed_hosts"] = allowed_hosts
    if cors_origins:
        values["cors_origins"] = cors_origins
    try:
        return load_api_settings(values, config_file=ctx.find_root().params.get("config"))
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from exc


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        out[key] = value
    return out


def parse_time(raw: str | None) -> datetime | None:
    """ISO 8601 with an explicit offset (or Z), or epoch seconds."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (ValueError, OverflowError, OSError) as exc:
            from jobprov.emitters.validate import TIME_RULE

            raise click.BadParameter(
                f"{raw!r} epoch seconds is out of range: {TIME_RULE}", param_hint="--time"
            ) from exc
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{raw!r} is neither ISO 8601 nor epoch seconds", param_hint="--time") from exc
    if value.tzinfo is None:
        raise click.BadParameter(f"{raw!r} has no timezone; add Z or an offset like +02:00", param_hint="--time")
    return value
