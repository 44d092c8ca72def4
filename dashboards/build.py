"""Grafana dashboards for jobprov, as code.

``python dashboards/build.py`` writes the dashboards (``dashboards/*.json`` and the Helm chart's copies in
``helm/jobprov/dashboards/``) and the Grafana provisioning files (``dashboards/provisioning/``);
``--check`` only reports files that differ from what this script generates (a test runs it).

Three dashboards:

- ``jobprov-regressions``: a metric per provenance bucket (ClickHouse) with the alerts the detector raised (the
  alerts table: the results ``jobprov query alerts`` and the API give, not a SQL copy of the rule), their triage
  states, jobprov annotations and the alerts as annotations.
- ``jobprov-jobs``: job statuses over time, failures, retries, anomalies, durations and resources (ClickHouse).
- ``jobprov-pipeline``: the workers' Prometheus metrics: events/s, dead letters, fold latency, sink
  backpressure, consumer lag, jobs held; plus the dead letters stored in ClickHouse.

Datasources are referenced by fixed uids (``jobprov-clickhouse``, ``jobprov-prometheus``), which the provisioning
file defines. Every SQL query names its tables ``${database}.<table>``: the hidden ``database`` constant is
``jobprov`` (change it when the processor's ``clickhouse_database`` differs).
"""

# ruff: noqa: S608 - the SQL here is dashboard text that Grafana sends to ClickHouse, never run by this script
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Self

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from jobprov.schemas.models import TRIAGE_STATES
from jobprov.stream_processors.alert_fold import UNTRIAGED

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIRS = (Path("dashboards"), Path("helm/jobprov/dashboards"))
PROVISIONING_DIR = Path("dashboards/provisioning")

CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
CLICKHOUSE_UID = "jobprov-clickhouse"
PROMETHEUS_TYPE = "prometheus"
PROMETHEUS_UID = "jobprov-prometheus"
CLICKHOUSE = model.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)
PROMETHEUS = model.DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)

TAGS = ["jobprov"]
DB = "${database}"

# The ClickHouse plugin's query formats (sqlutil.FormatQueryOption) and the query types its editor pairs them with.
FORMAT_TIME_SERIES = 0
FORMAT_TABLE = 1
_QUERY_TYPES = {FORMAT_TIME_SERIES: "timeseries", FORMAT_TABLE: "table"}
_CLICKHOUSE_QUERY_KEYS = {"refId", "datasource", "editorType", "queryType", "format", "rawSql", "hide"}


# --- the ClickHouse datasource's query model (the SDK ships no builder for this plugin) ------------------------


class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL query of the grafana-clickhouse-datasource plugin (its ``CHSqlQuery``)."""

    def __init__(self, raw_sql: str = "", fmt: int = FORMAT_TABLE, ref_id: str = "A", hide: bool | None = None) -> None:
        self.raw_sql = raw_sql
        self.format = fmt
        self.ref_id = ref_id
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": CLICKHOUSE,
            "editorType": "sql",
            "queryType": _QUERY_TYPES[self.format],
            "format": self.format,
            "rawSql": self.raw_sql,
        }
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Strict: unknown keys, another datasource or editor, or a query type that does not match the format
        raise ``ValueError`` (the SDK's unmarshalling would otherwise keep anything)."""
        unknown = set(data) - _CLICKHOUSE_QUERY_KEYS
        if unknown:
            raise ValueError(f"unknown ClickHouse query keys: {sorted(unknown)}")
        datasource = data.get("datasource") or {}
        if datasource != {"type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID}:
            raise ValueError(f"not the jobprov ClickHouse datasource: {datasource}")
        fmt = data.get("format")
        if data.get("editorType") != "sql" or fmt not in _QUERY_TYPES or data.get("queryType") != _QUERY_TYPES[fmt]:
            raise ValueError(f"bad editorType/format/queryType: {data}")
        raw_sql, ref_id, hide = data.get("rawSql"), data.get("refId"), data.get("hide")
        if not isinstance(raw_sql, str) or not raw_sql.strip() or not isinstance(ref_id, str) or not ref_id:
            raise ValueError(f"a ClickHouse query needs rawSql and refId: {data}")
        if hide is not None and not isinstance(hide, bool):
            raise ValueError(f"hide must be a boolean: {data}")
        return cls(raw_sql, fmt, ref_id, hide)


class ClickHouseQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw_sql: str, fmt: int = FORMAT_TABLE, ref_id: str = "A") -> None:
        self._internal = ClickHouseQuery(_sql(raw_sql), fmt, ref_id)

    def build(self) -> ClickHouseQuery:
        return self._internal


class ClickHouseAnnotationTarget(model.AnnotationTarget):
    """An annotation's query on the ClickHouse datasource: the plugin reads ``rawSql`` from the target."""

    def __init__(self, raw_sql: str) -> None:
        super().__init__()
        self.query = ClickHouseQuery(raw_sql, FORMAT_TABLE, "Anno")

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **self.query.to_json()}


