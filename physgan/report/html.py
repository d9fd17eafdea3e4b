"""The HTML report of an evaluation: ``metrics.json``, PNG figures and a self-contained ``index.html``.

Written into a temporary directory beside the target and renamed into place when complete
(:func:`physgan.io.atomic.atomic_directory`).
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
from pathlib import Path

from physgan.evaluation.result import (
    _CLOSENESS_ORDER,
    MAX_MARGINAL_FEATURES,
    N_KEY_FIGURES,
    VERDICT_GROUPS,
    Evaluation,
    MetricEntry,
    _fold_order,
    _row,
    _worst_text,
    detail_group,
)
from physgan.io.atomic import atomic_directory
from physgan.report.figures import domain_plots, marginal_figures, worst_features

__all__ = ["write_report", "report_html", "summary_table_html"]


def write_report(ev: Evaluation, report_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``metrics.json``, PNG figures and a self-contained ``index.html`` into ``report_dir``; returns its path.

    The directory appears complete or not at all; an existing one is replaced only with ``overwrite``.
    """
    with atomic_directory(report_dir, overwrite, what="report") as tmp:
        (tmp / "metrics.json").write_text(json.dumps(ev.to_dict(), indent=2, ensure_ascii=False))
        generic = []
        for i, fig in enumerate(marginal_figures(worst_features(ev), ev._feat_fake)):
            p = tmp / f"marginals_{i + 1}.png"
            fig.savefig(p, dpi=90)
            generic.append((f"Marginal distributions ({i + 1})", p))
        domain_figs = []
        if ev._domain_obj is not None and ev._domain_obj.plots is not None and ev._real is not None:
            ddir = tmp / "domain"
            for title, p in domain_plots(ev, ddir):
                if p.parent.resolve() != ddir.resolve():
                    dest = ddir / p.name
                    shutil.copyfile(p, dest)
                    p = dest
                domain_figs.append((title, p))
        if ev.training is not None:
            from physgan.report.training import training_figure

            p = tmp / "training.png"
            training_figure(ev.training).savefig(p, dpi=90)
            generic.insert(0, ("Training curves", p))
        (tmp / "index.html").write_text(report_html(ev, generic, domain_figs), encoding="utf-8")
    return Path(report_dir)


def report_html(ev: Evaluation, generic: list[tuple[str, Path]], domain_figs: list[tuple[str, Path]]) -> str:
    """The ``index.html`` text: verdict, key figures, headline metrics, all metrics folded, figures, settings."""
    esc = html.escape
    info = ev.info
    n = info["n"]
    meta = [
        ("domain", ev.domain),
        ("real", f"{info['inputs']['real']} ({n['real']} samples)"),
        ("generated", f"{info['inputs']['fake']} ({n['fake']} samples)"),
        ("training set", f"{info['inputs']['train']} ({n['train']} samples)" if n["train"] else "not given"),
        ("noise floor from", info["floor_source"]),
        ("bootstrap rounds / seed / device", f"{info['n_boot']} / {info['seed']} / {info['device']}"),
        ("FPD/KPD features", f"{info.get('fpd_kpd_dimension', '?')} dimensions; left out as near-constant: "
         + (", ".join(info.get("fpd_kpd_features_dropped") or []) or "none")),
        ("classifiers", (f"at most {info['classifier_max_samples']} random samples per class"
                         if info.get("classifier_max_samples") else "all samples")
         + " (60 % train, 20 % calibration, 20 % test)"),
        ("PRDC space", prdc_space_text(info.get("prdc_space"))),
        ("memorisation search", memorisation_text(info.get("memorisation_search"))),
        ("time per stage [s]", ", ".join(f"{k} {v:.1f}" for k, v in info.get("timings_s", {}).items())),
    ]

    def img(title: str, path: Path) -> str:
        data = base64.b64encode(path.read_bytes()).decode()
        src = f"data:image/png;base64,{data}"
        return f'<figure><img alt="{esc(title)}" src="{src}"><figcaption>{esc(title)}</figcaption></figure>'

    key_figs = domain_figs[:N_KEY_FIGURES] if domain_figs else [g for g in generic if g[0] != "Training curves"][:N_KEY_FIGURES]
    rest_domain = [f for f in domain_figs if f not in key_figs]
    rest_generic = [g for g in generic if g not in key_figs]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>physgan evaluation: {esc(ev.domain)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
        ".fail,.far{background:#fbb}.pass,.indistinguishable{background:#cfc}.above,.within{background:#fe9}"
        "img{max-width:100%}.keyfigs{display:grid;grid-template-columns:1fr 1fr;gap:8px}"
        "details{margin:4px 0}summary{cursor:pointer}</style></head><body>",
        f"<h1>physgan evaluation ({esc(ev.domain)})</h1>",
        f"<p>{n['real']} real vs {n['fake']} generated samples; noise floor = the same metric between two real sets "
        f"({esc(info['floor_source'])}).</p>",
    ]
    if ev.thresholds:
        fails = ev.failures()
        word, cls_ = ("FAIL", "fail") if fails else ("PASS", "pass")
        parts.append(f"<p id='thresholds' class='{cls_}'><b>{word}</b> ({len(ev.thresholds)} --fail-on rule(s))"
                     + (": " + esc("; ".join(fails)) if fails else "") + "</p>")
    parts += ["<h2 id='verdict'>Verdict: distance from the noise floor</h2>", verdict_table_html(ev)]
    if key_figs:
        parts.append("<h2>Key figures</h2><div class='keyfigs'>" + "".join(img(t, p) for t, p in key_figs) + "</div>")
    parts += [
        "<h2>Headline metrics</h2>",
        summary_table_html(ev.summary()),
        "<h2>All metrics, folded per group</h2>",
        details_html(ev),
        "<p>Full numbers: <a href='metrics.json'>metrics.json</a>.</p>",
    ]
    if ev.training is not None:
        parts.append(f"<h2>Training ({esc(ev.training['run'])})</h2>")
        if ev.training.get("summary"):
            parts.append(f"<pre>{esc(ev.training['summary'])}</pre>")
        parts += [img(t, p) for t, p in rest_generic if t == "Training curves"]
        rest_generic = [(t, p) for t, p in rest_generic if t != "Training curves"]
    if rest_domain:
        parts.append(f"<h2>More figures ({esc(ev.domain)})</h2>")
        parts += [f"<details><summary>{esc(t)}</summary>{img(t, p)}</details>" for t, p in rest_domain]
    if rest_generic:
        parts.append(
            f"<h2>Marginal distributions of the high-level features (at most {MAX_MARGINAL_FEATURES}: "
            "those furthest from the floor in W1)</h2>"
        )
        parts += [f"<details><summary>{esc(t)}</summary>{img(t, p)}</details>" for t, p in rest_generic]
    parts += [
        "<h2>Inputs and settings</h2>",
        "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in meta) + "</table>",
        "</body></html>",
    ]
    return "\n".join(parts)


