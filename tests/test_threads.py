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


def test_benchmarks_set_up_their_process_as_busforge_does(repo):
    # A benchmark times the user's command as typed: it sets no thread variables and picks no thread
    # count of its own; where it renders in its own process, busforge sets that process up
    # (executors.render_process), as `busforge render` does.
    scripts = sorted((repo / "benchmarks").glob("*.py"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        assert not any(name in text for name in THREAD_VARIABLES), script.name
        assert not re.search(r"(limit_threads|set_num_threads|threadpool_limits)\(\s*\d", text), script.name
    for name in ("render_procedural.py", "masks.py", "render_diffusion.py"):
        assert "prepare_render_process(" in (repo / "benchmarks" / name).read_text(), name