class ClickHouseAnnotationTargetBuilder(cogbuilder.Builder[model.AnnotationTarget]):
    def __init__(self, raw_sql: str) -> None:
        self._internal = ClickHouseAnnotationTarget(_sql(raw_sql))

    def build(self) -> ClickHouseAnnotationTarget:
        return self._internal


def register_clickhouse_query() -> None:
    """Make the SDK's unmarshalling (``Dashboard.from_json``) use :class:`ClickHouseQuery` for this plugin."""
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(CLICKHOUSE_TYPE, ClickHouseQuery.from_json))


def _sql(text: str) -> str:
    """SQL as written in this file, without its indentation and surrounding blank lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line), default=0)
    return "\n".join(line[indent:] for line in lines)


def ch(raw_sql: str, fmt: int = FORMAT_TABLE, ref_id: str = "A") -> ClickHouseQueryBuilder:
    return ClickHouseQueryBuilder(raw_sql, fmt, ref_id)


def promql(expr: str, legend: str, ref_id: str = "A") -> prom.Dataquery:
    return prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).range().datasource(PROMETHEUS)


class _Ids:
    """Panel ids, unique within a dashboard."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


def _legend(placement: common.LegendPlacement = common.LegendPlacement.BOTTOM) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(placement)
        .show_legend(True)
    )


def _override(name: str, value: object) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val=name, value=value)


