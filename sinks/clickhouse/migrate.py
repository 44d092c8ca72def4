"""Applying the migrations: each version once, recorded in ``<database>.schema_migrations``."""

from __future__ import annotations

from typing import Any

from jobprov.sinks.clickhouse.ddl import Target, migrations


def applied_versions(client: Any, target: Target) -> set[int]:
    client.command(f"CREATE DATABASE IF NOT EXISTS {target.database}{target.on_cluster}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {target.database}.schema_migrations{target.on_cluster} "
        f"(version UInt32, description String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = {target.engine()} ORDER BY version"
    )
    # The database name is a checked identifier (Target), not user text.
    rows = client.query(f"SELECT version FROM {target.database}.schema_migrations FINAL").result_rows  # noqa: S608
    return {int(r[0]) for r in rows}


def migrate(client: Any, target: Target) -> list[int]:
    """Apply what is missing; returns the versions applied now. Safe to run again (every statement is
    IF NOT EXISTS, and a version is recorded only after all its statements succeeded)."""
    done = applied_versions(client, target)
    applied: list[int] = []
    for version, description, statements in migrations(target):
        if version in done:
            continue
        for statement in statements:
            client.command(statement)
        client.insert(
            f"{target.database}.schema_migrations", [[version, description]], column_names=["version", "description"]
        )
        applied.append(version)
    return applied
