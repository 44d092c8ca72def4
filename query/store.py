"""A handle on the tables: a clickhouse-connect client and the database name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobprov.errors import QueryError
from jobprov.sinks.clickhouse.ddl import Target


@dataclass
class Store:
    client: Any
    database: str = "jobprov"

    def __post_init__(self) -> None:
        Target(self.database)  # rejects anything but a plain identifier: the name is spliced into SQL

    def _query(self, sql: str, parameters: dict[str, Any]) -> Any:
        """``{db}`` in the text is the database; values come only through ``parameters``."""
        try:
            return self.client.query(sql.replace("{db}", self.database), parameters=parameters)
        except Exception as exc:
            raise QueryError(f"query failed: {exc}") from exc

    def rows(self, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._query(sql, parameters).result_rows]

    def columns(self, sql: str, **parameters: Any) -> list[list[Any]]:
        """Like :meth:`rows`, column by column (no tuple per row: cheaper for long series)."""
        # Only the columns: asking the result for rows (or its row count) would build a tuple per row first.
        columns = self._query(sql, parameters).result_columns
        if not columns or not len(columns[0]):
            return []
        return [c if isinstance(c, list) else list(c) for c in columns]  # lists already: no copies


def to_plain(value: Any) -> Any:
    """Query results as JSON-able data: datetimes as ISO 8601 text, dataclasses as dicts."""
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def to_utc(value: datetime | None) -> datetime | None:
    """Times from the store come back naive (UTC); make them explicit."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(raw: str | None, what: str) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"{what}: {raw!r} is not an ISO 8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
