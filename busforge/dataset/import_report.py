"""The import report: what an import found, split, merged, resized and skipped (text and JSON)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from busforge.dataset.attributes import classify
from busforge.dataset.importers.base import Case
from busforge.dataset.splits import SPLIT_ORDER
from busforge.vocab import NORMAL

if TYPE_CHECKING:
    from busforge.dataset.real import Imported

REPORT_JSON = "import_report.json"
REPORT_TEXT = "import_report.txt"


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
            f"cases: {sum(self.per_class.values())} ({fmt_counts(self.per_class)})",
        ]
        for split, counts in self.per_split.items():
            lines.append(f"  {split}: {sum(counts.values())} ({fmt_counts(counts)})")
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
            lines.append(
                f"attribute thresholds (this dataset): {fmt_counts(self.attribute_thresholds, '.4f')}"
            )
            for column, counts in self.attribute_counts.items():
                lines.append(f"  {column}: {fmt_counts(counts)}")
        lines.append(f"files skipped: {len(self.skipped)}")
        lines += [f"  {s['file']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines) + "\n"


def fmt_counts(counts: dict[str, Any], spec: str = "") -> str:
    return ", ".join(f"{k} {format(v, spec)}" for k, v in counts.items())


def make_report(imported: Imported) -> ImportReport:
    """The import report of what was found, split and measured."""
    cases, infos, assignment, groups, thresholds = (
        imported.cases,
        imported.infos,
        imported.assignment,
        imported.groups,
        imported.thresholds,
    )

    def label(c: Case) -> str:
        return c.pathology or "unknown"

    report = ImportReport(
        kind=imported.kind,
        source=str(imported.src),
        out=str(imported.out),
        domain=imported.domain,
        fingerprint=imported.fingerprint,
    )
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
    report.skipped = [{"file": s.file, "reason": s.reason} for s in imported.skipped]
    report.duplicate_groups = [[cases[j].sample_id for j in g] for g in groups]
    report.cross_class_groups = [
        [cases[j].sample_id for j in g] for g in groups if len({label(cases[j]) for j in g}) > 1
    ]
    report.attribute_thresholds = thresholds.as_dict()
    attributes = [
        classify(i.measures, thresholds)
        for c, i in zip(cases, infos, strict=True)
        if i.measures is not None and c.pathology != NORMAL
    ]
    report.attribute_counts = {
        "echogenicity": dict(sorted(Counter(a[0] for a in attributes).items())),
        "boundary": dict(sorted(Counter(a[1] for a in attributes).items())),
    }
    return report
