"""Thread pools sized per render process: with no thread variables in the environment, BLAS runs
one thread in every render process (the default was one per core in each, cores² in all)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from busforge.executors.threads import available_cores, in_process_threads, pool_worker_threads

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Runs in a fresh interpreter without the thread variables (the test process has OMP_NUM_THREADS=1).
PROBE = """
import json, sys
from threadpoolctl import threadpool_info
from busforge.executors.local import RowSource
from busforge.planning import prepare
from busforge.recipe import load_recipe

def blas_threads(_=None):
    return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})

prepared = prepare(load_recipe(sys.argv[1], ["count=4", "image_size=64"]))
source = RowSource(prepared.recipe, prepared.renderer, workers=2)
workers = list(source.pool.map(blas_threads, [None] * 4))
source.close()
RowSource(prepared.recipe, prepared.renderer, workers=1)
print(json.dumps({"workers": workers, "in_process": blas_threads()}))
"""


def test_budgets_split_the_cores():
    assert pool_worker_threads(2, cores=16) == 8
    assert pool_worker_threads(3, cores=2) == 1
    assert in_process_threads(cores=2) == 1
    assert in_process_threads(cores=16) == 15


@pytest.mark.skipif(available_cores() < 2, reason="needs two cores to tell a split budget from the default")
def test_render_processes_size_their_blas_pools_without_environment_variables(repo):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = str(repo)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(repo / "recipes/demo.yaml")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["workers"] == [[1]] * 4  # BLAS: one thread per process, so bytes never depend on cores
    assert found["in_process"] == [1]


def test_benchmarks_set_nothing_up(repo):
    # A benchmark times the user's command (or call) as typed: no thread variables, no thread count
    # of its own, and no call of busforge's executor set-up; the renderers set themselves up.
    # (render_procedural's child times an older checkout as that version's executor set it up.)
    scripts = sorted((repo / "benchmarks").glob("*.py"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        if script.name == "render_procedural.py":
            text = text.replace(
                text[text.index('CHILD = """') : text.index('"""', text.index('CHILD = """') + 11)], ""
            )
        assert not any(name in text for name in THREAD_VARIABLES), script.name
        assert not re.search(r"(limit_threads|set_num_threads|threadpool_limits)\(", text), script.name
        assert "prepare_render_process" not in text, script.name


# Runs in a fresh interpreter, no thread variables: BLAS keeps its default thread count.
SELF_SET_UP = """
import json
import numpy as np
from threadpoolctl import threadpool_info
from busforge.renderers.procedural import render_bmode

import busforge.renderers.procedural as procedural

def blas():
    return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})

inside = []
tissue = procedural._tissue_reflectivity
def spy(*args):  # BLAS's thread count while render_bmode runs (its textures are matrix products)
    inside.append(blas())
    return tissue(*args)
procedural._tissue_reflectivity = spy

rows, cols = np.mgrid[0:256, 0:256] / 256
mask = ((cols - 0.5) / 0.2) ** 2 + ((rows - 0.4) / 0.12) ** 2 <= 1.0
def render():
    render_bmode(mask, pathology="malignant", echogenicity="heterogeneous", boundary="unclear", seed=3)
before = blas()
render()
print(json.dumps({"before": before, "inside": inside[0], "after": blas()}))
"""


@pytest.mark.skipif(
    available_cores() < 2, reason="needs two cores for BLAS to default to more than one thread"
)
def test_render_bmode_renders_as_a_render_process_whoever_calls_it(repo):
    """A caller that set nothing up (a notebook, a benchmark) renders with BLAS on one thread, as
    `busforge render`'s processes do, and has its own BLAS thread count back after."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = str(repo)
    out = subprocess.run(
        [sys.executable, "-c", SELF_SET_UP], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert max(found["before"]) > 1 and found["after"] == found["before"]
    assert found["inside"] == [1]