def _stat(ids: _Ids, title: str, description: str, query: cogbuilder.Builder[cogvariants.Dataquery]) -> stat.Panel:
    return (
        stat.Panel()
        .id(ids())
        .title(title)
        .description(description)
        .datasource(PROMETHEUS if isinstance(query, prom.Dataquery) else CLICKHOUSE)
        .with_target(query)
        .height(4)
        .span(6)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def _links() -> list[cogbuilder.Builder[model.DashboardLink]]:
    return [
        dash.DashboardLink("jobprov dashboards")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags(TAGS)
        .as_dropdown(True)
        .include_vars(False)
        .keep_time(True)
    ]


def _database() -> dash.ConstantVariable:
    return (
        dash.ConstantVariable("database")
        .label("ClickHouse database")
        .description("The processor's clickhouse_database")
        .value("jobprov")
    )


# --- 1. regressions per provenance bucket ------------------------------------------------------------------------

# A bucket's keys as one sorted "k=v, k=v" text (the same label for every point of a bucket).
_BUCKET_LABEL = (
    "arrayStringConcat(arraySort(arrayMap((k, v) -> concat(k, '=', v), mapKeys({m}), mapValues({m}))), ', ')"
)


def _bucket_label(column: str) -> str:
    return _BUCKET_LABEL.format(m=column)


# Jobs annotated KEY=VALUE (the `exclude` textbox) are left out, as with `jobprov query series --exclude-annotated`.
_EXCLUDED = (
    f"m.job_id NOT IN (SELECT target FROM {DB}.annotations FINAL WHERE target_type = 'job' "
    "AND concat(key_name, '=', value) = ${exclude:singlequote})"
)
# Only jobs whose provenance has prov_key in prov_value; "All" (custom all value '__all__') filters nothing.
_PROVENANCE_FILTER = (
    "('__all__' IN (${prov_value:singlequote}) OR {job} IN (SELECT job_id FROM "
    + DB
    + ".provenance FINAL WHERE values[${prov_key:singlequote}] IN (${prov_value:singlequote})))"
)


def _provenance_filter(job_column: str) -> str:
    return _PROVENANCE_FILTER.replace("{job}", job_column)


def _points_where(time_filter: bool = True) -> str:
    clauses = ["m.metric = ${metric:singlequote}", "m.bucket IN (${bucket:singlequote})", _EXCLUDED]
    clauses.append("$__timeFilter(m.time)" if time_filter else "m.time <= $__toTime")
    return " AND ".join(clauses)


# The detector's results, as the API gives them: the alerts table the fold writes from the alert events (the scan of
# query/alerts.py raises them with the detector of `jobprov query regressions`). No SQL copy of the rule.
_ALERTS_WHERE = (
    "a.metric = ${metric:singlequote} AND a.bucket IN (${bucket:singlequote}) AND a.state IN (${state:singlequote}) "
    "AND $__timeFilter(a.change_time)"
)


def alerts_sql(
    select: str, where: str = "", order_by: str = "ORDER BY a.change_time, a.alert_id", join: str = ""
) -> str:
    """Rows of the alerts table (one per alert, its latest triage) of the chosen metric, buckets, states and time
    range, and the provenance filter on the first bad job."""
    return f"""
        SELECT {select}
        FROM {DB}.alerts AS a FINAL{join}
        WHERE {_ALERTS_WHERE} AND {_provenance_filter("a.first_bad_job")}{where}
        {order_by}
    """


ALERT_SOURCE = (
    "Alerts: the changes of level `jobprov query regressions` finds, raised by the alert scan (`jobprov alerts "
    "scan`, and every alerts.scan_interval_s in `jobprov up`) and triaged by people (`jobprov alert ack|invalid|"
    "fixed|wontfix|improvement`); read from the alerts table, as `jobprov query alerts` and /api/v1/alerts give them."
)
_ALERT_STATES = (UNTRIAGED, *TRIAGE_STATES)


def _series_query() -> str:
    return f"""
        SELECT m.time AS time, {_bucket_label("m.bucket_keys")} AS bucket, m.value AS value
        FROM {DB}.metric_points AS m FINAL
        WHERE {_points_where()} AND {_provenance_filter("m.job_id")}
        ORDER BY time
    """


def _series_panel(ids: _Ids, regression_points: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(ids())
        .title("${metric} by provenance bucket")
        .description(
            "Every point of the metric, one line per comparability bucket (the bucket's keys and values), as "
            "`jobprov query series`. Red dots: the first bad point of each alert. " + ALERT_SOURCE
        )
        .datasource(CLICKHOUSE)
        .with_target(ch(_series_query(), FORMAT_TIME_SERIES, "A"))
        .with_target(ch(regression_points, FORMAT_TIME_SERIES, "B"))
        .height(12)
        .span(24)
        .display_name("${__field.labels.bucket}")
        .draw_style(common.GraphDrawStyle.LINE)
        .show_points(common.VisibilityMode.ALWAYS)
        .point_size(5)
        .span_nulls(True)
        .legend(_legend())
        .override_by_query(
            "B",
            [
                _override("displayName", "regression"),
                _override("custom.drawStyle", "points"),
                _override("custom.pointSize", 12),
                _override("color", {"mode": "fixed", "fixedColor": "red"}),
            ],
        )
    )


def regressions_dashboard() -> dash.Dashboard:
    ids = _Ids()
    # The first bad point of each alert, where it lies on its line.
    regression_points = alerts_sql(
        "a.change_time AS time, 'regression' AS series, p.value AS value",
        order_by="ORDER BY time",
        join=f" JOIN (SELECT event_id, value FROM {DB}.metric_points FINAL WHERE metric = ${{metric:singlequote}}) "
        "AS p ON p.event_id = a.first_bad_event",
    )
    regression_table = alerts_sql(
        f"a.change_time AS time, {_bucket_label('a.label')} AS bucket, a.alert_id AS alert_id, a.state AS state, "
        "a.direction AS direction, a.before AS before, a.before + a.size AS after, a.size AS size, "
        "a.relative_size AS relative_size, a.confidence AS confidence, a.last_good_job AS last_good_job, "
        "a.first_bad_job AS first_bad_job, arrayStringConcat(a.changes, '; ') AS changes, a.note AS note, "
        "a.raised_at AS raised_at"
    )
    onsets = alerts_sql(
        "a.change_time AS time, concat(a.direction, ' of ', a.metric, ': ', "
        f"{_bucket_label('a.label')}) AS title, "
        "concat(a.first_bad_job, ': ', toString(round(a.before, 6)), ' → ', toString(round(a.before + a.size, 6)), "
        "' (', a.state, ')', if(empty(a.changes), '', concat('; changed: ', arrayStringConcat(a.changes, '; ')))) "
        "AS text, concat('alert,', a.state) AS tags"
    )
    onset_count = alerts_sql("count() AS alerts", order_by="")
    # Job annotations are drawn at the job's point of this metric, other annotations (artifacts) when made.
    annotations = f"""
        SELECT time, title, text, tags
        FROM (
          SELECT if(p.job_id = '', a.time, p.time) AS time, concat(a.key_name, ' = ', a.value) AS title,
            concat(a.target_type, ' ', a.target, if(a.author IS NULL, '', concat(' by ', a.author)),
              ', annotated at ', toString(a.time)) AS text,
            concat('jobprov,', a.key_name) AS tags
          FROM {DB}.annotations AS a FINAL
          LEFT JOIN (
            SELECT job_id, min(time) AS time FROM {DB}.metric_points FINAL
            WHERE metric = ${{metric:singlequote}} GROUP BY job_id
          ) AS p ON p.job_id = a.target
          WHERE a.target_type != 'job' OR p.job_id != ''
        )
        WHERE $__timeFilter(time)
        ORDER BY time
    """
    baselines = f"""
        SELECT label AS bucket, points, length(recent) AS baseline_points,
          arrayReduce('median', recent) AS median,
          arrayReduce('median', arrayMap(x -> abs(x - median), recent)) AS mad,
          arrayAvg(recent) AS mean, arrayReduce('stddevSamp', recent) AS stdev,
          arrayMin(recent) AS min_value, arrayMax(recent) AS max_value, unit, last_time, id
        FROM (
          SELECT m.bucket AS id, {_bucket_label("any(m.bucket_keys)")} AS label, any(m.unit) AS unit,
            count() AS points, max(m.time) AS last_time,
            arraySlice(arrayReverseSort((v, t) -> t, groupArray(m.value), groupArray(m.time)), 1, 50) AS recent
          FROM {DB}.metric_points AS m FINAL
          WHERE {_points_where(time_filter=False)}
          GROUP BY m.bucket
        )
        ORDER BY bucket
    """
    in_range = f"FROM {DB}.metric_points AS m FINAL WHERE {_points_where()} AND {_provenance_filter('m.job_id')}"

    return (
        dash.Dashboard("jobprov: regressions by provenance bucket")
        .uid("jobprov-regressions")
        .description("A metric per comparability bucket, its baselines and the alerts the detector raised.")
        .tags(TAGS)
        .timezone("utc")
        .time("now-90d", "now")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .links(_links())
        .with_variable(_database())
        .with_variable(
            dash.QueryVariable("metric")
            .label("Metric")
            .datasource(CLICKHOUSE)
            .query(_sql(f"SELECT DISTINCT metric FROM {DB}.metric_points ORDER BY metric"))
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
        )
        .with_variable(
            dash.QueryVariable("bucket")
            .label("Bucket")
            .description("Comparability buckets of the metric (value: the bucket id; text: its keys)")
            .datasource(CLICKHOUSE)
            .query(
                _sql(f"""
                    SELECT bucket, {_bucket_label("any(bucket_keys)")} AS label
                    FROM {DB}.metric_points FINAL WHERE metric = ${{metric:singlequote}}
                    GROUP BY bucket ORDER BY label
                """)
            )
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .multi(True)
            .include_all(True)
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .with_variable(
            dash.QueryVariable("prov_key")
            .label("Provenance key")
            .description("Any recorded provenance key of the metric's jobs (dataset, software.numpy, git.commit, …)")
            .datasource(CLICKHOUSE)
            .query(
                _sql(f"""
                    SELECT DISTINCT arrayJoin(mapKeys(values)) AS key FROM {DB}.provenance FINAL
                    WHERE job_id IN (SELECT job_id FROM {DB}.metric_points WHERE metric = ${{metric:singlequote}})
                    ORDER BY key
                """)
            )
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        )
        .with_variable(
            dash.QueryVariable("prov_value")
            .label("Provenance value")
            .description("Only jobs whose provenance key has one of these values (All: no filter)")
            .datasource(CLICKHOUSE)
            .query(
                _sql(f"""
                    SELECT DISTINCT values[${{prov_key:singlequote}}] AS value FROM {DB}.provenance FINAL
                    WHERE mapContains(values, ${{prov_key:singlequote}})
                      AND job_id IN (SELECT job_id FROM {DB}.metric_points WHERE metric = ${{metric:singlequote}})
                    ORDER BY value
                """)
            )
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .multi(True)
            .include_all(True)
            .all_value("'__all__'")
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .with_variable(
            dash.TextBoxVariable("exclude")
            .label("Leave out jobs annotated")
            .description("KEY=VALUE, e.g. quality=bad; empty: leave out nothing")
            .default_value("")
        )
        .with_variable(
            dash.QueryVariable("state")
            .label("Alert state")
            .description("untriaged, or the state people gave the alert")
            .datasource(CLICKHOUSE)
            .query(_sql(f"SELECT arrayJoin({list(_ALERT_STATES)!r}) AS state"))
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .multi(True)
            .include_all(True)
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .annotation(
            dash.AnnotationQuery()
            .name("jobprov annotations")
            .datasource(CLICKHOUSE)
            .enable(True)
            .icon_color("blue")
            .target(ClickHouseAnnotationTargetBuilder(annotations))
        )
        .annotation(
            dash.AnnotationQuery()
            .name("Alerts")
            .datasource(CLICKHOUSE)
            .enable(True)
            .icon_color("red")
            .target(ClickHouseAnnotationTargetBuilder(onsets))
        )
        .with_row(dash.Row("${metric}").id(ids()))
        .with_panel(
            _stat(ids, "Points", "Points of the metric in the time range", ch(f"SELECT count() AS points {in_range}"))
        )
        .with_panel(
            _stat(
                ids,
                "Buckets",
                "Comparability buckets with points in the time range",
                ch(f"SELECT uniqExact(m.bucket) AS buckets {in_range}"),
            )
        )
        .with_panel(
            _stat(ids, "Alerts raised", "Alerts of the chosen states with a change in the range", ch(onset_count))
        )
        .with_panel(
            _stat(
                ids,
                "Jobs",
                "Jobs with points in the time range",
                ch(f"SELECT uniqExact(m.job_id) AS jobs {in_range}"),
            )
        )
        .with_panel(_series_panel(ids, regression_points))
        .with_panel(
            table.Panel()
            .id(ids())
            .title("Alerts")
            .description(
                ALERT_SOURCE + " `changes`: what changed between the last good and the first bad job; `state`: "
                "the latest triage (untriaged before any)."
            )
            .datasource(CLICKHOUSE)
            .with_target(ch(regression_table))
            .height(10)
            .span(24)
            .sort_by([common_builders.TableSortByFieldState().display_name("time").desc(True)])
        )
        .with_panel(
            table.Panel()
            .id(ids())
            .title("Bucket baselines")
            .description(
                "Per bucket: all its points, and the statistics of its last 50 points up to the end of the range, "
                "as `jobprov query bucket` (median, MAD, mean, sample standard deviation, min, max)."
            )
            .datasource(CLICKHOUSE)
            .with_target(ch(baselines))
            .height(8)
            .span(24)
        )
    )


# --- 2. jobs --------------------------------------------------------------------------------------------------

_JOB_FILTER = "ifNull(kind, 'unknown') IN (${kind:singlequote}) AND ifNull(host, 'unknown') IN (${host:singlequote})"
_JOBS_IN_RANGE = f"FROM {DB}.jobs FINAL WHERE $__timeFilter(last_event_at) AND {_JOB_FILTER}"
_UNFINISHED = "('submitted', 'queued', 'running', 'held', 'preempted', 'retried')"
_FAILED = "('failed', 'aborted', 'lost')"


def jobs_dashboard() -> dash.Dashboard:
    ids = _Ids()
    time_note = " Jobs are placed at their last event (the end, for finished jobs)."
    return (
        dash.Dashboard("jobprov: jobs")
        .uid("jobprov-jobs")
        .description("Job statuses, failures, retries, anomalies, durations and resource usage, by kind and host.")
        .tags(TAGS)
        .timezone("utc")
        .time("now-7d", "now")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .links(_links())
        .with_variable(_database())
        .with_variable(
            dash.QueryVariable("kind")
            .label("Kind")
            .datasource(CLICKHOUSE)
            .query(_sql(f"SELECT DISTINCT ifNull(kind, 'unknown') AS kind FROM {DB}.jobs FINAL ORDER BY kind"))
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .multi(True)
            .include_all(True)
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .with_variable(
            dash.QueryVariable("host")
            .label("Host")
            .datasource(CLICKHOUSE)
            .query(_sql(f"SELECT DISTINCT ifNull(host, 'unknown') AS host FROM {DB}.jobs FINAL ORDER BY host"))
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .multi(True)
            .include_all(True)
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .with_row(dash.Row("Status").id(ids()))
        .with_panel(
            _stat(
                ids, "Jobs", "Jobs with their last event in the range", ch(f"SELECT count() AS jobs {_JOBS_IN_RANGE}")
            )
        )
        .with_panel(
            _stat(
                ids,
                "Success rate",
                "Succeeded among the finished jobs (succeeded, failed, aborted, lost)",
                ch(
                    "SELECT countIf(status = 'succeeded') / greatest(countIf(status NOT IN "
                    f"{_UNFINISHED}), 1) AS success_rate {_JOBS_IN_RANGE}"
                ),
            ).unit("percentunit")
        )
        .with_panel(
            _stat(
                ids,
                "Failed, aborted or lost",
                "Jobs that ended badly",
                ch(f"SELECT countIf(status IN {_FAILED}) AS failed {_JOBS_IN_RANGE}"),
            )
        )
        .with_panel(
            _stat(
                ids,
                "With anomalies",
                "Jobs whose event history has transitions that should not happen (kept and flagged by the fold)",
                ch(f"SELECT countIf(notEmpty(anomalies)) AS anomalous {_JOBS_IN_RANGE}"),
            )
        )
        .with_panel(
            timeseries.Panel()
            .id(ids())
            .title("Jobs by status")
            .description("Jobs per interval by their current status." + time_note)
            .datasource(CLICKHOUSE)
            .with_target(
                ch(
                    f"""
                    SELECT $__timeInterval(last_event_at) AS time, status, count() AS jobs
                    {_JOBS_IN_RANGE}
                    GROUP BY time, status ORDER BY time
                    """,
                    FORMAT_TIME_SERIES,
                )
            )
            .display_name("${__field.labels.status}")
            .draw_style(common.GraphDrawStyle.BARS)
            .fill_opacity(80)
            .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
            .legend(_legend())
            .height(9)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .id(ids())
            .title("Failures and retries")
            .description("Jobs that failed, were aborted or lost, and jobs with more than one attempt." + time_note)
            .datasource(CLICKHOUSE)
            .with_target(
                ch(
                    f"""
                    SELECT $__timeInterval(last_event_at) AS time, countIf(status IN {_FAILED}) AS failed,
                      countIf(attempts > 1) AS retried
                    {_JOBS_IN_RANGE}
                    GROUP BY time ORDER BY time
                    """,
                    FORMAT_TIME_SERIES,
                )
            )
            .draw_style(common.GraphDrawStyle.BARS)
            .fill_opacity(80)
            .legend(_legend())
            .height(9)
            .span(12)
        )
        .with_row(dash.Row("Failures, retries and anomalies").id(ids()))
        .with_panel(
            table.Panel()
            .id(ids())
            .title("Failed, aborted and lost jobs")
            .description("The latest 200, with the exit code, signal and exception.")
            .datasource(CLICKHOUSE)
            .with_target(
                ch(f"""
                    SELECT last_event_at AS time, job_id, name, ifNull(kind, 'unknown') AS kind,
                      ifNull(host, 'unknown') AS host, status, attempts, exit_code, signal, exception_type,
                      exception_message, duration_ms / 1000 AS duration_s
                    {_JOBS_IN_RANGE} AND status IN {_FAILED}
                    ORDER BY time DESC LIMIT 200
                """)
            )
            .height(9)
            .span(24)
        )
        .with_panel(
            table.Panel()
            .id(ids())
            .title("Retried jobs")
            .description("Jobs with more than one attempt, and the status of each attempt.")
            .datasource(CLICKHOUSE)
            .with_target(
                ch(f"""
                    SELECT last_event_at AS time, job_id, name, ifNull(kind, 'unknown') AS kind,
                      ifNull(host, 'unknown') AS host, status, attempts,
                      arrayStringConcat(arrayMap((a, s) -> concat(a, ': ', s),
                        mapKeys(attempt_statuses), mapValues(attempt_statuses)), ', ') AS attempt_statuses
                    {_JOBS_IN_RANGE} AND attempts > 1
                    ORDER BY time DESC LIMIT 200
                """)
            )
            .height(8)
            .span(12)
        )
        .with_panel(
            table.Panel()
            .id(ids())
            .title("Jobs with anomalies")
            .description("Transitions that should not happen (a finish without a start, activity after the end, …).")
            .datasource(CLICKHOUSE)
            .with_target(
                ch(f"""
                    SELECT last_event_at AS time, job_id, name, status, arrayStringConcat(anomalies, '; ') AS anomalies
                    {_JOBS_IN_RANGE} AND notEmpty(anomalies)
                    ORDER BY time DESC LIMIT 200
                """)
            )
            .height(8)
            .span(12)
        )
        .with_row(dash.Row("Durations and resources").id(ids()))
        .with_panel(
            timeseries.Panel()
            .id(ids())
            .title("Duration by kind")
            .description("Median and 95th percentile of the duration of finished jobs, per kind." + time_note)
            .datasource(CLICKHOUSE)
            .with_target(
                ch(
                    f"""
                    SELECT $__timeInterval(last_event_at) AS time, ifNull(kind, 'unknown') AS kind,
                      quantile(0.5)(duration_ms) / 1000 AS p50, quantile(0.95)(duration_ms) / 1000 AS p95
                    {_JOBS_IN_RANGE} AND duration_ms IS NOT NULL
                    GROUP BY time, kind ORDER BY time
                    """,
                    FORMAT_TIME_SERIES,
                )
            )
            .unit("s")
            .legend(_legend())
            .height(9)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .id(ids())
            .title("Memory by host")
            .description(
                "From the jobs' resource samples: per host and interval, the sum over its jobs of each job's "
                "largest RSS sample in the interval."
            )
            .datasource(CLICKHOUSE)
            .with_target(
                ch(
                    f"""
                    SELECT time, host, sum(rss_bytes) AS rss_bytes
                    FROM (
                      SELECT $__timeInterval(r.time) AS time, ifNull(j.host, 'unknown') AS host, r.job_id AS job_id,
                        max(r.rss_bytes) AS rss_bytes
                      FROM {DB}.resources AS r FINAL
                      INNER JOIN (SELECT job_id, host, kind FROM {DB}.jobs FINAL) AS j ON j.job_id = r.job_id
                      WHERE $__timeFilter(r.time) AND ifNull(j.kind, 'unknown') IN (${{kind:singlequote}})
                        AND ifNull(j.host, 'unknown') IN (${{host:singlequote}})
                      GROUP BY time, host, job_id
                    )
                    GROUP BY time, host ORDER BY time
                    """,
                    FORMAT_TIME_SERIES,
                )
            )
            .unit("bytes")
            .display_name("${__field.labels.host}")
            .legend(_legend())
            .height(9)
            .span(12)
        )
        .with_panel(
            table.Panel()
            .id(ids())
            .title("Resource usage by kind and host")
            .description("Finished and running jobs in the range: durations, CPU time, peak memory and I/O.")
            .datasource(CLICKHOUSE)
            .with_target(
                ch(f"""
                    SELECT ifNull(kind, 'unknown') AS kind, ifNull(host, 'unknown') AS host, count() AS jobs,
                      quantile(0.5)(duration_ms) / 1000 AS duration_p50_s, max(duration_ms) / 1000 AS duration_max_s,
                      sum(cpu_user_s + cpu_system_s) AS cpu_s, avg(cpu_user_s + cpu_system_s) AS cpu_per_job_s,
                      max(peak_rss_bytes) AS peak_rss_bytes, sum(io_read_bytes) AS io_read_bytes,
                      sum(io_write_bytes) AS io_write_bytes
                    {_JOBS_IN_RANGE}
                    GROUP BY kind, host ORDER BY kind, host
                """)
            )
            .override_by_regexp(".*_bytes", [_override("unit", "bytes")])
            .override_by_regexp(".*_s", [_override("unit", "s")])
            .height(8)
            .span(24)
        )
    )


# --- 3. pipeline health ---------------------------------------------------------------------------------------

_SEL = '{job=~"$job", instance=~"$instance"}'


def _prom_panel(ids: _Ids, title: str, description: str, unit: str, *queries: prom.Dataquery) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(ids())
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .legend(_legend())
        .height(8)
        .span(12)
    )
    for query in queries:
        panel = panel.with_target(query)
    return panel


def pipeline_dashboard() -> dash.Dashboard:
    ids = _Ids()
    per_batch = f"jobprov_fold_batch_seconds_bucket{_SEL}"
    per_event = f"jobprov_fold_event_seconds_bucket{_SEL}"
    return (
        dash.Dashboard("jobprov: pipeline health")
        .uid("jobprov-pipeline")
        .description("The stream processor workers (`jobprov process`), from their Prometheus metrics.")
        .tags(TAGS)
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .links(_links())
        .with_variable(_database())
        .with_variable(
            dash.QueryVariable("job")
            .label("Scrape job")
            .datasource(PROMETHEUS)
            .query("label_values(jobprov_events_consumed_total, job)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .with_variable(
            dash.QueryVariable("instance")
            .label("Worker")
            .datasource(PROMETHEUS)
            .query('label_values(jobprov_events_consumed_total{job=~"$job"}, instance)')
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
        .with_row(dash.Row("Overview").id(ids()))
        .with_panel(
            _stat(ids, "Workers up", "Scrape targets answering", promql(f"sum(up{_SEL})", "up")).thresholds(
                dash.ThresholdsConfig()
                .mode(model.ThresholdsMode.ABSOLUTE)
                .steps([model.Threshold(value=None, color="red"), model.Threshold(value=1, color="green")])
            )
        )
        .with_panel(
            _stat(
                ids,
                "Events/s",
                "Events decoded per second, all workers",
                promql(f"sum(rate(jobprov_events_consumed_total{_SEL}[$__rate_interval]))", "events/s"),
            ).unit("ops")
        )
        .with_panel(
            _stat(
                ids,
                "Dead letters in range",
                "Messages sent to the dead-letter topic (and table) in the time range",
                promql(f"sum(increase(jobprov_dead_letters_total{_SEL}[$__range]))", "dead letters"),
            ).thresholds(
                dash.ThresholdsConfig()
                .mode(model.ThresholdsMode.ABSOLUTE)
                .steps([model.Threshold(value=None, color="green"), model.Threshold(value=1, color="red")])
            )
        )
        .with_panel(
            _stat(
                ids,
                "Consumer lag",
                "Messages behind the high watermark, all partitions (Tansu's watermark counts batches, so there it "
                "under-reports)",
                promql(f"sum(max by (partition) (jobprov_consumer_lag_events{_SEL}))", "lag"),
            )
        )
        .with_row(dash.Row("Throughput").id(ids()))
        .with_panel(
            _prom_panel(
                ids,
                "Events consumed by type",
                "Events decoded from the log per second (counted once their batch is durable in the sink)",
                "ops",
                promql(
                    f"sum by (event_type) (rate(jobprov_events_consumed_total{_SEL}[$__rate_interval]))",
                    "{{event_type}}",
                ),
            )
        )
        .with_panel(
            _prom_panel(
                ids,
                "Events folded and dead letters",
                "Events folded into job state, and messages dead-lettered by reason (undecodable, unknown_schema, "
                "fold_error), per second",
                "ops",
                promql(f"sum(rate(jobprov_events_folded_total{_SEL}[$__rate_interval]))", "folded", "A"),
                promql(
                    f"sum by (reason) (rate(jobprov_dead_letters_total{_SEL}[$__rate_interval]))",
                    "dead letters: {{reason}}",
                    "B",
                ),
            )
        )
        .with_row(dash.Row("Latency and backpressure").id(ids()))
        .with_panel(
            _prom_panel(
                ids,
                "Fold latency per batch",
                "Time to decode and fold one batch (histogram quantiles over all workers)",
                "s",
                promql(f"histogram_quantile(0.5, sum by (le) (rate({per_batch}[$__rate_interval])))", "p50", "A"),
                promql(f"histogram_quantile(0.95, sum by (le) (rate({per_batch}[$__rate_interval])))", "p95", "B"),
                promql(f"histogram_quantile(0.99, sum by (le) (rate({per_batch}[$__rate_interval])))", "p99", "C"),
            )
        )
        .with_panel(
            _prom_panel(
                ids,
                "Fold time per event",
                "Decode and fold time per event (each batch's time divided by its events)",
                "s",
                promql(f"histogram_quantile(0.5, sum by (le) (rate({per_event}[$__rate_interval])))", "p50", "A"),
                promql(f"histogram_quantile(0.99, sum by (le) (rate({per_event}[$__rate_interval])))", "p99", "B"),
            )
        )
        .with_panel(
            _prom_panel(
                ids,
                "Sink backpressure",
                "Times per second the sink pushed back (ClickHouse unreachable or overloaded): the worker holds "
                "the batch and its offsets and retries with backoff. Sustained: the pipeline is stalled.",
                "ops",
                promql(
                    f"sum by (instance) (rate(jobprov_sink_backpressure_total{_SEL}[$__rate_interval]))",
                    "{{instance}}",
                ),
            )
        )
        .with_panel(
            _prom_panel(
                ids,
                "Consumer lag by partition",
                "Messages behind the partition's high watermark, as last seen by the worker that consumes it "
                "(updated per batch; Tansu's watermark counts batches, so there it under-reports).",
                "short",
                promql(f"max by (partition) (jobprov_consumer_lag_events{_SEL})", "partition {{partition}}"),
            )
        )
        .with_row(dash.Row("State and dead letters").id(ids()))
        .with_panel(
            _prom_panel(
                ids,
                "Jobs held by status",
                "Jobs in the workers' memory, by status: running jobs, and finished ones until the watermark passes",
                "short",
                promql(f"sum by (status) (jobprov_jobs{_SEL})", "{{status}}"),
            )
        )
        .with_panel(
            _prom_panel(
                ids,
                "Jobs in memory, evicted and loaded back",
                "Jobs each worker holds (it should follow the running jobs, not the history); jobs per second that "
                "left memory once the watermark passed them, and that an event brought back from the store; jobs "
                "the last partition assignment loaded.",
                "short",
                promql(f"sum by (instance) (jobprov_worker_jobs_in_memory{_SEL})", "in memory {{instance}}", "A"),
                promql(f"sum(rate(jobprov_worker_jobs_evicted_total{_SEL}[$__rate_interval]))", "evicted/s", "B"),
                promql(f"sum(rate(jobprov_worker_state_loads_total{_SEL}[$__rate_interval]))", "loaded/s", "C"),
                promql(f"max by (instance) (jobprov_worker_resumed_jobs{_SEL})", "resumed {{instance}}", "D"),
            )
        )
        .with_panel(
            _prom_panel(
                ids,
                "State loads and resume",
                "p95 time to bring a batch's missing jobs back from the store; how long each worker's last "
                "partition assignment took to load its jobs (it follows the active jobs, not the log's length).",
                "s",
                promql(
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(jobprov_worker_state_load_seconds_bucket{_SEL}[$__rate_interval])))",
                    "load p95",
                    "A",
                ),
                promql(f"max by (instance) (jobprov_worker_resume_seconds{_SEL})", "resume {{instance}}", "B"),
            )
        )
        .with_panel(
            table.Panel()
            .id(ids())
            .title("Stored dead letters")
            .description("The latest dead letters in ClickHouse (written when the worker has a ClickHouse sink).")
            .datasource(CLICKHOUSE)
            .with_target(
                ch(f"""
                    SELECT received_at AS time, reason, source_topic, source_partition, source_offset, detail,
                      length(raw) AS size_bytes
                    FROM {DB}.dead_letters FINAL
                    WHERE $__timeFilter(received_at)
                    ORDER BY time DESC LIMIT 200
                """)
            )
            .height(8)
            .span(12)
        )
    )


# --- output -----------------------------------------------------------------------------------------------------


def dashboards() -> dict[str, model.Dashboard]:
    """File name → dashboard."""
    built = [regressions_dashboard().build(), jobs_dashboard().build(), pipeline_dashboard().build()]
    return {f"{d.uid}.json": d for d in built}


def render(dashboard: model.Dashboard) -> str:
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


DATASOURCES_YAML = f"""\
# Grafana datasource provisioning for the jobprov dashboards (put in /etc/grafana/provisioning/datasources/).
# The dashboards refer to these uids. The ClickHouse datasource needs the plugin
# (GF_INSTALL_PLUGINS=grafana-clickhouse-datasource); values in ${{...}} come from Grafana's environment.
apiVersion: 1
datasources:
  - name: jobprov ClickHouse
    type: {CLICKHOUSE_TYPE}
    uid: {CLICKHOUSE_UID}
    access: proxy
    editable: false
    jsonData:
      host: ${{JOBPROV_CLICKHOUSE_HOST}}
      port: 8123
      protocol: http
      secure: false
      username: ${{JOBPROV_CLICKHOUSE_USER}}
      defaultDatabase: jobprov
    secureJsonData:
      password: ${{JOBPROV_CLICKHOUSE_PASSWORD}}
  - name: jobprov Prometheus
    type: {PROMETHEUS_TYPE}
    uid: {PROMETHEUS_UID}
    access: proxy
    editable: false
    url: ${{JOBPROV_PROMETHEUS_URL}}
    jsonData:
      timeInterval: 15s
"""

DASHBOARDS_YAML = """\
# Grafana dashboard provisioning (put in /etc/grafana/provisioning/dashboards/): loads every dashboards/*.json
# of jobprov from the directory below into the folder "jobprov".
apiVersion: 1
providers:
  - name: jobprov
    orgId: 1
    folder: jobprov
    type: file
    disableDeletion: false
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: /var/lib/grafana/dashboards/jobprov
      foldersFromFilesStructure: false
"""


def generated_files() -> dict[Path, str]:
    """Every file this script writes, by path relative to the repository root."""
    files: dict[Path, str] = {}
    for name, dashboard in dashboards().items():
        text = render(dashboard)
        for directory in OUTPUT_DIRS:
            files[directory / name] = text
    files[PROVISIONING_DIR / "datasources" / "jobprov.yaml"] = DATASOURCES_YAML
    files[PROVISIONING_DIR / "dashboards" / "jobprov.yaml"] = DASHBOARDS_YAML
    return files


def stale_files(root: Path = ROOT) -> list[Path]:
    """Generated files that are missing or differ from what is committed."""
    stale = []
    for path, text in generated_files().items():
        target = root / path
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"{path} differs from what dashboards/build.py generates", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated_files().items():
        target = ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
