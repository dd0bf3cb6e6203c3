"""The dataset card (`README.md`): Hub YAML metadata plus a human description of what is in it.

Synthetic-only, mixed (synthetic + the real rows of an import) and imported real datasets each get
a card that says which they are, names the real source with its citation and terms, and never puts a
local path into Hub metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class RealSource:
    """A real dataset busforge imports: what to call it, how to cite it, the terms it comes under."""

    name: str
    reference: str
    bibtex: str
    terms: str


REAL_SOURCES = {
    "busi": RealSource(
        "BUSI",
        "Al-Dhabyani, Gomaa, Khaled, Fahmy. Dataset of breast ultrasound images. Data in Brief 28:104863 (2020)",
        """@article{aldhabyani2020busi,
  title   = {Dataset of breast ultrasound images},
  author  = {Al-Dhabyani, Walid and Gomaa, Mohammed and Khaled, Hussien and Fahmy, Aly},
  journal = {Data in Brief},
  volume  = {28},
  pages   = {104863},
  year    = {2020},
  doi     = {10.1016/j.dib.2019.104863}
}""",
        "the terms of the BUSI copy you obtained (published with the paper for research use); cite the paper",
    ),
    "udiat": RealSource(
        "UDIAT (Dataset B)",
        "Yap et al. Automated breast ultrasound lesions detection using convolutional neural networks. "
        "IEEE JBHI 22(4):1218-1226 (2018)",
        """@article{yap2018udiat,
  title   = {Automated Breast Ultrasound Lesions Detection Using Convolutional Neural Networks},
  author  = {Yap, Moi Hoon and others},
  journal = {IEEE Journal of Biomedical and Health Informatics},
  volume  = {22},
  number  = {4},
  pages   = {1218--1226},
  year    = {2018},
  doi     = {10.1109/JBHI.2017.2731873}
}""",
        "the research licence agreement under which the authors release Dataset B (redistribution may "
        "need their permission); cite the paper",
    ),
    "stu": RealSource(
        "STU-Hospital",
        "Zhuang et al. An RDAU-NET model for lesion segmentation in breast ultrasound images. "
        "PLoS ONE 14(8):e0221535 (2019)",
        """@article{zhuang2019stu,
  title   = {An {RDAU-NET} model for lesion segmentation in breast ultrasound images},
  author  = {Zhuang, Zhemin and Li, Nan and Raj, Alex Noel Joseph and Mahesh, Vijayalakshmi G. V. and Qiu, Shunmin},
  journal = {PLoS ONE},
  volume  = {14},
  number  = {8},
  pages   = {e0221535},
  year    = {2019},
  doi     = {10.1371/journal.pone.0221535}
}""",
        "the terms of the STU-Hospital copy you obtained; cite the paper",
    ),
    "busbra": RealSource(
        "BUS-BRA",
        "Gómez-Flores, Gregorio-Calas, Pereira. BUS-BRA: a breast ultrasound dataset for assessing "
        "computer-aided diagnosis systems. Medical Physics 51(4):3110-3123 (2024)",
        """@article{gomezflores2024busbra,
  title   = {{BUS-BRA}: A Breast Ultrasound Dataset for Assessing Computer-aided Diagnosis Systems},
  author  = {G{\\'o}mez-Flores, Wilfrido and Gregorio-Calas, Maria Julia and de Albuquerque Pereira, Wagner Coelho},
  journal = {Medical Physics},
  volume  = {51},
  number  = {4},
  pages   = {3110--3123},
  year    = {2024}
}""",
        "its MIT-style licence (the dataset's LICENSE.txt: keep the copyright notice; works using it must "
        "cite the article)",
    ),
    "folder": RealSource("in-house data (folder layout)", "", "", "the terms of whoever owns the images"),
}


def real_source(kind: str) -> RealSource:
    return REAL_SOURCES.get(kind, RealSource(kind, "", "", f"the terms of the {kind} data"))


def domain_list(domain: Any) -> str:
    """`busi`, or several weighted domains as `busi` (50%), `udiat` (50%)."""
    if not isinstance(domain, dict):
        return f"`{domain}`"
    total = sum(domain.values()) or 1.0
    return ", ".join(f"`{name}` ({weight / total:.0%})" for name, weight in domain.items())


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


def card_metadata(
    manifest: dict[str, Any], license_id: str, *, synthetic: bool, real: bool
) -> dict[str, Any]:
    """Hub metadata. No `source_datasets`: it takes Hub dataset ids, and busforge's real data comes
    from local imports (a local path goes nowhere on the Hub); the card's text names the source."""
    splits = manifest["splits"]
    total = sum(s["rows"] for s in splits.values())
    kinds = (["synthetic"] if synthetic else []) + (["real"] if real else [])
    return {
        "license": license_id,
        "pretty_name": manifest["name"],
        "task_categories": ["image-segmentation", "image-classification"],
        "tags": ["medical", "ultrasound", "breast-ultrasound", *kinds, "busforge"],
        "size_categories": [size_category(total)],
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


def _rows_text(rows: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in rows.items())


def render_card(manifest: dict[str, Any], recipe: dict[str, Any]) -> str:
    """The card of a rendered dataset: synthetic only, or mixed with the real rows of `manifest["real"]`."""
    real = manifest.get("real")
    recipe_license = recipe.get("license", "other")
    real_rows = {split: n["real"] for split, n in real["rows"].items() if n["real"]} if real else {}
    synthetic_rows = sum(manifest["counts"].get("pathology", {}).values())
    mixed = bool(real_rows)
    # A mixed dataset is not under one licence: its real rows keep their source's terms.
    meta = yaml.safe_dump(
        card_metadata(manifest, "other" if mixed else recipe_license, synthetic=True, real=mixed),
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
    made_by = (
        f"[busforge](https://github.com/busforge/busforge) {manifest['busforge_version']} from the recipe "
        "stored beside this card (`recipe.yaml`)"
    )
    if mixed:
        source = real_source(real.get("kind", "folder"))
        cited = f" ({source.reference})" if source.reference else ""
        intro = f"""Breast-ultrasound images with lesion masks and clinical text prompts, of two kinds (column
`source`): {synthetic_rows} synthetic rows rendered by {made_by}, and {sum(real_rows.values())} real
rows of **{source.name}**{cited}, copied unchanged from the imported dataset (fingerprint
`{real["fingerprint"]}`; ratio real:synthetic {real["ratio"]} in train). **The synthetic rows are
not for clinical use; the real rows come under {source.name}'s terms.**"""
        rows_line = f"- Rows per split: {_rows_text(rows)} (real: {_rows_text(real_rows)})"
        licence = f"""## Licence and terms

Not one licence: the synthetic rows are `{recipe_license}` (the recipe's `license`); the real rows
(`source = real`) are {source.name}'s, under {source.terms}. Hence `license: other` above."""
        citations = f"{PAPER_CITATION}\n\n{source.bibtex}" if source.bibtex else PAPER_CITATION
        cite_what = f"the source of the real rows ({source.name}) and the paper busforge follows"
    else:
        intro = f"""Synthetic breast-ultrasound images with lesion masks and clinical text prompts, rendered by
{made_by}. **Synthetic data: not for clinical use.**"""
        rows_line = f"- Rows per split: {_rows_text(rows)}"
        licence = f"## Licence\n\n`{recipe_license}` (the recipe's `license`)."
        citations = PAPER_CITATION
        cite_what = "the paper busforge follows"
    return f"""---
{meta}---

# {manifest["name"]} {manifest["version"]}

{intro}

- Fingerprint (version identity): `{manifest["fingerprint"]}`
- Renderer: `{renderer.get("backend")}` — identity recorded in `busforge.json` and in every row's `renderer` column
{rows_line}
- Shape prior: `{recipe.get("shape_prior")}`; target domain(s): {domain_list(recipe.get("domain"))}
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

{licence}

## Method and citation

Masks are elastically deformed ellipses following lesion-shape priors; prompts follow the template
of Pan et al. Cite {cite_what}:

```bibtex
{citations}
```
"""


def render_real_card(manifest: dict[str, Any], report: ImportReport) -> str:
    """A short card: Hub metadata, what was imported, how attributes and splits were made."""
    from busforge.dataset.import_report import REPORT_JSON, REPORT_TEXT, fmt_counts
    from busforge.dataset.real_rows import NORMAL_PROMPT, REAL_SEED

    meta = card_metadata(manifest, "other", synthetic=False, real=True)
    source = real_source(report.kind)
    licence = f"\n## Licence and citation\n\n`license: other`: {source.terms}.\n"
    if source.bibtex:
        licence += f"\n```bibtex\n{source.bibtex}\n```\n"
    rows = {name: s["rows"] for name, s in manifest["splits"].items()}
    thresholds = ", ".join(f"`{k}` {v:.4f}" for k, v in report.attribute_thresholds.items())
    return f"""---
{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---

# {manifest["name"]} (real data, imported by busforge {manifest["busforge_version"]})

Real breast-ultrasound images imported with `busforge import {report.kind}`: original resolution,
grey-scale PNG images, binary PNG lesion masks (union of a case's lesion masks), `source = real`.
Source: **{source.name}**{f" ({source.reference})" if source.reference else ""}. **Use it under
{source.terms}.** Not for clinical use.

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
{licence}"""
