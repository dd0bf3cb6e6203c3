"""Hostile and broken input, table-driven: each is one line on stderr with the right exit code,
no traceback, and nothing left beside the output (issue 11's list).

The CLI runs in-process (`busforge.cli.main`, as the console script calls it) for speed.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import pytest

from busforge.cli import main

BASE = "name: t\ncount: 4\nimage_size: 64\nshape_prior: birads\n"
BOMB = "".join(
    [f"l0: &l0 [{', '.join(['x'] * 9)}]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)]
)
DEEP = "description: " + "[" * 3000 + "]" * 3000 + "\n"
NAN_PRIOR = json.dumps(
    {
        "format": "busforge-shape-prior",
        "version": 1,
        "stat_names": ["size", "aspect", "solidity", "cx", "cy"],
        "pathologies": {
            "benign": {"stats": {k: [0.1, 0.2] for k in ("size", "aspect", "solidity", "cx", "cy")}}
        },
        "sigma_table": {},
    }
).replace("0.2", "NaN")


def run_cli(monkeypatch, capsys, cwd: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["busforge", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return info.value.code, out, err


# (case, files to write into the project folder, arguments, expected text on stderr, exit code)
CASES = [
    (
        "infinite pathology weight",
        {"r.yaml": BASE + "pathology: {benign: .inf, malignant: 1}\n"},
        ["render", "r.yaml", "--out", "out"],
        "r.yaml: pathology.benign: Input should be a finite number",
        2,
    ),
    (
        "infinite size-bin weight",
        {"r.yaml": BASE + "size_bins: {s: {weight: .inf, range: [0.1, 0.2]}}\n"},
        ["render", "r.yaml", "--out", "out"],
        "r.yaml: size_bins.s.weight: Input should be a finite number",
        2,
    ),
    (
        "NaN size range",
        {"r.yaml": BASE + "size_bins: {s: {weight: 1, range: [.nan, 0.2]}}\n"},
        ["plan", "r.yaml"],
        "r.yaml: size_bins.s.range.0: Input should be a finite number",
        2,
    ),
    (
        "weights overflowing their sum",
        {"r.yaml": BASE + "pathology: {benign: 1.0e308, malignant: 1.0e308}\n"},
        ["plan", "r.yaml"],
        "r.yaml: pathology: weights sum to more than a float holds",
        2,
    ),
    (
        "infinite domain weight",
        {"r.yaml": BASE + "domain: {busi: .inf}\n"},
        ["plan", "r.yaml"],
        "r.yaml: domain.busi: Input should be a finite number",
        2,
    ),
    (
        "boolean count",
        {"r.yaml": BASE.replace("count: 4", "count: true")},
        ["render", "r.yaml", "--out", "out"],
        "r.yaml: count: Input should be a valid integer",
        2,
    ),
    (
        "boolean weight",
        {"r.yaml": BASE + "pathology: {benign: true, malignant: 1}\n"},
        ["plan", "r.yaml"],
        "r.yaml: pathology.benign: Input should be a valid number",
        2,
    ),
    (
        "duplicate key",
        {"r.yaml": BASE + "count: 9\n"},
        ["render", "r.yaml", "--out", "out"],
        "r.yaml: not valid YAML at line 5: key 'count' appears twice",
        2,
    ),
    (
        "version with a newline",
        {"r.yaml": BASE + 'version: "1.0.0\\n"\n'},
        ["plan", "r.yaml"],
        "r.yaml: version: '1.0.0\\n' is not semver",
        2,
    ),
    (
        "alias bomb",
        {"r.yaml": BOMB + BASE + "renderer: {backend: procedural, speckle_scale: *l8}\n"},
        ["render", "r.yaml", "--out", "out"],
        "r.yaml: expands to more than 100,000 values",
        2,
    ),
    (
        "huge format width",
        {"r.yaml": BASE + 'prompt_template: "{pathology:>2000000000}"\n'},
        ["plan", "r.yaml"],
        "r.yaml: prompt_template: placeholder {pathology:>2000000000} has a format spec",
        2,
    ),
    (
        "attribute in a placeholder",
        {"r.yaml": BASE + 'prompt_template: "{pathology.__class__}"\n'},
        ["plan", "r.yaml"],
        "r.yaml: prompt_template: unknown placeholder(s) ['pathology.__class__']",
        2,
    ),
    (
        "conversion in a placeholder",
        {"r.yaml": BASE + 'prompt_template: "{pathology!r}"\n'},
        ["plan", "r.yaml"],
        "r.yaml: prompt_template: placeholder {pathology!r} has a format spec",
        2,
    ),
    (
        "positional placeholder",
        {"r.yaml": BASE + 'prompt_template: "a {} b"\n'},
        ["plan", "r.yaml"],
        "r.yaml: prompt_template: unknown placeholder(s) ['']",
        2,
    ),
    (
        "unbalanced brace",
        {"r.yaml": BASE + 'prompt_template: "a {pathology"\n'},
        ["plan", "r.yaml"],
        "r.yaml: prompt_template: malformed template",
        2,
    ),
    (
        "recipe too large",
        {"r.yaml": BASE + "description: '" + "x" * (5 * 2**20) + "'\n"},
        ["plan", "r.yaml"],
        "r.yaml: 5,242,9",
        2,
    ),
    (
        "not UTF-8",
        {"r.yaml": b"name: t\ncount: 4\ndescription: caf\xe9\n"},
        ["render", "r.yaml", "--out", "out"],
        "r.yaml: not UTF-8 text (byte 33)",
        2,
    ),
    ("deep nesting", {"r.yaml": BASE + DEEP}, ["plan", "r.yaml"], "r.yaml: nested too deeply to read", 2),
    (
        "moderately deep nesting",
        {"r.yaml": BASE + "description: " + "[" * 40 + "]" * 40 + "\n"},
        ["plan", "r.yaml"],
        "r.yaml: nested more than 32 levels deep",
        2,
    ),
    (
        "malformed --set value",
        {"r.yaml": BASE},
        ["render", "r.yaml", "--out", "out", "--set", "name=[x"],
        "--set name: ",
        2,
    ),
    (
        "--set bomb",
        {"r.yaml": BASE},
        ["plan", "r.yaml", "--set", "description=" + BOMB.replace("\n", ", ")],
        "--set description: ",
        2,
    ),
    (
        "NaN in a prior",
        {"r.yaml": BASE.replace("birads", "prior.json"), "prior.json": NAN_PRIOR},
        ["render", "r.yaml", "--out", "out"],
        "prior.json: not valid JSON (NaN is not a finite number",
        2,
    ),
    (
        "real dataset manifest lacking keys",
        {
            "r.yaml": BASE + "real: {dataset: real, ratio: '1:1'}\n",
            "real/busforge.json": json.dumps({"source": "real", "real": {}, "splits": {}}),
        },
        ["render", "r.yaml", "--out", "out"],
        "busforge.json: key 'fingerprint' missing",
        2,
    ),
    (
        "output under a file",
        {"r.yaml": BASE, "afile": "x"},
        ["render", "r.yaml", "--out", "afile/out"],
        "afile/out: ",
        2,
    ),
    (
        "output in the recipes folder",
        {"recipes/r.yaml": BASE},
        ["render", "recipes/r.yaml", "--out", "recipes/x"],
        "recipes/x: inside the recipes folder",
        2,
    ),
    (
        "output is the working directory",
        {"r.yaml": BASE},
        ["render", "r.yaml", "--out", ".", "--force"],
        ".: is the working directory or a folder above it",
        2,
    ),
    (
        "output above the working directory",
        {"r.yaml": BASE},
        ["render", "r.yaml", "--out", "..", "--force"],
        "..: is the working directory or a folder above it",
        2,
    ),
    (
        "verify a malformed manifest",
        {"ds/busforge.json": json.dumps({"splits": {"train": {"shards": [{}]}}})},
        ["verify", "ds"],
        "ds/busforge.json: key 'file' missing",
        2,
    ),
    (
        "verify a manifest that is a list",
        {"ds/busforge.json": "[1, 2]"},
        ["verify", "ds"],
        "ds/busforge.json: not a busforge manifest",
        2,
    ),
    ("unknown option", {}, ["render", "--bogus"], "busforge render: No such option: --bogus", 2),
    ("missing argument", {}, ["render"], "busforge render: Missing argument 'RECIPE'", 2),
    ("unknown command", {}, ["rendr"], "busforge: No such command 'rendr'", 2),
    ("extra argument", {"r.yaml": BASE}, ["plan", "r.yaml", "more"], "unexpected extra argument", 2),
    ("option out of range", {"r.yaml": BASE}, ["render", "r.yaml", "--workers", "-1"], "--workers", 2),
]


@pytest.mark.parametrize(
    ("files", "args", "expected", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_with_its_exit_code_and_leaves_nothing(
    monkeypatch, capsys, tmp_path, files, args, expected, code
):
    project = tmp_path / "project"
    project.mkdir()
    for name, content in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    status, _, err = run_cli(monkeypatch, capsys, project, *args)
    assert status == code, err
    assert expected.lower() in err.lower()
    assert err.count("\n") == 1 and "Traceback" not in err and len(err) < 2100
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]


def test_disk_full_names_the_path_says_rerun_resumes_and_exits_1(monkeypatch, capsys, repo, tmp_path):
    from busforge.dataset import writer

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))

    monkeypatch.setattr(writer.ShardFile, "add", full)
    recipe = str(repo / "recipes/demo.yaml")
    status, _, err = run_cli(
        monkeypatch,
        capsys,
        tmp_path,
        "render",
        recipe,
        "--out",
        "out",
        "--set",
        "count=2",
        "--set",
        "image_size=64",
        "--workers",
        "1",
        "--quiet",
    )
    assert status == 1
    assert err.count("\n") == 1 and ".out.staging/data/train-00000-of-00001.parquet.tmp: no space left" in err
    assert "rerun the same command: it resumes" in err


def test_read_only_output_is_one_line_exit_1(monkeypatch, capsys, repo, tmp_path):
    from busforge.dataset import writer

    def denied(self, fingerprint, force):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.dir))

    monkeypatch.setattr(writer.Staging, "open", denied)
    status, _, err = run_cli(
        monkeypatch,
        capsys,
        tmp_path,
        "render",
        str(repo / "recipes/demo.yaml"),
        "--out",
        "out",
        "--set",
        "count=2",
        "--quiet",
    )
    assert status == 1 and err.count("\n") == 1
    assert ".out.staging: Permission denied; make the folder writable or choose another --out" in err


def test_usage_errors_never_print_a_traceback_and_help_still_works(monkeypatch, capsys, tmp_path):
    status, out, _ = run_cli(monkeypatch, capsys, tmp_path, "render", "--help")
    assert status == 0 and "RECIPE" in out
