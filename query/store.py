"""A handle on the tables: a clickhouse-connect client, the database name, and the limits every query carries.

Every query runs with the engine settings ``max_execution_time`` (``max_execution_time`` here, lowered to what is
left of the current request's :class:`~jobprov.query.limits.Budget`) and ``max_result_rows``: the engine stops a
query past either, and the error says which limit and how to narrow the question. A budget that was cancelled
(its client left, or it was answered 503 already) stops the computation at its next query.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobprov.errors import QueryError, QueryTimeout
from jobprov.query.limits import current_budget
from jobprov.sinks.clickhouse.ddl import Target

# The engine's error codes for the limits below (ClickHouse ErrorCodes.cpp).
_TIMEOUT_EXCEEDED = 159
_TOO_MANY_ROWS_OR_BYTES = 396


@dataclass
class Store:
    client: Any
    database: str = "jobprov"
    max_execution_time: float = 60.0
    """Seconds any one query may run (engine setting ``max_execution_time``)."""
    max_result_rows: int = 5_000_000
    """Rows any one query (or subquery) may answer (engine setting ``max_result_rows``); 0: no limit."""

    def __post_init__(self) -> None:
        Target(self.database)  # rejects anything but a plain identifier: the name is spliced into SQL
        if not self.max_execution_time > 0:
            raise QueryError("max_execution_time: must be > 0")
        if self.max_result_rows < 0:
            raise QueryError("max_result_rows: must be >= 0")

    def _settings(self) -> dict[str, Any]:
        seconds = self.max_execution_time
        budget = current_budget()
        if budget is not None:
            budget.check()  # a cancelled or expired request runs no further query
            seconds = min(seconds, budget.remaining())
        # The engine takes fractional seconds; never 0, which would mean "no limit".
        return {"max_execution_time": max(round(seconds, 3), 0.001), "max_result_rows": self.max_result_rows}

    def _query(self, sql: str, parameters: dict[str, Any]) -> Any:
        """``{db}`` in the text is the database; values come only through ``parameters``."""
        settings = self._settings()
        try:
            return self.client.query(sql.replace("{db}", self.database), parameters=parameters, settings=settings)
        except Exception as exc:
            code = getattr(exc, "code", None) or _code_in(str(exc))
            if code == _TIMEOUT_EXCEEDED:
                raise QueryTimeout(
                    f"a query ran past {settings['max_execution_time']:g} s and was stopped "
                    "(api.query_timeout_s): narrow the question"
                ) from exc
            if code == _TOO_MANY_ROWS_OR_BYTES:
                raise QueryError(
                    f"the answer has more than {self.max_result_rows} rows (api.max_result_rows): narrow the "
                    "question (a time window, a bucket, filters)"
                ) from exc
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
    """Query results as JSON-able data: datetimes as ISO 8601 text, dataclasses as dicts, a NaN or infinite
    number as None (JSON null: JSON has no such numbers; older stores may hold them, emitters now refuse them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
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


def _code_in(message: str) -> int | None:
    """The engine's error code in an error's text (``Code: 159. DB::Exception: ...``)."""
    head, sep, _ = message.partition("Code: ")
    if not sep:
        return None
    digits = ""
    for char in message[len(head) + len(sep) :]:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None
