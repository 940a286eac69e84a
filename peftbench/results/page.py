"""``index.html``: the leaderboard as one self-contained page, made from the CSVs the leaderboard wrote.

* the suite tables, sortable (click a header) and filterable by family, backbone, suite and recipe (the paper
  recipe of ``configs/experiment/``, ``none`` for the shared defaults; the training schedule of the averaged runs
  is shown beside it), with each task's 95% interval, ``mean_rank``, parameters, PPT, the
  costs and links to every averaged run's ``result.json``;
* per suite table and backbone with published numbers, a heat map of ours minus the paper per task and mean;
* the accuracy-vs-parameters and accuracy-vs-peak-memory plots (Plotly), Pareto fronts drawn as lines, and
  hovering a point shows its method, setting, options, recipe and schedule; published points as crosses;
* the pairwise tests of ``significance.csv`` (over tasks) and the problems count.

Everything is inlined (Plotly's JavaScript bundle, the page's own script and style), so the page opens from
disk without a network. It reads only files in the leaderboard folder (and the published tables), so it can be
made again from tables alone (``peftbench-leaderboard --page-only``).
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from peftbench.atomic import write_text_atomic
from peftbench.errors import PeftbenchError
from peftbench.results.plots import FAMILY_COLORS, OTHER_COLOR, ZERO_PARAMS_M
from peftbench.results.tradeoffs import pareto_table

PAGE = "index.html"
TABLES = ("vtab1k", "fgvc", "embedded")  # leaderboard CSVs that are suite tables, in page order
SUITE_OF = {"vtab1k": "vtab", "fgvc": "fgvc", "embedded": "embedded"}
# (column, header, decimals) of the means and costs
SUMMARY_COLUMNS = (  # the first is the ranking column, shown before the group means
    ("mean_over_tasks", "mean", 2),
    ("mean_of_group_means", "mean of groups", 2),
    ("tasks_present", "tasks", 0),
    ("mean_rank", "mean rank", 2),
    ("params_M", "params (M)", 4),
    ("ppt", "PPT", 3),
    ("peak_train_mem_mb", "peak mem (MB)", 1),
    ("train_img_s", "train img/s", 0),
    ("infer_img_s", "infer img/s", 0),
)
GROUP_COLUMNS = ("natural", "specialized", "structured")
FILTERS = (("family", "family"), ("backbone", "backbone"), ("suite", "suite"), ("recipe", "recipe"))
NOT_RECORDED = "(not recorded)"


class PageUnavailableError(PeftbenchError):
    """The page was asked for but Plotly is not installed."""


def require_plotly() -> None:
    """Raise :class:`PageUnavailableError` with the fix when Plotly cannot be imported."""
    try:
        import plotly  # noqa: F401
    except ImportError as exc:
        raise PageUnavailableError(
            "the leaderboard page (index.html) needs plotly, which is not installed; install peftbench's "
            "dependencies again (pip install -e .) or pass --no-page"
        ) from exc


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _fmt(value: Any, decimals: int) -> str:
    f = _num(value)
    return "" if f is None else f"{f:,.{decimals}f}"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() and path.stat().st_size > 0 else pd.DataFrame()


# -- the tables -----------------------------------------------------------------------------------------------
def _run_links(runs: pd.DataFrame, superseded: set[str], suite: str, row: pd.Series, out: Path) -> list[tuple[str, str]]:
    """(label, href relative to the page) of the runs a table row averages."""
    if runs.empty:
        return []
    mask = (runs["suite"] == suite) & (runs["status"] == "success") & (runs["protocol"] == "final")
    for key in ("backbone", "method", "method_setting"):
        mask &= runs[key].astype(str) == str(row[key])
    links = []
    for _, r in runs[mask].sort_values(["task", "seed"]).iterrows():
        path = str(r["result_path"])
        if path in superseded:
            continue
        href = os.path.relpath(Path(path).resolve(), out.resolve())
        links.append((f"{r['task']} seed {r['seed']}", Path(href).as_posix()))
    return links


def _cell(value: Any, text: str, title: str = "", cls: str = "") -> str:
    v = _num(value)
    sort = "" if v is None and (value is None or (isinstance(value, float) and math.isnan(value))) else (
        repr(v) if v is not None else str(value))
    attrs = f' data-v="{html.escape(sort)}"'
    if title:
        attrs += f' title="{html.escape(title)}"'
    if cls:
        attrs += f' class="{cls}"'
    return f"<td{attrs}>{text}</td>"


def _task_cell(r: pd.Series, task: str) -> str:
    ci = _num(r.get(f"{task}_ci95"))
    n = int(_num(r.get(f"{task}_n")) or 0)
    extra = f" <small>±{ci:.2f}</small>" if ci is not None else ""
    title = f"{task}: n={n}" + (f", 95% CI ±{ci:.2f}" if ci is not None else "") + (
        f", std {_fmt(r.get(f'{task}_std'), 2)}" if n > 1 else "")
    return _cell(r.get(task), _fmt(r.get(task), 1) + extra, title=title)


def _table_html(name: str, table: pd.DataFrame, runs: pd.DataFrame, superseded: set[str], out: Path) -> str:
    """One suite table, best mean first: names, the means and costs, every task, the recipe and the runs."""
    suite = SUITE_OF[name]
    tasks = [c for c in table.columns if f"{c}_n" in table.columns]
    groups = [g for g in GROUP_COLUMNS if g in table.columns]
    summary = [(c, h, d) for c, h, d in SUMMARY_COLUMNS if c in table.columns]
    head = ["method", "backbone", "family", "setting", summary[0][1] if summary else "", *groups,
            *(h for _, h, _ in summary[1:]), *tasks, "recipe", "schedule", "cost device", "runs"]
    if not summary:
        head.remove("")
    parts = [f'<table class="board" id="table-{name}" data-suite="{suite}"><thead><tr>']
    parts += [f'<th data-col="{i}" title="sort">{html.escape(h)}</th>' for i, h in enumerate(head)]
    parts.append("</tr></thead><tbody>")
    order = table.sort_values("mean_over_tasks", ascending=False, na_position="last", kind="stable") \
        if "mean_over_tasks" in table else table
    for _, r in order.iterrows():
        recipe = _recipe(r)
        schedule = str(r["schedule"]) if "schedule" in r and pd.notna(r["schedule"]) else NOT_RECORDED
        attrs = {"family": r.get("family", ""), "backbone": r["backbone"], "suite": suite, "recipe": recipe}
        data = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in attrs.items())
        cells = [
            _cell(r["method"], f"<b>{html.escape(str(r['method']))}</b>"),
            _cell(r["backbone"], html.escape(str(r["backbone"]))),
            _cell(r.get("family", ""), html.escape(str(r.get("family", "")))),
            _cell(r["method_setting"], f"<code>{html.escape(str(r['method_setting']))}</code>",
                  title=str(r.get("method_options", ""))),
        ]
        numbers = [_cell(r.get(c), _fmt(r.get(c), d)) for c, _, d in summary]
        cells += numbers[:1] + [_cell(r.get(g), _fmt(r.get(g), 1)) for g in groups] + numbers[1:]
        cells += [_task_cell(r, task) for task in tasks]
        cells.append(_cell(recipe, html.escape(recipe), cls="recipe"))
        cells.append(_cell(schedule, html.escape(schedule), cls="recipe"))
        cells.append(_cell(r.get("cost_device", ""), html.escape(str(r.get("cost_device", "") or ""))))
        links = _run_links(runs, superseded, suite, r, out)
        listing = "".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for label, href in links)
        cells.append(_cell(len(links), f"<details><summary>{len(links)}</summary>{listing}</details>" if links else "0"))
        parts.append(f"<tr {data}>{''.join(cells)}</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _recipe(r: pd.Series) -> str:
    """The row's paper recipe (``configs/experiment/``), ``none`` for the shared defaults."""
    value = r.get("recipe")
    return "none" if value is None or pd.isna(value) or str(value) == "" else str(value)


