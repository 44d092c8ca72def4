"""Regression plots: a metric's series, one line per provenance bucket, regressions ringed in red with what
changed, as a PNG (matplotlib, ``pip install 'jobprov[plots]'``) or a standalone HTML page.

Both read the documents of :mod:`jobprov.query.backend` (series lines and regressions), so they plot exactly
what the CLI prints and the API serves. The HTML page draws with the web page's own script, inlined: it opens
from a file, offline, and shows what changed on hover.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from jobprov.errors import JobprovError
from jobprov.query.series import describe_changes

# The web page's palette: no red in it, red marks regressions.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
REGRESSION = "#d62728"


def _label(label: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in label.items() if v) or "(no keys)"


def _changes(changes: Sequence[dict[str, Any]]) -> str:
    return describe_changes(changes) or "no provenance change"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"  # None: a NaN or infinity stored, as the page says it


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def ringed(regressions: Sequence[dict[str, Any]]) -> str:
    """What the rings mean, counted as the regressions table counts: a regression is where a run of outliers
    starts (its onset, the larger ring); every point of the run is ringed."""
    onsets = sum(1 for r in regressions if r.get("onset"))
    return f"{_count(onsets, 'regression')}, {_count(len(regressions), 'point')} outside the baseline ringed"


def series_png(metric: str, lines: Sequence[dict[str, Any]], regressions: Sequence[dict[str, Any]], path: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError as exc:
        raise JobprovError("PNG plots need matplotlib: pip install 'jobprov[plots]'") from exc
    if not lines:
        raise JobprovError(f"no points of {metric!r} to plot")
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=100)
    try:
        for i, line in enumerate(lines):
            times: Any = np.array(line["times_ms"], dtype="datetime64[ms]")  # matplotlib plots datetime64 as dates
            values: Any = np.array(line["values"], dtype=float)  # null (a NaN or infinity stored): a gap
            ax.plot(times, values, marker="o", markersize=3.5, linewidth=1.8, color=PALETTE[i % len(PALETTE)],
                    label=f"{_label(line['label'])} ({len(values)})")  # fmt: skip
        said: set[str] = set()
        for r in regressions:
            if r["point"]["value"] is None:
                continue  # no point drawn there, so no ring either
            when: Any = datetime.fromisoformat(r["point"]["time"])
            ax.scatter([when], [r["point"]["value"]], s=160 if r.get("onset") else 70, facecolors="none",
                       edgecolors=REGRESSION, linewidths=2.5, zorder=5)  # fmt: skip
            text = _changes(r["changes"])
            if r.get("onset") and text not in said:  # one label per change, not one per bucket it shifted
                said.add(text)
                ax.annotate(text, (when, r["point"]["value"]), xytext=(-120, 40), textcoords="offset points",
                            fontsize=8, color=REGRESSION, arrowprops={"arrowstyle": "->", "color": REGRESSION},
                            bbox={"boxstyle": "round", "fc": "white", "ec": REGRESSION})  # fmt: skip
        unit = lines[0].get("unit")
        ax.set_title(f"{metric} by provenance bucket" + (f": {ringed(regressions)}" if regressions else ""))
        ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
        ax.grid(True, color="#eef0f4")
        ax.legend(fontsize=8, loc="best")
        fig.autofmt_xdate()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def series_html(
    metric: str, lines: Sequence[dict[str, Any]], regressions: Sequence[dict[str, Any]], path: Path
) -> Path:
    from jobprov.query.api import web_asset

    # allow_nan=False: the documents carry null for a non-finite value; a NaN here would break the page's JSON.
    data = json.dumps({"metric": metric, "lines": list(lines), "regressions": list(regressions)}, allow_nan=False)
    data = data.replace("</", "<\\/")  # never close the script element early, whatever the values say
    rows = "".join(
        f"<tr><td>{html.escape(r['point']['time'][:16])}</td><td>{html.escape(_label(r['label']))}</td>"
        f"<td>{_number(r['point']['value'])}</td><td>{html.escape(_changes(r['changes']))}</td></tr>"
        for r in regressions
        if r.get("onset")
    )
    summary = html.escape(f": {ringed(regressions)}") if regressions else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(metric)}: jobprov regression report</title>
<style>{web_asset("style.css")}</style>
<script>{web_asset("chart.js")}</script></head>
<body><header><h1>jobprov</h1><span>{html.escape(metric)} by provenance bucket{summary}</span></header>
<main><div id="chart" class="chart"></div><div id="explain"></div>
<h2>Regressions</h2><table><tr><th>when</th><th>line</th><th>value</th><th>what changed</th></tr>
{rows or '<tr><td colspan="4" class="muted">no regressions</td></tr>'}</table></main>
<script>
const data = {data};
jobprovChart.renderSeries(document.getElementById("chart"),
  {{ ...data, explain: document.getElementById("explain"), jobLinks: false }});
</script></body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