def verdict_table_html(ev: Evaluation) -> str:
    esc = html.escape
    rows = []
    for g in ev.group_verdicts():
        c = g["closeness"]
        counts = ", ".join(f"{v} {k}" for k, v in sorted(g["counts"].items(), key=lambda kv: _CLOSENESS_ORDER[kv[0]]))
        worst = "<br>".join(esc(_worst_text(*w)) for w in g["worst"]) or "&mdash;"
        rows.append(f"<tr class='{c.split()[0]}'><td>{esc(g['group'])}</td><td><b>{esc(c)}</b></td>"
                    f"<td>{esc(counts)} (group verdict counts metrics beyond {g['z']:.1f}σ)</td><td>{worst}</td></tr>")
    head = "<tr><th>group</th><th>verdict</th><th>metrics</th><th>worst (value, floor, σ from floor)</th></tr>"
    return f"<table class='verdict'>{head}{''.join(rows)}</table>"


def details_html(ev: Evaluation) -> str:
    """Every metric, in <details> blocks per display group and, inside, per layer / energy bin."""
    esc = html.escape
    out = []
    for title, pred in VERDICT_GROUPS:
        ms = [m for m in ev.metrics.values() if pred(m.name)]
        if not ms:
            continue
        folds: dict[str, list[MetricEntry]] = {}
        for m in ms:
            folds.setdefault(detail_group(m.name, ev.domain), []).append(m)
        inner = []
        for key in sorted(folds, key=_fold_order):
            sub = folds[key]
            worst = max(sub, key=lambda m: _CLOSENESS_ORDER[m.closeness]).closeness
            inner.append(f"<details><summary>{esc(key)}: {len(sub)} metrics, worst {esc(worst)}</summary>"
                         f"{summary_table_html([_row(m) for m in sub])}</details>")
        body = "".join(inner) if len(folds) > 1 else summary_table_html([_row(m) for m in ms])
        out.append(f"<details class='group'><summary><b>{esc(title)}</b> ({len(ms)} metrics)</summary>{body}</details>")
    return "".join(out)


def summary_table_html(rows: list[dict[str, str]]) -> str:
    """Rows ``{metric, value, floor, verdict}`` as an HTML table, coloured by verdict."""

    def cls(verdict: str) -> str:
        if verdict.startswith("FAIL"):
            return " class='fail'"
        if verdict.startswith(("pass", "at floor")):
            return " class='pass'"
        if verdict.startswith(("above", "below", "differs")):
            return " class='above'"
        return ""

    head = "<tr><th>metric</th><th>value ± error</th><th>noise floor</th><th>verdict</th></tr>"
    body = "".join(
        f"<tr{cls(r['verdict'])}><td>{html.escape(r['metric'])}</td><td>{html.escape(r['value'])}</td>"
        f"<td>{html.escape(r['floor'])}</td><td>{html.escape(r['verdict'])}</td></tr>"
        for r in rows
    )
    return f"<table class='summary'>{head}{body}</table>"


def prdc_space_text(space: dict | None) -> str:
    """One line saying where PRDC was computed and on how many samples."""
    if not space:
        return "n/a"
    return (f"{space['n_real']} real and {space['n_fake']} generated samples (random subsets; errors by half-sampling "
            f"of these), {space['dim']} leading principal components of the standardised features "
            f"({100 * space['variance_kept']:.0f} % of their variance)")


def memorisation_text(search: dict | None) -> str:
    """One line saying how the nearest training samples were searched."""
    if not search:
        return "not run (no training set given)"
    text = f"{int(search['n_train'])} training samples"
    if "max_queries" in search:
        text += f", at most {int(search['max_queries'])} random samples per compared set"
    if "dim" in search:
        text += f", {int(search['dim'])} dimensions"
    if "variance_kept" in search:
        text += f" ({100 * search['variance_kept']:.0f} % of the standardised variance)"
    return text
