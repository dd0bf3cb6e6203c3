"""nnU-Net v2 raw dataset from a busforge dataset (`busforge export nnunet`).

The layout is nnU-Net's own (documentation/dataset_format.md in MIC-DKFZ/nnUNet):

    OUT/Dataset501_BUSI/
      dataset.json              channel_names, labels, numTraining, file_ending (+ busforge's provenance)
      imagesTr/<case>_0000.png  grey, one channel (channel 0000)
      labelsTr/<case>.png       uint8, 0 background, 1 lesion
      imagesTs/, labelsTs/      the test split (nnU-Net never reads them; labelsTs is for evaluation)
      splits_final.json         one fold: busforge's train split vs its validation split

busforge's train and validation splits are nnU-Net's training cases; its test split is imagesTs.
nnU-Net's default 5-fold cross-validation over a mixed dataset would validate on synthetic images
too, so the export also writes `splits_final.json` (nnU-Net's custom-split file,
documentation/manual_data_splits.md) with one fold: train on busforge's train split, validate on its
(real) validation split, the protocol of `busforge downstream`. `nnUNetv2_plan_and_preprocess`
(nnU-Net >= 2.3.1) copies it from the raw folder into `nnUNet_preprocessed/`; then
`nnUNetv2_train 501 2d 0` trains that fold. `nnunet_folds=True` leaves it out, and nnU-Net makes
its own 5 folds.

A row is a lesion case when its mask has a foreground pixel. Rows with an empty mask (normal cases)
are left out unless `include_normal`, and are then cases with an all-background label; rows without
a mask are always left out (there is no ground truth to export).

Case identifiers come from `sample_id` (`busi/benign (12)` -> `busi_benign_12`): runs of characters
outside [A-Za-z0-9._-] become one `_`; identifiers that would clash (also on a case-insensitive file
system) get the first 8 hex digits of their sample_id's sha1 appended. The export is built in
`.DatasetXXX_NAME.staging` beside its target and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busforge import __version__
from busforge.errors import BadInput

TRAIN_SPLITS = ("train", "validation")  # nnU-Net's training cases (imagesTr, labelsTr)
TEST_SPLITS = ("test",)  # imagesTs, labelsTs
FILE_ENDING = ".png"
CHANNEL = "0000"
# Any channel name but "CT" makes nnU-Net z-score each image, the right normalisation for B-mode.
CHANNEL_NAMES = {"0": "ultrasound"}
LABELS = {"background": 0, "lesion": 1}
READER = "NaturalImage2DIO"  # nnU-Net's PNG reader; named so that it does not guess
EXPORT_MARK = "nnunet"  # dataset.json["busforge"]["export"]: what --force may replace
SPLITS_FILE = "splits_final.json"
ID_RANGE = range(1, 1000)  # nnU-Net ids are three digits
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_CASE_LENGTH = 96
NORMAL, NO_MASK = "normal", "no_mask"
EXCLUDED = {
    NORMAL: "normal (no lesion in the mask; --include-normal exports them)",
    NO_MASK: "without a mask",
}


@dataclass(frozen=True)
class Case:
    case_id: str
    split: str  # busforge's split
    folder: str  # "Tr" or "Ts"
    empty: bool  # an all-background label (a normal case)


@dataclass
class ExportPlan:
    """What goes where, decided from masks alone before any file is written."""

    cases: dict[str, Case] = field(default_factory=dict)  # sample_id -> case, in dataset order
    excluded: Counter = field(default_factory=Counter)  # reason (EXCLUDED) -> rows left out
    per_split: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def of(self, folder: str) -> list[Case]:
        return [c for c in self.cases.values() if c.folder == folder]


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    training: int
    test: int
    normal_included: int
    excluded: dict[str, int]
    splits_file: bool


def folder_name(dataset_id: int, name: str) -> str:
    return f"Dataset{dataset_id:03d}_{name}"


def check_options(dataset_id: int, name: str) -> None:
    if dataset_id not in ID_RANGE:
        raise BadInput(
            f"--id: {dataset_id} is not in 1..999; nnU-Net dataset ids have three digits "
            "(custom datasets use 500-999)"
        )
    if not NAME_PATTERN.fullmatch(name):
        raise BadInput(
            f"--name: {name!r} is not a dataset name; use up to 64 letters, digits, _ and -, "
            "starting with a letter or digit (e.g. BUSI)"
        )


def default_name(manifest: dict[str, Any]) -> str:
    """The dataset's own name, made a valid nnU-Net name."""
    name = UNSAFE.sub("_", str(manifest.get("name", ""))).replace(".", "_").strip("_-")[:64]
    return name if name and NAME_PATTERN.fullmatch(name) else "busforge"


def safe_id(sample_id: str) -> str:
    safe = UNSAFE.sub("_", sample_id).strip("._-") or "case"
    if len(safe) > MAX_CASE_LENGTH:
        safe = safe[:MAX_CASE_LENGTH].rstrip("._-")
    return safe


