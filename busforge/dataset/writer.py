"""Parquet shards in the Hub layout, built in a staging folder and renamed into place when complete.

Invariants:
- a shard is written to a temporary file, closed, renamed, hashed, and only then marked done by a
  small JSON marker; a marker whose file or hash does not match is ignored, so a killed run
  redoes at most the shard it was writing;
- the staging folder remembers the fingerprint it was started for; resuming with another
  fingerprint is refused (or, with force, the staging is discarded);
- the finished folder appears under its final name in one rename, never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from busforge.dataset.hashing import sha256_file
from busforge.errors import BadInput

INTERNAL = ".busforge"  # bookkeeping inside the staging folder; removed before the final rename
REPLACED = ".busforge-replaced"  # marks a finished output moved aside by --force, to be deleted


def shard_path(split: str, index: int, total: int) -> str:
    return f"data/{split}-{index:05d}-of-{total:05d}.parquet"


@dataclass(frozen=True)
class ShardRecord:
    split: str
    index: int
    file: str  # relative to the dataset root
    rows: int
    sha256: str
    bytes: int


class ShardFile:
    """Streams rows into one parquet file, one row group at a time, so memory stays flat."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_row_group: int) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.schema = schema
        self.rows_per_row_group = rows_per_row_group
        self.buffer: list[dict[str, Any]] = []
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="snappy")

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.buffer.append(row)
            if len(self.buffer) >= self.rows_per_row_group:
                self._flush()

    def _flush(self) -> None:
        if self.buffer:
            table = pa.Table.from_pylist(self.buffer, schema=self.schema)
            self.writer.write_table(table, row_group_size=len(self.buffer))
            self.rows += len(self.buffer)
            self.buffer = []

    def close(self) -> int:
        self._flush()
        self.writer.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        return self.rows

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Staging:
    """The folder `.<name>.staging` beside the output where a dataset is built."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.dir = out_dir.parent / f".{out_dir.name}.staging"
        self.internal = self.dir / INTERNAL

    def open(self, fingerprint: str, force: bool) -> None:
        """Create the staging folder, or resume the one started for this fingerprint."""
        run_file = self.internal / "run.json"
        if self.dir.exists():
            if not self.internal.is_dir() and any(self.dir.iterdir()):
                raise BadInput(
                    f"{self.dir}: a folder busforge did not make is in the way of its staging folder; "
                    "move it, or choose another --out"
                )
            started_for = _read_record(run_file, "fingerprint")
            if started_for == fingerprint:
                return
            finished = list((self.internal / "shards").glob("*.json"))
            if started_for is not None and finished and not force:
                raise BadInput(
                    f"{self.dir}: unfinished render of a different recipe (fingerprint {started_for}); "
                    "finish it with its own recipe, or pass --force to discard it"
                )
                # Another recipe's work with --force, a run killed before it finished anything, or a
            # damaged run.json (its shards cannot be trusted for any fingerprint): start afresh.
            shutil.rmtree(self.dir)
        self.internal.mkdir(parents=True)
        write_json_atomic(run_file, {"fingerprint": fingerprint})

    def _marker(self, split: str, index: int) -> Path:
        return self.internal / "shards" / f"{split}-{index:05d}.json"

    def done(self, split: str, index: int, total: int) -> ShardRecord | None:
        """The shard's record if it was finished and its bytes are still what was recorded."""
        marker = self._marker(split, index)
        try:  # a marker that is empty, garbage or incomplete means "not done": render it again
            record = ShardRecord(**json.loads(marker.read_text()))
            path = self.dir / str(record.file)
        except (OSError, ValueError, TypeError):
            return None
        if record.file != shard_path(split, index, total) or not path.exists():
            return None
        if path.stat().st_size != record.bytes or sha256_file(path) != record.sha256:
            return None
        return record

    def open_shard(self, split: str, index: int, total: int, schema: pa.Schema, rows_per_row_group: int):
        return ShardFile(self.dir / shard_path(split, index, total), schema, rows_per_row_group)

    def mark_done(self, split: str, index: int, shard: ShardFile) -> ShardRecord:
        rel = str(shard.path.relative_to(self.dir))
        record = ShardRecord(
            split, index, rel, shard.rows, sha256_file(shard.path), shard.path.stat().st_size
        )
        write_json_atomic(self._marker(split, index), asdict(record))
        return record

    def finalize(self, files: dict[str, str], replace_existing: bool) -> None:
        """Write the top-level files and move the finished dataset into place in one rename.

        The bookkeeping goes only after the rename: a run killed at any point before it resumes
        from its markers, and one killed after it leaves a hidden `.busforge/` that the next
        run of the same recipe removes (`remove_leftovers`).
        """
        for name, text in files.items():
            write_text_atomic(self.dir / name, text)
        if self.out_dir.exists():
            if self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
                self.out_dir.rmdir()  # an empty folder is simply taken over
            elif not replace_existing:
                raise BadInput(f"{self.out_dir}: exists; pass --force to replace it")
            else:
                # The caller checked that out_dir is its own kind of output (check_existing).
                old = self.out_dir.parent / f".{self.out_dir.name}.old"
                if old.exists() and not _remove_replaced(old):
                    raise BadInput(f"{old}: a folder busforge did not make is in the way; move it elsewhere")
                os.replace(self.out_dir, old)
                (old / REPLACED).touch()  # so a run killed before the rmtree below knows it is ours
                os.replace(self.dir, self.out_dir)
                shutil.rmtree(self.out_dir / INTERNAL, ignore_errors=True)
                shutil.rmtree(old)  # what this run just moved aside
                return
        os.replace(self.dir, self.out_dir)
        remove_leftovers(self.out_dir)  # the bookkeeping, and a replaced dataset left by a killed run


def remove_leftovers(out_dir: Path) -> None:
    """Drop the staging bookkeeping from a finished dataset (left there by a run killed just after
    its final rename)."""
    shutil.rmtree(out_dir / INTERNAL, ignore_errors=True)
    _remove_replaced(out_dir.parent / f".{out_dir.name}.old")


def _remove_replaced(old: Path) -> bool:
    """Delete the output a --force run replaced, and nothing else: a folder of that name without
    busforge's mark is the user's and stays. True when `old` is gone."""
    if not old.exists():
        return True
    if old.is_dir() and not any(old.iterdir()):  # an empty folder holds nothing to lose
        old.rmdir()
        return True
    if not ((old / REPLACED).exists() or is_busforge_dataset(old)):
        return False
    shutil.rmtree(old)
    return True


def is_busforge_dataset(folder: Path) -> bool:
    """A folder with a manifest busforge wrote (a JSON object with format, fingerprint and splits)."""
    return _read_record(folder / "busforge.json", "fingerprint") is not None and folder.is_dir()


def _read_record(path: Path, key: str) -> Any:
    """`key` of a small JSON object file, or None when the file is missing, damaged or lacks it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None
