"""Import a real dataset into busforge's Hugging Face format (source = real).

Memory stays flat in the number of images:

1. inspect, through a process pool with a bounded number of tasks in flight: decode image +
   masks, hash the files, perceptual hash, attribute measures, lesion statistics, and encode the
   grey image and binary mask as PNG; the PNGs are appended to a spool file beside the output,
   only small records stay in memory;
2. once duplicate groups, per-dataset thresholds and splits are known, rows are assembled from the
   spool and streamed into `data/{split}-*.parquet` with the lead's Staging/ShardFile; the spool
   is deleted.

Row conventions for real data: `seed` = -1 (not generated), `renderer` = JSON of the import
(`{"importer": kind, "busforge": version}`), `shape` = the ellipse fitted to the largest lesion
component in original-image pixels (`sigma` null), `size_bin` from the lesion's longest side /
sqrt(H*W) (small < 0.18 <= medium < 0.30 <= large, the default recipe's bin edges), and the prompt
from the paper's template; normal cases get "breast ultrasound image without tumor." and null
attributes; lesions of unknown pathology (STU) get the template without the pathology word.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from busforge import __version__
from busforge.dataset.attributes import Thresholds, choose_thresholds
from busforge.dataset.dedup import MAX_DISTANCE, duplicate_groups
from busforge.dataset.import_report import ImportReport, make_report
from busforge.dataset.importers import get_importer
from busforge.dataset.importers.base import Case, Skip
from busforge.dataset.lock import hold_output
from busforge.dataset.output import check_existing
from busforge.dataset.output_path import check_output_dir
from busforge.dataset.real_inspect import Inspected, inspect_case
from busforge.dataset.real_write import finalize_import, write_import
from busforge.dataset.splits import SplitItem, make_splits
from busforge.errors import BadInput
from busforge.pool import ordered_map
from busforge.vocab import NORMAL


@dataclass(frozen=True)
class Imported:
    """What pass 1 and the split decided: everything the report and pass 2 need."""

    kind: str
    src: Path
    out: Path
    domain: str
    settings: dict
    identity: dict
    fingerprint: str
    cases: list[Case]
    infos: list[Inspected]
    skipped: list[Skip]
    assignment: list[str]
    groups: list[list[int]]
    thresholds: Thresholds


def import_real(
    kind: str,
    src: Path,
    out: Path,
    *,
    strict: bool = False,
    domain: str | None = None,
    labels: Path | None = None,
    split_sizes: dict[str, float] | None = None,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Import `src` (layout of `kind`) into the dataset folder `out`; returns the import report."""
    importer = get_importer(kind)
    src, out = Path(src), Path(out)
    if not src.exists():
        raise BadInput(f"{src}: no such folder; give the folder of the downloaded {kind} dataset")
    if labels is not None and not labels.is_file():
        raise BadInput(f"{labels}: --labels: no such file; give the labels CSV")
    check_output_dir(out)
    workers = workers or min(2, os.cpu_count() or 1)
    domain = domain or (out.name if kind == "folder" else kind)
    sizes = split_sizes or importer.DEFAULT_SPLIT
    scan = importer.scan(src, labels)
    skipped: list[Skip] = list(scan.skipped)
    _maybe_strict(strict, src, skipped)

    out.parent.mkdir(parents=True, exist_ok=True)
    spool_path = out.parent / f".{out.name}.spool"
    with hold_output(out, "import"):  # one run per output: the spool, staging and rename are ours
        return _import(
            kind, src, out, domain, seed, sizes, force, progress, scan, workers, strict, skipped, spool_path
        )


def _import(kind, src, out, domain, seed, sizes, force, progress, scan, workers, strict, skipped, spool_path):
    try:
        with open(spool_path, "w+b") as spool:
            cases, infos = _inspect(scan.cases, workers, spool, strict, src, skipped)
            imported = _build(kind, src, out, domain, seed, sizes, cases, infos, skipped)
            report = make_report(imported)
            if check_existing(out, imported.fingerprint, force):
                report.up_to_date = True
                return report
            finalize_import(imported, write_import(imported, spool, progress), report)
            return report
    finally:
        spool_path.unlink(missing_ok=True)


def _inspect(todo: list[Case], workers: int, spool, strict: bool, src: Path, skipped: list[Skip]):
    """Pass 1: records of the usable cases, their PNGs appended to the spool."""
    cases: list[Case] = []
    infos: list[Inspected] = []
    for case, result in zip(todo, ordered_map(inspect_case, todo, workers), strict=True):
        if isinstance(result, str):
            skipped.append(Skip(case.original_file, result))
            _maybe_strict(strict, src, skipped)
            continue
        info, image_png, mask_png = result
        offset = spool.tell()
        spool.write(image_png)
        spool.write(mask_png)
        cases.append(case)
        infos.append(replace(info, spool=(offset, len(image_png), len(mask_png))))
    return cases, infos


def _build(kind, src, out, domain, seed, sizes, cases, infos, skipped) -> Imported:
    """Duplicates, splits, thresholds and fingerprint from the records of pass 1."""
    from busforge.fingerprint import fingerprint

    if not cases:
        raise BadInput(
            f"{src}: no usable {kind} cases found ({len(skipped)} file(s) skipped); check the layout"
        )

    groups = duplicate_groups([i.phash for i in infos])
    assignment = make_splits([SplitItem(c.pathology, c.patient_id) for c in cases], sizes, groups, seed=seed)
    lesion_measures = [
        i.measures for c, i in zip(cases, infos, strict=True) if i.measures and c.pathology != NORMAL
    ]
    thresholds = choose_thresholds(lesion_measures)
    settings = {
        "kind": kind,
        "domain": domain,
        "split_sizes": sizes,
        "split_seed": seed,
        "dedup": {"hash": "phash-63", "max_distance": MAX_DISTANCE},
    }
    case_table = [
        [c.sample_id, c.pathology, c.patient_id, c.birads, c.device, c.histology, c.original_file, i.digest]
        for c, i in zip(cases, infos, strict=True)
    ]
    identity = {"importer": kind, "busforge": __version__}
    fp = fingerprint({"import": settings, "cases": case_table}, identity)

    return Imported(
        kind, src, out, domain, settings, identity, fp, cases, infos, skipped, assignment, groups, thresholds
    )


def _maybe_strict(strict: bool, src: Path, skipped: list[Skip]) -> None:
    if strict and skipped:
        first = skipped[0]
        raise BadInput(f"{src}: {first.file}: {first.reason}; fix or remove it, or import without --strict")