def case_ids(sample_ids: list[str]) -> dict[str, str]:
    """sample_id -> file-safe case identifier, unique even on a case-insensitive file system."""
    groups: dict[str, list[str]] = defaultdict(list)
    for sample_id in sample_ids:
        groups[safe_id(sample_id).lower()].append(sample_id)
    out: dict[str, str] = {}
    for members in groups.values():
        for sample_id in members:
            safe = safe_id(sample_id)
            if len(members) > 1:
                safe = f"{safe}_{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"
            out[sample_id] = safe
    return out


def decode_mask(png: bytes) -> np.ndarray:
    """A stored mask (PNG, 0/255) as bool, by busforge's one binarisation rule."""
    from busforge.imagefiles import to_binary

    return to_binary(Image.open(io.BytesIO(png)))


def plan_export(dataset: Path, manifest: dict[str, Any], include_normal: bool) -> ExportPlan:
    """Which rows become which cases: reads sample ids and masks, no images."""
    from busforge.evaluate.run import iter_rows, split_files

    splits = [s for s in (*TRAIN_SPLITS, *TEST_SPLITS) if s in manifest["splits"]]
    if not any(s in manifest["splits"] for s in TRAIN_SPLITS):
        raise BadInput(
            f"{dataset}: has no train or validation split (it has {', '.join(manifest['splits']) or 'none'}); "
            "nnU-Net needs training cases: export a dataset from `busforge render` or `busforge import`"
        )
    rows: list[tuple[str, str, str | None]] = []  # split, sample_id, why it is left out (None: exported)
    seen: dict[str, str] = {}
    for split in splits:
        for batch in iter_rows(split_files(dataset, [split]), ["sample_id", "mask"]):
            for row in batch:
                sample_id = row["sample_id"]
                if not sample_id:
                    raise BadInput(
                        f"{dataset}: {split} split: a row without sample_id; run `busforge verify`"
                    )
                if sample_id in seen:
                    raise BadInput(
                        f"{dataset}: sample_id {sample_id!r} appears twice ({seen[sample_id]} and {split}); "
                        "case names must be unique: re-render or re-import the dataset"
                    )
                seen[sample_id] = split
                rows.append((split, sample_id, _without_lesion(row["mask"])))

    plan = ExportPlan()
    names = case_ids([sample_id for _, sample_id, _ in rows])
    for split, sample_id, reason in rows:
        if reason == NO_MASK or (reason == NORMAL and not include_normal):
            plan.excluded[reason] += 1
            continue
        folder = "Tr" if split in TRAIN_SPLITS else "Ts"
        plan.cases[sample_id] = Case(names[sample_id], split, folder, empty=reason == NORMAL)
        plan.per_split[split][NORMAL if reason == NORMAL else "lesion"] += 1
    if not any(not c.empty for c in plan.of("Tr")):
        left = describe_excluded(plan.excluded) or "no rows"
        raise BadInput(
            f"{dataset}: no row of its train/validation splits has a lesion mask ({left}); "
            "nnU-Net trains on lesion masks: export a dataset with masks (e.g. from `busforge import busi`)"
        )
    return plan


def _without_lesion(mask: dict[str, Any] | None) -> str | None:
    """None for a lesion case, NORMAL for an empty mask, NO_MASK for a row without one."""
    if mask is None or not mask.get("bytes"):
        return NO_MASK
    return None if decode_mask(mask["bytes"]).any() else NORMAL


def describe_excluded(excluded: dict[str, int]) -> str:
    return ", ".join(f"{n} {EXCLUDED[why]}" for why, n in sorted(excluded.items()))