# -- the figures ---------------------------------------------------------------------------------------------
def _hover(r: pd.Series) -> str:
    lines = [f"<b>{r['method']}</b> ({r.get('family', '')})", f"setting {r['method_setting']}"]
    options = r.get("method_options")
    if isinstance(options, str) and options not in ("", "{}"):
        lines.append("options " + html.escape(options)[:300])
    lines.append(f"recipe {_recipe(r)}")
    if "schedule" in r and pd.notna(r["schedule"]):
        lines.append(f"schedule {r['schedule']}")
    lines.append(f"mean {_fmt(r.get('mean_over_tasks'), 2) or _fmt(r.get('mean_over_present_tasks'), 2)} over "
                 f"{int(_num(r.get('tasks_present')) or 0)} task(s); params {_fmt(r.get('params_M'), 4)} M; "
                 f"PPT {_fmt(r.get('ppt'), 3)}; peak mem {_fmt(r.get('peak_train_mem_mb'), 1)} MB")
    return "<br>".join(lines)


def _scatter(name: str, table: pd.DataFrame, backbone: str, x_col: str, log_x: bool, pareto: pd.DataFrame,
             reference: pd.DataFrame) -> Any:
    """One accuracy-vs-cost figure: ours by family, the front as a line, published points as crosses."""
    import plotly.graph_objects as go

    ours = table[table["backbone"] == backbone].copy()
    ours["y"] = ours["mean_over_tasks"].where(ours["mean_over_tasks"].notna(), ours.get("mean_over_present_tasks"))
    ours = ours[ours["y"].notna() & ours[x_col].notna()] if x_col in ours else ours.iloc[0:0]
    fig = go.Figure()
    for family, part in ours.groupby("family", sort=True):
        x = part[x_col].astype(float)
        x = x.where(x > 0, ZERO_PARAMS_M) if log_x else x
        complete = part["mean_over_tasks"].notna()
        fig.add_trace(go.Scatter(
            x=x, y=part["y"], mode="markers+text", name=f"ours: {family}", text=part["method"],
            textposition="top center", textfont=dict(size=9),
            marker=dict(size=10, color=FAMILY_COLORS.get(family, OTHER_COLOR),
                        symbol=["circle" if c else "circle-open" for c in complete]),
            hovertext=[_hover(r) for _, r in part.iterrows()], hoverinfo="text"))
    front_col = {"params_M": "pareto_params", "peak_train_mem_mb": "pareto_memory"}.get(x_col)
    if front_col and not pareto.empty and front_col in pareto:
        front = pareto[(pareto["table"] == name) & (pareto["backbone"] == backbone) & (pareto[front_col] == True)]  # noqa: E712
        front = ours.merge(front[["method", "method_setting"]], on=["method", "method_setting"])
        if not front.empty:
            front = front.sort_values(x_col)
            x = front[x_col].astype(float)
            fig.add_trace(go.Scatter(x=x.where(x > 0, ZERO_PARAMS_M) if log_x else x, y=front["y"], mode="lines",
                                     name="Pareto front", line=dict(color="#888888", dash="dot"), hoverinfo="skip"))
    if x_col == "params_M" and not reference.empty:
        ref = reference[(reference["suite"] == SUITE_OF[name]) & (reference["backbone"] == backbone)]
        ref = ref[ref["mean_over_tasks"].notna() & ref["params_M"].notna()]
        if not ref.empty:
            fig.add_trace(go.Scatter(
                x=ref["params_M"].astype(float).where(ref["params_M"] > 0, ZERO_PARAMS_M), y=ref["mean_over_tasks"],
                mode="markers", name="paper", marker=dict(symbol="x", size=8, color="#777777"),
                hovertext=[f"<b>{r['display_name']}</b> (paper)<br>{r['source']}<br>mean {_fmt(r['mean_over_tasks'], 2)}"
                           for _, r in ref.iterrows()], hoverinfo="text"))
    label = {"params_M": "trainable parameters, head excluded (M, log; 0 at 0.001)",
             "peak_train_mem_mb": "peak training memory (MB)"}[x_col]
    fig.update_layout(title=f"{name} on {backbone}", xaxis_title=label, yaxis_title="mean top-1 over tasks (%)",
                      xaxis_type="log" if log_x else "linear", height=460, margin=dict(l=60, r=20, t=50, b=50),
                      template="plotly_white", legend=dict(font=dict(size=10)))
    return fig


