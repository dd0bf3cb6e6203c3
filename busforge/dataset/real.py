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

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from busforge import __version__
from busforge.dataset.attributes import Measures, Thresholds, choose_thresholds, classify, measure
from busforge.dataset.dedup import MAX_DISTANCE, duplicate_groups, phash
from busforge.dataset.features import PATHOLOGY_NAMES, SOURCE_NAMES
from busforge.dataset.importers import get_importer
from busforge.dataset.importers.base import Case, CaseError, Skip, load_case
from busforge.dataset.splits import SPLIT_ORDER, SplitItem, make_splits
from busforge.errors import BadInput
from busforge.pool import ordered_map
from busforge.prompts import DEFAULT_PROMPT, make_prompt

NORMAL_PROMPT = "breast ultrasound image without tumor."
REAL_SEED = -1
ROWS_PER_SHARD = 1000
ROWS_PER_ROW_GROUP = 100
SIZE_BIN_EDGES = (("small", 0.18), ("medium", 0.30), ("large", math.inf))
REPORT_JSON = "import_report.json"
REPORT_TEXT = "import_report.txt"


@dataclass(frozen=True)
class Inspected:
    """What pass 1 learns about one case (small: no pixels)."""

    digest: str
    phash: int
    measures: Measures | None
    lesion_area: float
    size: float | None
    shape: dict[str, float | None] | None
    width: int
    height: int
    resized_from: tuple[int, int] | None
    merged_masks: int
    spool: tuple[int, int, int] = (0, 0, 0)  # offset, image PNG length, mask PNG length


