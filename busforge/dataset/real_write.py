"""Pass 2 of an import: the shards from the spool, then manifest, card and report."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from busforge.dataset.card import render_real_card
from busforge.dataset.import_report import REPORT_JSON, REPORT_TEXT, ImportReport
from busforge.dataset.manifest import build_manifest
from busforge.dataset.output import finalize, pending_shards, write_shard
from busforge.dataset.real_rows import make_real_row
from busforge.dataset.splits import SPLIT_ORDER
from busforge.dataset.writer import ShardRecord, Staging

if TYPE_CHECKING:
    from busforge.dataset.real import Imported

ROWS_PER_SHARD = 1000
ROWS_PER_ROW_GROUP = 100


def write_import(imported: Imported, spool, progress: bool) -> list[ShardRecord]:
    """Pass 2: rows assembled from the spool, streamed into the staging folder's shards."""
    from tqdm import tqdm

    from busforge.planning import ShardJob

    cases, infos = imported.cases, imported.infos
    staging = Staging(imported.out)
    staging.open(imported.fingerprint, force=True)  # an unfinished import of other files is simply redone
    renderer = json.dumps(imported.identity, sort_keys=True, separators=(",", ":"))
    members = {split: [k for k, s in enumerate(imported.assignment) if s == split] for split in SPLIT_ORDER}
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
            yield [make_real_row(cases[k], infos[k], encoded, imported.thresholds, imported.domain, renderer)]

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


def finalize_import(imported: Imported, records: list[ShardRecord], report: ImportReport) -> None:
    """Manifest, card, import settings and report; the dataset moves into place."""
    out = imported.out
    manifest = build_manifest(
        name=out.name,
        version="1.0.0",
        fingerprint=imported.fingerprint,
        renderer=imported.identity,
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
        {"import": {**imported.settings, "source": report.source}},
        render_real_card(manifest, report),
        replace_existing=True,
        extra_files={REPORT_JSON: json.dumps(report.as_dict(), indent=2) + "\n", REPORT_TEXT: report.text()},
    )