def _heatmap(name: str, versus: pd.DataFrame, backbone: str) -> Any | None:
    """Ours minus the paper per task, group and mean, one row per (our setting, published row)."""
    import plotly.graph_objects as go

    part = versus[(versus["backbone"] == backbone) & (versus["reference_status"] == "matched")]
    part = part[part["metric"] != "ppt"]
    if part.empty or part["delta"].notna().sum() == 0:
        return None
    part = part.assign(row=part["method"] + " " + part["method_setting"].astype(str) + " vs " + part["reference"])
    metrics = list(dict.fromkeys(part["metric"]))
    grid = part.pivot_table(index="row", columns="metric", values="delta", aggfunc="first").reindex(columns=metrics)
    ours = part.pivot_table(index="row", columns="metric", values="ours", aggfunc="first").reindex(
        index=grid.index, columns=metrics)
    paper = part.pivot_table(index="row", columns="metric", values="paper", aggfunc="first").reindex(
        index=grid.index, columns=metrics)
    text = [[f"{m}<br>ours {_fmt(o, 2)}, paper {_fmt(p, 2)}" for m, o, p in zip(metrics, orow, prow, strict=True)]
            for orow, prow in zip(ours.values, paper.values, strict=True)]
    bound = max(1.0, float(grid.abs().max().max()))
    fig = go.Figure(go.Heatmap(z=grid.values, x=metrics, y=list(grid.index), colorscale="RdBu", zmid=0,
                               zmin=-bound, zmax=bound, text=text, hovertemplate="%{y}<br>%{text}<br>Δ %{z:.2f}<extra></extra>",
                               colorbar=dict(title="ours − paper")))
    fig.update_layout(title=f"{name} on {backbone}: ours − paper (top-1 points)", height=160 + 28 * len(grid),
                      margin=dict(l=260, r=20, t=50, b=90), template="plotly_white")
    return fig