@dataclass
class ImportReport:
    kind: str
    source: str
    out: str
    domain: str
    fingerprint: str = ""
    per_class: dict[str, int] = field(default_factory=dict)
    per_split: dict[str, dict[str, int]] = field(default_factory=dict)
    patients: int | None = None
    multi_lesion_merged: list[str] = field(default_factory=list)
    masks_resized: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)
    cross_class_groups: list[list[str]] = field(default_factory=list)
    attribute_thresholds: dict[str, float] = field(default_factory=dict)
    attribute_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    up_to_date: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"import {self.kind} {self.source} -> {self.out} (domain {self.domain}, fingerprint {self.fingerprint})",
            f"cases: {sum(self.per_class.values())} ({_fmt(self.per_class)})",
        ]
        for split, counts in self.per_split.items():
            lines.append(f"  {split}: {sum(counts.values())} ({_fmt(counts)})")
        if self.patients is not None:
            lines.append(f"patients: {self.patients} (each kept inside one split)")
        lines.append(f"multi-lesion cases merged (mask union): {len(self.multi_lesion_merged)}")
        lines += [f"  {s}" for s in self.multi_lesion_merged]
        lines.append(f"masks resized to their image (nearest neighbour): {len(self.masks_resized)}")
        lines += [
            f"  {m['sample_id']}: {m['from'][0]}x{m['from'][1]} -> {m['to'][0]}x{m['to'][1]}"
            for m in self.masks_resized
        ]
        lines.append(f"near-duplicate groups (pHash, kept inside one split): {len(self.duplicate_groups)}")
        lines += [f"  {', '.join(g)}" for g in self.duplicate_groups]
        lines.append(f"  of which across classes: {len(self.cross_class_groups)}")
        lines += [f"  cross-class: {', '.join(g)}" for g in self.cross_class_groups]
        if self.attribute_thresholds:
            lines.append(f"attribute thresholds (this dataset): {_fmt(self.attribute_thresholds, '.4f')}")
            for column, counts in self.attribute_counts.items():
                lines.append(f"  {column}: {_fmt(counts)}")
        lines.append(f"files skipped: {len(self.skipped)}")
        lines += [f"  {s['file']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines) + "\n"


def _fmt(counts: dict[str, Any], spec: str = "") -> str:
    return ", ".join(f"{k} {format(v, spec)}" for k, v in counts.items())


def fit_ellipse(lesion: np.ndarray) -> dict[str, float | None] | None:
    """Moment-fitted ellipse of a lesion component (bool) in the `shape` column's terms."""
    from skimage.measure import regionprops

    if not lesion.any():
        return None
    rows, cols = np.flatnonzero(lesion.any(axis=1)), np.flatnonzero(lesion.any(axis=0))
    crop = lesion[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    props = regionprops(crop.astype(np.uint8))[0]  # moments only: cheap
    # skimage's orientation is the major axis' angle from the row axis; ours is from the x axis,
    # counter-clockwise on screen (rows grow downwards), in (-90, 90].
    angle = (math.degrees(props.orientation) + 90.0) % 180.0
    angle = angle - 180.0 if angle > 90.0 else angle
    cy, cx = props.centroid
    return {
        "a": float(props.axis_major_length / 2),
        "b": float(props.axis_minor_length / 2),
        "angle": float(angle),
        "cx": float(cx + cols[0]),
        "cy": float(cy + rows[0]),
        "sigma": None,
    }


def lesion_size(lesion: np.ndarray) -> float | None:
    """Longest bounding-box side of the lesion / sqrt(H*W) (busforge.shapes.stats' `size`)."""
    if not lesion.any():
        return None
    rows, cols = np.flatnonzero(lesion.any(axis=1)), np.flatnonzero(lesion.any(axis=0))
    longest = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    return float(longest / np.sqrt(lesion.size))


def file_digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def inspect_case(case: Case) -> tuple[Inspected, bytes, bytes] | str:
    """Pass 1 for one case: its record and PNGs, or the reason it must be skipped."""
    from busforge.executors.rows import encode_png
    from busforge.shapes.stats import largest_component

    try:
        loaded = load_case(case)
    except CaseError as err:
        return str(err)
    lesion = largest_component(loaded.mask) if loaded.mask.any() else loaded.mask
    info = Inspected(
        digest=file_digest((case.image, *case.masks)),
        phash=phash(loaded.image),
        measures=measure(loaded.image, loaded.mask),
        lesion_area=float(loaded.mask.mean()),
        size=lesion_size(lesion),
        shape=fit_ellipse(lesion),
        width=loaded.image.shape[1],
        height=loaded.image.shape[0],
        resized_from=loaded.resized_from,
        merged_masks=loaded.merged_masks,
    )
    return info, encode_png(loaded.image), encode_png(loaded.mask.astype(np.uint8) * 255)


def size_bin(size: float | None) -> str | None:
    if size is None:
        return None
    return next(name for name, upper in SIZE_BIN_EDGES if size < upper)


def prompt_for(pathology: str | None, echogenicity: str | None, boundary: str | None) -> str:
    if pathology == "normal" or echogenicity is None or boundary is None:
        return NORMAL_PROMPT
    text = make_prompt(
        DEFAULT_PROMPT, pathology=pathology or "", echogenicity=echogenicity, boundary=boundary
    )
    return " ".join(text.split())


def make_real_row(
    case: Case, info: Inspected, pngs: tuple[bytes, bytes], thresholds: Thresholds, domain: str, renderer: str
) -> dict[str, Any]:
    echogenicity = boundary = None
    if info.measures is not None and case.pathology != "normal":
        echogenicity, boundary = classify(info.measures, thresholds)
    return {
        "image": {"bytes": pngs[0], "path": None},
        "mask": {"bytes": pngs[1], "path": None},
        "prompt": prompt_for(case.pathology, echogenicity, boundary),
        "pathology": PATHOLOGY_NAMES.index(case.pathology) if case.pathology else None,
        "source": SOURCE_NAMES.index("real"),
        "domain": domain,
        "size_bin": size_bin(info.size),
        "echogenicity": echogenicity,
        "boundary": boundary,
        "sample_id": case.sample_id,
        "seed": REAL_SEED,
        "shape": info.shape,
        "lesion_area": info.lesion_area,
        "renderer": renderer,
        "original_file": case.original_file,
        "patient_id": case.patient_id,
        "birads": case.birads,
        "device": case.device,
        "histology": case.histology,
        **(info.measures.as_row() if info.measures else dict.fromkeys(Measures.__dataclass_fields__)),
    }


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
    workers = workers or min(2, os.cpu_count() or 1)
    domain = domain or (out.name if kind == "folder" else kind)
    sizes = split_sizes or importer.DEFAULT_SPLIT
    scan = importer.scan(src, labels)
    skipped: list[Skip] = list(scan.skipped)
    _maybe_strict(strict, src, skipped)

    out.parent.mkdir(parents=True, exist_ok=True)
    spool_path = out.parent / f".{out.name}.spool"
    try:
        with open(spool_path, "w+b") as spool:
            cases, infos = _inspect(scan.cases, workers, spool, strict, src, skipped)
            return _build(kind, src, out, domain, seed, sizes, force, progress, cases, infos, skipped, spool)
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


def _build(
    kind, src, out, domain, seed, sizes, force, progress, cases, infos, skipped, spool
) -> ImportReport:
    """Duplicates, splits, thresholds and fingerprint from the records; then write the dataset."""
    from busforge.dataset.output import check_existing
    from busforge.fingerprint import fingerprint

    if not cases:
        raise BadInput(
            f"{src}: no usable {kind} cases found ({len(skipped)} file(s) skipped); check the layout"
        )

    groups = duplicate_groups([i.phash for i in infos])
    assignment = make_splits([SplitItem(c.pathology, c.patient_id) for c in cases], sizes, groups, seed=seed)
    lesion_measures = [
        i.measures for c, i in zip(cases, infos, strict=True) if i.measures and c.pathology != "normal"
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

    report = _report(kind, src, out, domain, fp, cases, infos, assignment, groups, thresholds, skipped)
    if check_existing(out, fp, force):
        report.up_to_date = True
        return report
    records = _write(out, fp, cases, infos, assignment, thresholds, domain, identity, spool, progress)
    _finalize(out, fp, force, records, report, settings, identity)
    return report


def _maybe_strict(strict: bool, src: Path, skipped: list[Skip]) -> None:
    if strict and skipped:
        first = skipped[0]
        raise BadInput(f"{src}: {first.file}: {first.reason}; fix or remove it, or import without --strict")


def _report(
    kind, src, out, domain, fp, cases, infos, assignment, groups, thresholds, skipped
) -> ImportReport:
    def label(c: Case) -> str:
        return c.pathology or "unknown"

    report = ImportReport(kind=kind, source=str(src), out=str(out), domain=domain, fingerprint=fp)
    report.per_class = dict(sorted(Counter(label(c) for c in cases).items()))
    for split in SPLIT_ORDER:
        members = [label(c) for c, s in zip(cases, assignment, strict=True) if s == split]
        if members:
            report.per_split[split] = dict(sorted(Counter(members).items()))
    patients = {c.patient_id for c in cases if c.patient_id is not None}
    report.patients = len(patients) if patients else None
    report.multi_lesion_merged = [
        c.sample_id for c, i in zip(cases, infos, strict=True) if i.merged_masks > 1
    ]
    report.masks_resized = [
        {"sample_id": c.sample_id, "from": list(i.resized_from), "to": [i.width, i.height]}
        for c, i in zip(cases, infos, strict=True)
        if i.resized_from
    ]
    report.skipped = [{"file": s.file, "reason": s.reason} for s in skipped]
    report.duplicate_groups = [[cases[j].sample_id for j in g] for g in groups]
    report.cross_class_groups = [
        [cases[j].sample_id for j in g] for g in groups if len({label(cases[j]) for j in g}) > 1
    ]
    report.attribute_thresholds = thresholds.as_dict()
    attributes = [
        classify(i.measures, thresholds)
        for c, i in zip(cases, infos, strict=True)
        if i.measures is not None and c.pathology != "normal"
    ]
    report.attribute_counts = {
        "echogenicity": dict(sorted(Counter(a[0] for a in attributes).items())),
        "boundary": dict(sorted(Counter(a[1] for a in attributes).items())),
    }
    return report


def _write(out, fp, cases, infos, assignment, thresholds, domain, identity, spool, progress):
    from tqdm import tqdm

    from busforge.dataset.output import pending_shards, write_shard
    from busforge.dataset.writer import Staging
    from busforge.planning import ShardJob

    staging = Staging(out)
    staging.open(fp, force=True)  # an unfinished import of other files is simply redone
    renderer = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    members = {split: [k for k, s in enumerate(assignment) if s == split] for split in SPLIT_ORDER}
    jobs = []
    for split in SPLIT_ORDER:
        n = len(members[split])
        total = math.ceil(n / ROWS_PER_SHARD)
        jobs += [
            ShardJob(split, i, total, real_rows=(i * ROWS_PER_SHARD, min(n, (i + 1) * ROWS_PER_SHARD)))
            for i in range(total)
        ]
    done, todo = pending_shards(staging, jobs)

    def rows(job: ShardJob):
        start, stop = job.real_rows
        for k in members[job.split][start:stop]:
            offset, image_len, mask_len = infos[k].spool
            spool.seek(offset)
            encoded = (spool.read(image_len), spool.read(mask_len))
            yield [make_real_row(cases[k], infos[k], encoded, thresholds, domain, renderer)]

    bar = tqdm(total=len(cases), desc="import", unit="img", disable=not progress)
    bar.update(sum(jobs[i].rows for i in done))
    written = {}
    try:
        for job in todo:
            written[(job.split, job.index)] = write_shard(
                staging, job, rows(job), ROWS_PER_ROW_GROUP, bar.update
            )
    finally:
        bar.close()
    # In the order of the splits (the card lists them so), whether resumed or written now.
    return [done[i] if i in done else written[(job.split, job.index)] for i, job in enumerate(jobs)]


def _finalize(out, fp, force, records, report: ImportReport, settings, identity) -> None:
    from busforge.dataset.manifest import build_manifest
    from busforge.dataset.output import finalize
    from busforge.dataset.writer import Staging

    manifest = build_manifest(
        name=out.name,
        version="1.0.0",
        fingerprint=fp,
        renderer=identity,
        counts={},  # planned counts describe synthetic rows; real counts live under "real"
        strata=[],
        shards=records,
        extra={
            "source": "real",
            "real": {
                "kind": report.kind,
                "domain": report.domain,
                "per_class": report.per_class,
                "per_split": report.per_split,
                "attribute_thresholds": report.attribute_thresholds,
                "duplicate_groups": len(report.duplicate_groups),
                "cross_class_groups": len(report.cross_class_groups),
                "skipped": len(report.skipped),
            },
        },
    )
    # check_existing() already refused to replace another dataset without --force.
    finalize(
        Staging(out),
        manifest,
        # What made this dataset: `busforge import` settings (verify expects a recipe.yaml).
        {"import": {**settings, "source": report.source}},
        render_real_card(manifest, report),
        replace_existing=True,
        extra_files={REPORT_JSON: json.dumps(report.as_dict(), indent=2) + "\n", REPORT_TEXT: report.text()},
    )


SOURCES = {
    "busi": "Al-Dhabyani et al., Dataset of breast ultrasound images, Data in Brief 28:104863 (2020)",
    "udiat": "Yap et al., Automated breast ultrasound lesions detection using CNNs, IEEE JBHI 22(4) (2018)",
    "stu": "Zhuang et al., STU-Hospital breast ultrasound test set",
    "busbra": "Gómez-Flores et al., BUS-BRA: a breast ultrasound dataset, Medical Physics (2023)",
    "folder": "in-house data (folder layout)",
}


def render_real_card(manifest: dict[str, Any], report: ImportReport) -> str:
    """A short card: Hub metadata, what was imported, how attributes and splits were made."""
    import yaml

    from busforge.dataset.card import card_metadata

    meta = card_metadata(manifest, "other", [report.kind])
    meta["tags"] = [t for t in meta["tags"] if t != "synthetic"] + ["real"]
    rows = {name: s["rows"] for name, s in manifest["splits"].items()}
    thresholds = ", ".join(f"`{k}` {v:.4f}" for k, v in report.attribute_thresholds.items())
    return f"""---
{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---

# {manifest["name"]} (real data, imported by busforge {manifest["busforge_version"]})

Real breast-ultrasound images imported with `busforge import {report.kind}`: original resolution,
grey-scale PNG images, binary PNG lesion masks (union of a case's lesion masks), `source = real`.
Source: {SOURCES.get(report.kind, report.kind)}. **Use it under the source dataset's own terms and
cite it.** Not for clinical use.

- Fingerprint (identity of this import): `{manifest["fingerprint"]}`
- Domain: `{report.domain}`; cases per class: {_fmt(report.per_class)}
- Rows per split: {", ".join(f"{k}: {v}" for k, v in rows.items())} (stratified by pathology; patients
  and near-duplicate groups are never split; {len(report.duplicate_groups)} duplicate groups,
  {len(report.cross_class_groups)} across classes)
- Echogenicity and boundary are measured, not labelled by clinicians: see the columns
  `echo_heterogeneity`, `boundary_contrast`, `boundary_sharpness`; thresholds for this dataset:
  {thresholds}. Normal cases have null attributes and the prompt "{NORMAL_PROMPT}"
- `seed` is {REAL_SEED} (not generated); `renderer` records the importer; the full import report is
  `{REPORT_TEXT}` / `{REPORT_JSON}`.
"""
