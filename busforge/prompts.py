"""The clinical text prompt (the paper's template), filled from a sample's attributes."""

from __future__ import annotations

import string

FIELDS = ("pathology", "echogenicity", "boundary")
DEFAULT_PROMPT = (
    "breast ultrasound image of {pathology} tumor with {echogenicity} echogenicity and {boundary} boundary."
)


def check_template(template: str) -> None:
    """Raise ValueError unless every placeholder is a bare {pathology}, {echogenicity} or {boundary}.

    Format specs, conversions, indexing and attributes are refused: `{pathology:>2000000000}`
    would build a 2 GB prompt, `{pathology.__class__}` reaches into Python objects.
    """
    allowed = f"allowed: {{{'}, {'.join(FIELDS)}}}"
    try:
        fields = [
            (name, spec, conv)
            for _, name, spec, conv in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as err:
        raise ValueError(f"malformed template: {err}; write literal braces as {{{{ and }}}}") from None
    unknown = sorted({name for name, _, _ in fields} - set(FIELDS))
    if unknown:
        shown = [name[:40] for name in unknown[:5]]
        raise ValueError(f"unknown placeholder(s) {shown}; {allowed}")
    for name, spec, conv in fields:
        if spec or conv:
            extra = (f"!{conv}" if conv else "") + (f":{spec[:20]}" if spec else "")
            raise ValueError(
                f"placeholder {{{name}{extra}}} has a format spec or conversion; write {{{name}}}"
            )


def make_prompt(template: str, *, pathology: str, echogenicity: str, boundary: str) -> str:
    return template.format(pathology=pathology, echogenicity=echogenicity, boundary=boundary)