# -- the page ------------------------------------------------------------------------------------------------
def _summary(out: Path, runs: pd.DataFrame, problems: pd.DataFrame) -> str:
    """The line under the heading: what the tables rest on and how to read and use them."""
    status = problems["status"].value_counts().to_dict() if not problems.empty else {}
    if (out / "runs.csv").is_file():
        n_runs = int((runs["status"] != "running").sum()) if not runs.empty and "status" in runs else 0
        counted = f"{n_runs} finished run JSON(s)" + (
            ": " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())) + " (problems.csv)" if status else "")
    else:
        counted = f"Tables of {out} (it holds no runs.csv: no run links or counts)"
    return (counted + ". Top-1 accuracy (%) after the last epoch, mean over seeds (± the 95% interval where there "
            "are two or more); click a header to sort, choose filters to hide rows; hover a point for its settings.")


def _significance_html(tests: pd.DataFrame) -> str:
    """The Wilcoxon tests over tasks of ``significance.csv``, folded, sortable (empty without any)."""
    over_tasks = tests[tests["over"] == "tasks"] if not tests.empty and "over" in tests else tests
    if over_tasks.empty:
        return ""
    cols = [c for c in ("table", "backbone", "method_a", "method_setting_a", "method_b", "method_setting_b", "n_a",
                        "mean_diff", "statistic", "p_value", "note") if c in over_tasks]

    def text(value: Any) -> str:
        return _fmt(value, 4) if _num(value) is not None else str(value) if pd.notna(value) else ""

    rows = "".join("<tr>" + "".join(_cell(r[c], html.escape(text(r[c]))) for c in cols) + "</tr>"
                   for _, r in over_tasks.iterrows())
    return ('<section><h2>Pairwise tests over tasks (significance.csv)</h2><details><summary>'
            f"{len(over_tasks)} pair(s): Wilcoxon signed-rank over the tasks both rows have</summary>"
            '<div class="scroll"><table class="board" id="table-significance"><thead><tr>'
            + "".join(f'<th data-col="{i}">{html.escape(c)}</th>' for i, c in enumerate(cols))
            + f"</tr></thead><tbody>{rows}</tbody></table></div></details></section>")


