"""Writing a dataset folder, the same way for render and import: refuse to clobber, resume the
shards already done, write one shard (file, hash, marker), finalize (top-level files, one rename).

An executor decides only who renders which shard; every shard goes through `write_shard`, so
a shard written by any executor resumes and verifies alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import yaml

from busforge.dataset.features import dataset_features
from busforge.dataset.manifest import MANIFEST, read_manifest
from busforge.dataset.writer import ShardRecord, Staging, is_busforge_dataset, remove_leftovers
from busforge.errors import BadInput


class ShardSlot(Protocol):
    """Where a shard goes: `data/{split}-{index}-of-{total}.parquet`."""

    split: str
    index: int
    total: int


S = TypeVar("S", bound=ShardSlot)


@dataclass
class OpenRun(Generic[S]):
    """A run's staging folder, opened: the shards already finished and the ones still to write."""

    staging: Staging
    records: list[ShardRecord]
    todo: list[S]


def check_existing(out_dir: Path, fp: str, force: bool) -> bool:
    """True when `out_dir` already holds this exact dataset; refuse to clobber another one."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise BadInput(f"{out_dir}: is a file; --out (or output.dir) must name a folder")
    if force:
        if any(out_dir.iterdir()) and not is_busforge_dataset(out_dir):
            raise BadInput(
                f"{out_dir}: exists and is not a busforge dataset; --force replaces only a busforge dataset, "
                "so choose another --out"
            )
        return False
    if not (out_dir / MANIFEST).exists():
        if any(out_dir.iterdir()):
            raise BadInput(
                f"{out_dir}: exists and is not a busforge dataset; choose another --out or pass --force"
            )
        return False
    existing = read_manifest(out_dir).get("fingerprint")
    if existing != fp:
        raise BadInput(
            f"{out_dir}: holds another dataset (fingerprint {existing}, this run gives {fp}); "
            "pass --force to replace it, or --out to write elsewhere"
        )
    remove_leftovers(out_dir)
    return True


def pending_shards(staging: Staging, slots: Sequence[S]) -> tuple[dict[int, ShardRecord], list[S]]:
    """The records of the shards already finished (by position in `slots`) and the slots still to do."""
    done: dict[int, ShardRecord] = {}
    todo: list[S] = []
    for position, slot in enumerate(slots):
        record = staging.done(slot.split, slot.index, slot.total)
        if record is not None:
            done[position] = record
        else:
            todo.append(slot)
    return done, todo


def open_run(out_dir: Path, fingerprint: str, slots: Sequence[S], force: bool) -> OpenRun[S] | None:
    """Start or resume writing `out_dir`; None when it already holds this exact dataset."""
    if check_existing(out_dir, fingerprint, force):
        return None
    staging = Staging(out_dir)
    staging.open(fingerprint, force)
    done, todo = pending_shards(staging, slots)
    return OpenRun(staging, list(done.values()), todo)


def write_shard(
    staging: Staging,
    slot: ShardSlot,
    batches: Iterable[list[dict[str, Any]]],
    rows_per_row_group: int,
    on_rows=None,
) -> ShardRecord:
    """Write one shard from batches of rows, then mark it done; a failure leaves no partial file.
    `on_rows(n)` is called after each batch (progress)."""
    shard = staging.open_shard(
        slot.split, slot.index, slot.total, dataset_features().arrow_schema, rows_per_row_group
    )
    try:
        for rows in batches:
            shard.add(rows)
            if on_rows is not None:
                on_rows(len(rows))
        shard.close()
    except BaseException:
        shard.abort()
        raise
    return staging.mark_done(slot.split, slot.index, shard)


def finalize(
    staging: Staging,
    manifest: dict[str, Any],
    recipe: dict[str, Any],
    card: str,
    *,
    replace_existing: bool,
    extra_files: dict[str, str] | None = None,
) -> None:
    """The top-level files (manifest, what made the dataset as `recipe.yaml`, the card) and the
    final rename into place."""
    files = {
        MANIFEST: json.dumps(manifest, indent=2, sort_keys=True) + "\n",
        "recipe.yaml": yaml.safe_dump(recipe, sort_keys=False),
        "README.md": card,
        **(extra_files or {}),
    }
    staging.finalize(files, replace_existing=replace_existing)
