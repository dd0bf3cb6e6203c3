"""Outputs of `busforge downstream`: metrics.json (flat DVC keys + the nested record), table.md
(the Table 3 layout) and a self-contained report.html with the table and metric-vs-synthetic-share plots."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

from busforge.evaluate.report import _png_data_uri, write_metrics

TABLE = "table.md"
REPORT = "report.html"
TASK_TITLE = {"seg": "segmentation Dice", "cls": "classification AUC"}


def _num(value: Any, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and not math.isfinite(value))
        else f"{value:.{digits}f}"
    )


def _columns(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    tasks = metrics["protocol"]["tasks"]
    tests = list(metrics["protocol"]["test_sets"])
    return [(task, test) for task in tasks for test in tests]


def cell_text(entry: dict[str, Any], seeds: int) -> str:
    text = f"{_num(entry['mean'])} ± {_num(entry['sd'])} [{_num(entry['ci_low'])}, {_num(entry['ci_high'])}]"
    if seeds == 1:
        text = f"{_num(entry['mean'])} [{_num(entry['ci_low'])}, {_num(entry['ci_high'])}]"
    vs = entry.get("vs_baseline")
    if vs:
        text += f"; Δ {vs['diff']:+.3f}, p {_num(vs['p'], 3)}"
    return text


def table_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    seeds = metrics["protocol"]["seeds"]
    header = ["train set", "real:synthetic", "augment", "synthetic share", "wall s"] + [
        f"{task} {test}" for task, test in _columns(metrics)
    ]
    rows = []
    for name, arm in metrics["arms"].items():
        share = next(iter(arm["synthetic_share"].values()))
        row = [name, arm["ratio"], arm["augment"], f"{share:.2f}", f"{arm['wall_s']:.0f}"]
        row += [cell_text(arm["results"][task][test], seeds) for task, test in _columns(metrics)]
        rows.append(row)
    return header, rows


def legend(metrics: dict[str, Any]) -> str:
    p = metrics["protocol"]
    seeds = p["seeds"]
    spread = "mean ± sd over seeds" if seeds > 1 else "one seed"
    return (
        f"Cells: {spread} [95% bootstrap CI over test images]; Δ = difference to the baseline "
        f"`{p['baseline']}` on the same test images, with a paired-bootstrap two-sided p-value. "
        f"Profile `{p['profile']['name']}`, {seeds} seed(s), {p['init']} initialisation, "
        f"{p['step_budget']}. Test sets: "
        + "; ".join(f"`{k}` = {v}" for k, v in p["test_sets"].items())
        + "."
    )


def write_table(out: Path, metrics: dict[str, Any]) -> Path:
    header, rows = table_rows(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    path = out / TABLE
    path.write_text("\n".join(lines) + "\n\n" + legend(metrics) + "\n")
    return path


def share_plot(metrics: dict[str, Any]) -> str:
    """Each task x test metric against the arms' synthetic share, CI error bars; augmented arms hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = _columns(metrics)
    fig, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.2), squeeze=False)
    for ax, (task, test) in zip(axes[0], columns, strict=True):
        for name, arm in metrics["arms"].items():
            entry = arm["results"][task][test]
            x = arm["synthetic_share"][task]
            y = entry["mean"]
            if y is None or not math.isfinite(y):
                continue
            low, high = entry["ci_low"], entry["ci_high"]
            err = (
                [[max(0.0, y - low)], [max(0.0, high - y)]]
                if math.isfinite(low) and math.isfinite(high)
                else None
            )
            hollow = arm["augment"] != "none"
            ax.errorbar([x], [y], yerr=err, fmt="o", capsize=3, mfc="white" if hollow else None, label=name)
        ax.set_title(f"{TASK_TITLE[task]}, {test}", fontsize=9)
        ax.set_xlabel("synthetic share of train")
        ax.set_xlim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return _png_data_uri(buffer.getvalue())


def write_report(out: Path, metrics: dict[str, Any]) -> Path:
    header, rows = table_rows(metrics)
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    table += "</table>"
    p = metrics["protocol"]
    protocol = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in p["profile"].items()
    )
    networks = "".join(f"<li>{html.escape(t)}: {html.escape(v)}</li>" for t, v in p["networks"].items())
    left_out = "".join(
        f"<li>{html.escape(name)} {html.escape(task)}: {html.escape('; '.join(notes))}</li>"
        for name, arm in metrics["arms"].items()
        for task, notes in arm["left_out"].items()
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>busforge downstream</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}</style></head><body>
<h1>Downstream utility (Table 3 layout)</h1>
{table}
<p>{html.escape(legend(metrics))}</p>
<h2>Metric against the synthetic share</h2>
<p>Error bars: 95% bootstrap CI over test images. Hollow markers: ordinary augmentation.</p>
<img src="{share_plot(metrics)}" alt="metrics against synthetic share">
<h2>Protocol</h2>
<p>Networks (MONAI, {html.escape(str(p["init"]))} initialisation):</p><ul>{networks}</ul>
<p>{html.escape(p["step_budget"])}; checkpoint: {html.escape(p["selection"])}; device {html.escape(p["device"])}.</p>
<table>{protocol}</table>
<h2>Rows left out</h2><ul>{left_out}</ul>
<p>What these numbers do not say: procedural images are not the paper's diffusion images; the networks
start from random weights and train for a fixed, small step budget, so absolute values are below
published ones; CIs cover test-image sampling (and seeds through the mean), not other datasets.</p>
</body></html>
"""
    path = out / REPORT
    path.write_text(body)
    return path


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """What DVC shows of a run: the flat `seg.test.dice_mean`-style numbers (and `partial`, or `skipped`).

    The protocol and per-arm record stay in OUT/metrics.json: as DVC metrics they would add dozens of
    columns (profile fields, row counts, timings) to `dvc exp show`.
    """
    if metrics.get("skipped"):
        return {"skipped": True}
    return {
        key: value
        for key, value in metrics.items()
        if "." in key and isinstance(value, int | float) or key == "partial"
    }


def write_outputs(out: Path, metrics: dict[str, Any]) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    return write_metrics(out, metrics), write_table(out, metrics), write_report(out, metrics)
