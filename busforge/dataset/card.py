"""The dataset card (`README.md`): Hub YAML metadata plus a human description."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from busforge.dataset.features import dataset_features

if TYPE_CHECKING:
    from busforge.dataset.import_report import ImportReport

PAPER_CITATION = """@inproceedings{pan2025clinicalprior,
  title     = {Clinical Prior-Guided Tumor Generation for Breast Ultrasound with Cross Domain Adaptation},
  author    = {Pan and others},
  booktitle = {Medical Image Computing and Computer Assisted Intervention (MICCAI)},
  year      = {2025}
}"""


def size_category(rows: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if rows < limit:
            return label
    return "n>1M"


def card_metadata(manifest: dict[str, Any], license_id: str, source_datasets: list[str]) -> dict[str, Any]:
    splits = manifest["splits"]
    total = sum(s["rows"] for s in splits.values())
    return {
        "license": license_id,
        "pretty_name": manifest["name"],
        "task_categories": ["image-segmentation", "image-classification"],
        "tags": ["medical", "ultrasound", "breast-ultrasound", "synthetic", "busforge"],
        "size_categories": [size_category(total)],
        **({"source_datasets": source_datasets} if source_datasets else {}),
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits],
            }
        ],
        "dataset_info": {
            "features": dataset_features()._to_yaml_list(),
            "splits": [
                {"name": name, "num_bytes": s["bytes"], "num_examples": s["rows"]}
                for name, s in splits.items()
            ],
            "download_size": sum(s["bytes"] for s in splits.values()),
        },
    }


def strata_table(strata: list[dict[str, Any]]) -> str:
    lines = [
        "| pathology | domain | size bin | size range | echogenicity | boundary | count |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in strata:
        lo, hi = s["size_range"]
        lines.append(
            f"| {s['pathology']} | {s['domain']} | {s['size_bin']} | {lo:.3f}–{hi:.3f} | {s['echogenicity']} | {s['boundary']} "
            f"| {s['count']} |"
        )
    return "\n".join(lines)


def render_card(
    manifest: dict[str, Any], recipe: dict[str, Any], source_datasets: list[str] | None = None
) -> str:
    meta = yaml.safe_dump(
        card_metadata(manifest, recipe.get("license", "other"), source_datasets or []),
        sort_keys=False,
        allow_unicode=True,
    )
    renderer = manifest["renderer"]
    rows = {name: s["rows"] for name, s in manifest["splits"].items()}
    diffusion_note = (
        "\nThe diffusion renderer runs without a safety checker: these are medical images, which the "
        "Stable Diffusion safety checker was not made for and would blank at random.\n"
        if renderer.get("backend") == "diffusion"
        else ""
    )
    return f"""---
{meta}---

# {manifest["name"]} {manifest["version"]}

Synthetic breast-ultrasound images with lesion masks and clinical text prompts, rendered by
[busforge](https://github.com/busforge/busforge) {manifest["busforge_version"]} from the recipe stored
beside this card (`recipe.yaml`). **Synthetic data: not for clinical use.**

- Fingerprint (version identity): `{manifest["fingerprint"]}`
- Renderer: `{renderer.get("backend")}` — identity recorded in `busforge.json` and in every row's `renderer` column
- Rows per split: {", ".join(f"{k}: {v}" for k, v in rows.items())}
- Shape prior: `{recipe.get("shape_prior")}`; target domain(s): `{recipe.get("domain")}`
{diffusion_note}
## Load it

```python
from datasets import load_dataset
ds = load_dataset("path/or/hub-id")   # add revision="v{manifest["version"]}" to pin a Hub release
```

Columns: `image` and `mask` (PNG), `prompt`, `pathology`, `source`, `domain`, `size_bin`,
`echogenicity`, `boundary`, `sample_id`, `seed`, `shape` (the mask's generating parameters),
`lesion_area` (fraction of the image), `renderer`, and for real rows `original_file`, `patient_id`,
`birads`, `device`, `histology` and the attribute measures.

## Planned strata

{strata_table(manifest.get("strata", []))}

## Method and citation

Masks are elastically deformed ellipses following lesion-shape priors; prompts follow the template
of Pan et al.:

```bibtex
{PAPER_CITATION}
```
"""


SOURCES = {
    "busi": "Al-Dhabyani et al., Dataset of breast ultrasound images, Data in Brief 28:104863 (2020)",
    "udiat": "Yap et al., Automated breast ultrasound lesions detection using CNNs, IEEE JBHI 22(4) (2018)",
    "stu": "Zhuang et al., STU-Hospital breast ultrasound test set",
    "busbra": "Gómez-Flores et al., BUS-BRA: a breast ultrasound dataset, Medical Physics (2023)",
    "folder": "in-house data (folder layout)",
}


def render_real_card(manifest: dict[str, Any], report: ImportReport) -> str:
    """A short card: Hub metadata, what was imported, how attributes and splits were made."""
    from busforge.dataset.import_report import REPORT_JSON, REPORT_TEXT, fmt_counts
    from busforge.dataset.real_rows import NORMAL_PROMPT, REAL_SEED

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
- Domain: `{report.domain}`; cases per class: {fmt_counts(report.per_class)}
- Rows per split: {", ".join(f"{k}: {v}" for k, v in rows.items())} (stratified by pathology; patients
  and near-duplicate groups are never split; {len(report.duplicate_groups)} duplicate groups,
  {len(report.cross_class_groups)} across classes)
- Echogenicity and boundary are measured, not labelled by clinicians: see the columns
  `echo_heterogeneity`, `boundary_contrast`, `boundary_sharpness`; thresholds for this dataset:
  {thresholds}. Normal cases have null attributes and the prompt "{NORMAL_PROMPT}"
- `seed` is {REAL_SEED} (not generated); `renderer` records the importer; the full import report is
  `{REPORT_TEXT}` / `{REPORT_JSON}`.
"""