def write_page(out: str | Path, reference: pd.DataFrame | None = None, title: str = "peftbench leaderboard",
               page_out: str | Path | None = None) -> Path:
    """Write ``<out>/index.html`` from the leaderboard CSVs in ``out``.

    Args:
        out: a folder written by :func:`peftbench.results.leaderboard.build` (the suite tables, ``runs.csv``,
            ``*_vs_reference.csv``, ``significance.csv``, ``problems.csv``; what is missing is left out of the
            page). The Pareto fronts are computed from the suite tables as ``pareto.csv`` computes them.
        reference: published numbers (:func:`peftbench.results.reference.load_reference`), for the crosses.
        title: the page's heading.
        page_out: write the page into this folder instead (run links are made relative to it).

    Returns:
        The path of ``index.html``.
    """
    require_plotly()
    import plotly.io as pio

    out = Path(out)
    target = Path(page_out) if page_out is not None else out
    reference = reference if reference is not None else pd.DataFrame()
    runs, problems = _read(out / "runs.csv"), _read(out / "problems.csv")
    tests = _read(out / "significance.csv")
    superseded = set()
    if not problems.empty:
        for paths in problems.loc[problems["status"] == "superseded", "result_path"]:
            superseded.update(str(paths).split(";"))
    tables = {name: _read(out / f"{name}.csv") for name in TABLES}
    tables = {name: t for name, t in tables.items() if not t.empty}
    pareto = pareto_table({name: (SUITE_OF[name], t) for name, t in tables.items()})  # as pareto.csv has them
    figures: list[Any] = []  # Plotly's bundle is inlined once, with the first figure of the page

    def figure(fig: Any, cls: str) -> str:
        figures.append(fig)
        return f'<div class="{cls}">' + pio.to_html(fig, full_html=False, include_plotlyjs=len(figures) == 1,
                                                     config={"displaylogo": False, "responsive": True}) + "</div>"

    sections, options = [], {key: set() for key, _ in FILTERS}
    for name, table in tables.items():
        if "recipe" not in table:
            table["recipe"] = ""
        options["family"].update(table["family"].dropna().astype(str))
        options["backbone"].update(table["backbone"].astype(str))
        options["suite"].add(SUITE_OF[name])
        options["recipe"].update(_recipe(r) for _, r in table.iterrows())
        body = [f'<section class="suite" data-suite="{SUITE_OF[name]}"><h2>{name}</h2>',
                f'<p class="count" id="count-{name}"></p><div class="scroll">',
                _table_html(name, table, runs, superseded, target), "</div>"]
        versus = _read(out / f"{name}_vs_reference.csv")
        for backbone in sorted(set(table["backbone"].astype(str))):
            if not versus.empty and (heat := _heatmap(name, versus, backbone)) is not None:
                body.append(figure(heat, "plot wide"))
            for x_col, log_x in (("params_M", True), ("peak_train_mem_mb", False)):
                if x_col in table and table.loc[table["backbone"] == backbone, x_col].notna().any():
                    body.append(figure(_scatter(name, table, backbone, x_col, log_x, pareto, reference), "plot"))
        body.append("</section>")
        sections.append("".join(body))
    filters = "".join(
        f'<label>{label} <select id="filter-{key}" data-key="{key}"><option value="">all</option>'
        + "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in sorted(options[key]))
        + "</select></label>" for key, label in FILTERS)
    page = _TEMPLATE.format(
        title=html.escape(title), summary=html.escape(_summary(out, runs, problems)), filters=filters,
        sections="".join(sections) or "<p>No finished final-protocol run: the suite tables are empty.</p>",
        significance=_significance_html(tests), style=_STYLE, script=_SCRIPT,
    )
    path = target / PAGE
    write_text_atomic(path, page)
    path.chmod(0o644)  # a page to be read by others (the atomic writer's temp file is private)
    return path


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em 2em;color:#222}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.2em 0 .3em}
.filters{position:sticky;top:0;background:#fafafa;border:1px solid #ddd;padding:.5em .8em;z-index:5}
.filters label{margin-right:1.2em;font-size:.9em}select,input{font-size:.9em}
.scroll{overflow:auto;max-width:100%;max-height:34em}
table.board{border-collapse:collapse;font-size:.8em;white-space:nowrap}
table.board th{background:#f0f0f0;cursor:pointer;position:sticky;top:0;padding:.3em .5em;border-bottom:2px solid #bbb}
table.board th[aria-sort=ascending]::after{content:" \\25B2"}table.board th[aria-sort=descending]::after{content:" \\25BC"}
table.board td{padding:.25em .5em;border-bottom:1px solid #eee;text-align:right}
table.board td:nth-child(-n+4),table.board td.recipe{text-align:left}table.board tr:hover td{background:#f5f9ff}
td small{color:#888}td.recipe{max-width:22em;overflow:hidden;text-overflow:ellipsis}
details a{display:block;font-size:.9em}.count{color:#666;font-size:.85em;margin:.2em 0}
.plot{display:inline-block;vertical-align:top;width:49%;min-width:420px}.plot.wide{display:block;width:100%}
"""

# Sorting and filtering of the tables (every cell carries its sort key in data-v).
_SCRIPT = """
(function(){
  function key(v){ if(v===undefined||v===''){return null;} var f=Number(v); return isNaN(f)?v.toLowerCase():f; }
  function compare(a,b){ if(a===null&&b===null){return 0;} if(a===null){return 1;} if(b===null){return -1;}
    if(typeof a===typeof b){return a<b?-1:a>b?1:0;} return typeof a==='number'?-1:1; }
  document.querySelectorAll('table.board').forEach(function(table){
    table.querySelectorAll('th[data-col]').forEach(function(th){
      th.addEventListener('click', function(){
        var col=parseInt(th.dataset.col,10), asc=th.getAttribute('aria-sort')!=='ascending';
        table.querySelectorAll('th').forEach(function(o){o.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort', asc?'ascending':'descending');
        var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(r1,r2){
          var a=key(r1.cells[col].dataset.v), b=key(r2.cells[col].dataset.v);
          if(a===null||b===null){return compare(a,b);} return asc?compare(a,b):compare(b,a); });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var selects=document.querySelectorAll('.filters select'), search=document.getElementById('filter-method');
  function apply(){
    document.querySelectorAll('section.suite').forEach(function(section){
      var shown=0, rows=section.querySelectorAll('table.board tbody tr');
      rows.forEach(function(row){
        var ok=true;
        selects.forEach(function(s){ if(s.value!==''&&row.dataset[s.dataset.key]!==s.value){ok=false;} });
        if(search.value&&row.cells[0].textContent.toLowerCase().indexOf(search.value.toLowerCase())<0){ok=false;}
        row.style.display=ok?'':'none'; if(ok){shown+=1;}
      });
      var suiteFilter=document.getElementById('filter-suite').value;
      section.style.display=(suiteFilter===''||section.dataset.suite===suiteFilter)?'':'none';
      var count=section.querySelector('.count'); if(count){count.textContent=shown+' of '+rows.length+' rows shown';}
    });
  }
  selects.forEach(function(s){s.addEventListener('change',apply);}); search.addEventListener('input',apply);
  apply();
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body><h1>{title}</h1><p>{summary}</p>
<div class="filters">{filters}<label>method <input id="filter-method" type="search" placeholder="name"></label></div>
{sections}{significance}
<script>{script}</script>
</body></html>
"""
