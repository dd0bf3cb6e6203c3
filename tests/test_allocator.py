"""Render processes keep their freed memory (busforge/executors/allocator.py)."""

import json
import platform
import subprocess
import sys

import pytest

from busforge.executors import local, render_process
from busforge.executors.allocator import retain_freed_memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)

# Allocates and frees the arrays of profiled renders, and counts the page faults after a warm-up.
CHILD = """
import json, resource, sys
import numpy as np
from busforge.executors.allocator import retain_freed_memory
if sys.argv[1] == "1":
    assert retain_freed_memory()
from busforge.renderers.procedural import render_bmode
from busforge.renderers.profile import load_profile
rows, cols = np.mgrid[0:256, 0:256] / 256
mask = ((cols - 0.5) / 0.2) ** 2 + ((rows - 0.35) / 0.13) ** 2 <= 1.0
profile = load_profile("busi")
def render(seed):
    render_bmode(mask, pathology="benign", echogenicity="heterogeneous", boundary="clear", seed=seed, profile=profile)
for seed in range(3):
    render(seed)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for seed in range(3, 13):
    render(seed)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10))
"""


def faults_per_render(retain: bool) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, "1" if retain else "0"], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_a_render_process_reuses_its_memory_instead_of_faulting_it_in_again():
    # Without the setting, a process may fault in each image's working set again, or not, as
    # glibc's adaptive threshold happened to settle; with it, (nearly) never. A caller that sets
    # nothing up (retain=False: a notebook, a benchmark) gets it from render_bmode itself.
    assert faults_per_render(retain=True) < 20
    assert faults_per_render(retain=False) < 20


class _Renderer:
    batch_size = 1
    in_process = True

    def load(self) -> None:
        pass


def test_every_render_process_sets_it(monkeypatch):
    calls = []
    # The executor's set-up keeps freed memory through the once-per-process call the renderers share.
    monkeypatch.setattr(render_process, "_keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(local, "make_renderer", lambda *args: _Renderer())
    local._init_worker("procedural", {}, 64, 1)  # a pool worker
    assert calls == [True]
    local.RowSource(None, _Renderer(), workers=1, threads=1)  # rendering in this process (and on Ray)
    assert calls == [True, True]


def test_it_says_whether_it_could():
    assert retain_freed_memory() is True  # this suite runs on glibc Linux (CI and the dev machines)