def is_busforge_export(folder: Path) -> bool:
    try:
        info = json.loads((folder / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and (info.get("busforge") or {}).get("export") == EXPORT_MARK


def check_target(out: Path, target: Path, dataset_id: int, force: bool) -> None:
    """Refuse, before any work, a target that is not ours to write or would confuse nnU-Net."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out: {out} is a file; give the nnUNet_raw folder")
    prefix = f"Dataset{dataset_id:03d}"
    if out.is_dir():
        clash = sorted(p.name for p in out.iterdir() if p.name.startswith(prefix) and p.name != target.name)
        if clash:
            raise BadInput(
                f"{out / clash[0]}: already uses nnU-Net id {dataset_id}, and nnU-Net refuses two datasets "
                "with one id; pass another --id, or remove that folder"
            )
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    if not force:
        raise BadInput(
            f"{target}: exists and is not empty; pass --force to replace an earlier busforge export"
        )
    if not is_busforge_export(target):
        raise BadInput(
            f"{target}: is not an nnU-Net export written by busforge (no busforge.export in its "
            "dataset.json); --force replaces only those: move it away or pass another --id/--name"
        )


def dataset_json(
    plan: ExportPlan, name: str, dataset: Path, manifest: dict[str, Any], include_normal: bool
) -> dict[str, Any]:
    training, test = plan.of("Tr"), plan.of("Ts")
    return {
        "channel_names": CHANNEL_NAMES,
        "labels": LABELS,
        "numTraining": len(training),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": READER,
        "name": name,
        "description": (
            f"Breast-ultrasound lesion segmentation exported from the busforge dataset {manifest.get('name')} "
            f"(fingerprint {manifest.get('fingerprint')}): train + validation in imagesTr, test in imagesTs."
        ),
        "numTest": len(test),
        "converted_by": f"busforge {__version__} (busforge export nnunet)",
        "busforge": {
            "export": EXPORT_MARK,
            "dataset": str(dataset.resolve()),
            "fingerprint": manifest.get("fingerprint"),
            "source": manifest.get("source", "synthetic"),
            "include_normal": include_normal,
            "splits": {"imagesTr": list(TRAIN_SPLITS), "imagesTs": list(TEST_SPLITS)},
            "cases_per_split": {s: dict(sorted(c.items())) for s, c in plan.per_split.items()},
            "excluded": dict(sorted(plan.excluded.items())),
        },
    }


def splits_final(plan: ExportPlan) -> list[dict[str, list[str]]] | None:
    """One fold reproducing busforge's split, or None without validation cases."""
    train = [c.case_id for c in plan.cases.values() if c.split == "train"]
    val = [c.case_id for c in plan.cases.values() if c.split == "validation"]
    return [{"train": train, "val": val}] if train and val else None


def grey_png(png: bytes) -> tuple[bytes, tuple[int, int]]:
    """The image as a one-channel 8-bit PNG (the stored bytes when they already are) and its size."""
    from busforge.executors.rows import encode_png

    image = Image.open(io.BytesIO(png))
    if image.mode == "L" and image.format == "PNG":
        return png, image.size
    return encode_png(np.asarray(image.convert("L"))), image.size


def export_nnunet(
    dataset: Path,
    out: Path,
    dataset_id: int,
    name: str | None = None,
    *,
    include_normal: bool = False,
    nnunet_folds: bool = False,
    force: bool = False,
    progress: bool = False,
) -> ExportResult:
    """Write `out/DatasetXXX_NAME` (nnU-Net v2 raw layout) from a busforge dataset."""
    from busforge.dataset.manifest import read_manifest

    if not dataset.is_dir():
        raise BadInput(f"{dataset}: no such dataset folder; render or import one first")
    manifest = read_manifest(dataset)
    name = name if name is not None else default_name(manifest)
    check_options(dataset_id, name)
    target = out / folder_name(dataset_id, name)
    check_target(out, target, dataset_id, force)
    plan = plan_export(dataset, manifest, include_normal)
    info = dataset_json(plan, name, dataset, manifest, include_normal)
    files = {"dataset.json": json.dumps(info, indent=2) + "\n"}
    fold = None if nnunet_folds else splits_final(plan)
    if fold is not None:
        files[SPLITS_FILE] = json.dumps(fold, indent=2) + "\n"
    _write(dataset, target, plan, files, f"nnunet:{manifest.get('fingerprint')}", progress)
    return ExportResult(
        folder=target,
        training=len(plan.of("Tr")),
        test=len(plan.of("Ts")),
        normal_included=sum(c.empty for c in plan.cases.values()),
        excluded=dict(plan.excluded),
        splits_file=fold is not None,
    )


def _write(
    dataset: Path, target: Path, plan: ExportPlan, files: dict[str, str], run_id: str, progress: bool
) -> None:
    """Images and labels into a staging folder, then the json files and one rename into place."""
    import shutil

    from tqdm import tqdm

    from busforge.dataset.writer import Staging
    from busforge.evaluate.run import iter_rows, split_files
    from busforge.executors.rows import encode_png

    staging = Staging(target)
    if staging.dir.exists():  # a killed export: start over, it is cheap
        shutil.rmtree(staging.dir)
    staging.open(run_id, force=True)
    for folder in {c.folder for c in plan.cases.values()}:
        (staging.dir / f"images{folder}").mkdir()
        (staging.dir / f"labels{folder}").mkdir()
    bar = tqdm(total=len(plan.cases), desc="export nnunet", unit="img", disable=not progress)
    try:
        for split in dict.fromkeys(c.split for c in plan.cases.values()):
            for batch in iter_rows(split_files(dataset, [split]), ["sample_id", "image", "mask"]):
                for row in batch:
                    case = plan.cases.get(row["sample_id"])
                    if case is None:
                        continue
                    image, size = grey_png(row["image"]["bytes"])
                    label = decode_mask(row["mask"]["bytes"])
                    if label.shape != (size[1], size[0]):
                        raise BadInput(
                            f"{dataset}: sample {row['sample_id']!r}: mask {label.shape[1]}x{label.shape[0]} "
                            f"differs from its image {size[0]}x{size[1]}; re-import the dataset"
                        )
                    (
                        staging.dir / f"images{case.folder}" / f"{case.case_id}_{CHANNEL}{FILE_ENDING}"
                    ).write_bytes(image)
                    (staging.dir / f"labels{case.folder}" / f"{case.case_id}{FILE_ENDING}").write_bytes(
                        encode_png(label.astype(np.uint8))
                    )
                    bar.update(1)
        staging.finalize(files, replace_existing=True)  # check_target refused what is not ours
    except BaseException:
        shutil.rmtree(staging.dir, ignore_errors=True)
        raise
    finally:
        bar.close()
