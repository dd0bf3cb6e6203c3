"""The clinical text prompt (the paper's template), filled from a sample's attributes."""

from __future__ import annotations

import string

FIELDS = ("pathology", "echogenicity", "boundary")
DEFAULT_PROMPT = (
    "breast ultrasound image of {pathology} tumor with {echogenicity} echogenicity and {boundary} boundary."
)


def check_template(template: str) -> None:
    """Raise ValueError if the template names a field other than pathology/echogenicity/boundary."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"malformed template: {err}") from None
    unknown = sorted(names - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; allowed: {{{'}, {'.join(FIELDS)}}}")


def make_prompt(template: str, *, pathology: str, echogenicity: str, boundary: str) -> str:
    return template.format(pathology=pathology, echogenicity=echogenicity, boundary=boundary)
