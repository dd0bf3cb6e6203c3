"""`--engine ray`: the same shard bytes as the local engine on a two-node Ray cluster on this machine,
through actor deaths and a killed driver; without Ray, a one-line error naming the extra.

One cluster (a head and a second node, one CPU each, in their own temp dir) serves the module:
Ray's start-up is the slow part on a small machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from busforge.dataset.verify import verify_dataset
from busforge.executors.local import run_render
from busforge.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]

BUSFORGE = [sys.executable, "-c", "from busforge.cli import main; main()"]
OVERRIDES = ["count=120", "image_size=128", "output.rows_per_shard=15"]  # 8 shards
ACTOR = "ray::ShardRenderer"


def shard_hashes(root: Path) -> dict[str, str]:
    from busforge.dataset.hashing import sha256_file

    return {p.name: sha256_file(p) for p in sorted((root / "data").glob("*.parquet"))}


def markers(out: Path) -> list[Path]:
    return sorted((out.parent / f".{out.name}.staging" / ".busforge" / "shards").glob("*.json"))


def actor_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith(ACTOR):
            found.append(proc)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(ray, address: str, head: subprocess.Popen) -> None:
    """Connect the driver once the head answers: on a loaded machine it can take a minute to come up."""
    deadline = time.monotonic() + 180
    while True:
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except ConnectionError:
            ray.shutdown()
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, f"the Ray head at {address} did not answer in 180 s"
            time.sleep(1)


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install busforge[ray])")
    temp = Path(tempfile.mkdtemp(prefix="bfray-", dir="/tmp"))  # short: Ray's socket paths are limited
    address = f"127.0.0.1:{free_port()}"
    # A throw-away cluster on this machine: no auth token (the driver could race the head's new one).
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--port", address.split(":")[1], "--include-dashboard=false",
         "--temp-dir", str(temp / "head"), *common],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    nodes = [head]
    try:
        connect(ray, address, head)
        second = subprocess.Popen(
            [ray_cli, "start", "--address", address, "--temp-dir", str(temp / "node2"), *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        nodes.append(second)
        deadline = time.monotonic() + 120
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            assert time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(1)
        yield address
    finally:
        ray.shutdown()
        for proc in reversed(nodes):  # `ray start --block` stops its node's processes when it ends
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(temp, ignore_errors=True)  # the nodes' logs and sockets


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("ray_ref") / "local"
    run_render(load_recipe(REPO / "recipes/demo.yaml", OVERRIDES), out_dir=out, workers=1, quiet=True)
    return shard_hashes(out)


def test_two_node_cluster_renders_on_both_nodes_the_local_bytes(cluster, repo, tmp_path, local_reference):
    from busforge.executors.ray import run_render_ray

    out = tmp_path / "ray"
    outcome = run_render_ray(
        load_recipe(repo / "recipes/demo.yaml", OVERRIDES), out_dir=out, ray_workers=2, quiet=True
    )
    assert shard_hashes(out) == local_reference
    assert verify_dataset(out) == []
    assert outcome.rendered_shards == len(local_reference) == 8
    assert len(set(outcome.nodes.values())) == 2, outcome.nodes  # both nodes rendered shards


def test_a_killed_worker_loses_only_its_shard(cluster, repo, tmp_path, local_reference):
    from busforge.executors.ray import run_render_ray

    out = tmp_path / "ray"
    killed: list[int] = []

    def kill_one_busy_actor() -> None:
        deadline = time.monotonic() + 120
        while not markers(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        for proc in actor_processes():
            if "render_shard" in " ".join(proc.cmdline()):
                proc.kill()
                killed.append(proc.pid)
                return

    killer = threading.Thread(target=kill_one_busy_actor)
    killer.start()
    outcome = run_render_ray(
        load_recipe(repo / "recipes/demo.yaml", OVERRIDES), out_dir=out, ray_workers=2, quiet=True
    )
    killer.join()
    assert killed, "no actor was rendering when the first shard finished"
    assert outcome.retried >= 1
    assert shard_hashes(out) == local_reference
    assert verify_dataset(out) == []


def test_driver_sigkill_then_rerun_renders_only_the_unfinished_shards(
    cluster, repo, tmp_path, local_reference
):
    from busforge.executors.ray import run_render_ray

    out = tmp_path / "ray"
    recipe = repo / "recipes/demo.yaml"
    sets = [arg for override in OVERRIDES for arg in ("--set", override)]
    driver = subprocess.Popen(
        [*BUSFORGE, "render", str(recipe), *sets, "--engine", "ray", "--address", cluster, "--ray-workers", "2",
         "--out", str(out), "--quiet"],
        env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while len(markers(out)) < 2 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.poll() is None, "the driver finished before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 60  # Ray ends the dead driver's actors; then nothing writes any more
    while actor_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    finished = {m.stem for m in markers(out)}  # e.g. train-00003
    assert 2 <= len(finished) < 8
    stamps = {
        p.name: p.stat().st_mtime_ns for p in (out.parent / f".{out.name}.staging" / "data").glob("*.parquet")
    }

    outcome = run_render_ray(load_recipe(recipe, OVERRIDES), out_dir=out, ray_workers=2, quiet=True)
    assert outcome.reused_shards == len(finished)
    assert outcome.rendered_shards == 8 - len(finished)
    assert shard_hashes(out) == local_reference
    for name, stamp in stamps.items():  # finished shards were kept, not written again
        if any(name.startswith(stem) for stem in finished):
            assert (out / "data" / name).stat().st_mtime_ns == stamp


def test_mixed_real_and_synthetic_recipe_matches_the_local_engine(cluster, shared_data, tmp_path):
    from busforge.dataset.real import import_real
    from busforge.executors.ray import run_render_ray
    from busforge.recipe import recipe_from_dict

    real = tmp_path / "busi"
    import_real("busi", shared_data / "busi_mini" / "Dataset_BUSI_with_GT", real, workers=1)
    data = {
        "name": "mix",
        "count": 1,  # the ratio decides
        "image_size": 64,
        "pathology": "match_real",
        "real": {"dataset": str(real), "ratio": "1:2"},
        "output": {"rows_per_shard": 10},
    }
    run_render(recipe_from_dict(data, "mix.yaml"), out_dir=tmp_path / "local", workers=1, quiet=True)
    run_render_ray(recipe_from_dict(data, "mix.yaml"), out_dir=tmp_path / "ray", ray_workers=2, quiet=True)
    assert shard_hashes(tmp_path / "ray") == shard_hashes(tmp_path / "local")
    assert len(shard_hashes(tmp_path / "local")) > 2


def test_without_ray_the_engine_is_a_one_line_error_naming_the_extra(repo, tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"  # what an environment without the extra looks like
        "from busforge.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "render", str(repo / "recipes/demo.yaml"), "--engine", "ray",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "pip install busforge[ray]" in result.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*staging"))


def test_the_local_engine_never_imports_ray(repo, tmp_path):
    code = (
        "import sys\n"
        "from busforge.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, "render", str(repo / "recipes/demo.yaml"), "--set", "count=4",
         "--set", "image_size=64", "--workers", "1", "--out", str(tmp_path / "out"), "--quiet"],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip


def test_actors_build_their_renderer_as_the_local_engine_does(repo, tmp_path, monkeypatch):
    """An actor's renderer is told what the local engine's is (the whole plan's domains and size,
    which `compile: auto` and the start-up checks weigh), so both decide alike."""
    from busforge.executors.ray import ShardRenderer
    from busforge.planning import prepare
    from busforge.renderers import base

    told: list[dict] = []
    make_renderer = base.make_renderer

    def spy(*args, **kwargs):
        told.append(kwargs)
        return make_renderer(*args, **kwargs)

    monkeypatch.setattr(base, "make_renderer", spy)
    monkeypatch.setattr("busforge.planning.make_renderer", spy)
    prepared = prepare(load_recipe(repo / "recipes/demo.yaml", OVERRIDES))
    ShardRenderer(prepared.recipe, str(tmp_path), "probe", 1, prepared.renderer.identity(), prepared.hints)
    local, actor = told
    assert actor == local == {"domains": {"busi"}, "samples": 120}


def test_an_actor_whose_renderer_refuses_says_why_instead_of_dying(tiny, repo, tmp_path, monkeypatch):
    """A node without a GPU for a large diffusion run: the actor keeps the one-line refusal for its
    first shard (an exception in its constructor would only make Ray restart it)."""
    from busforge.executors.ray import ShardRenderer
    from busforge.planning import PlanHints

    monkeypatch.setenv("BUSFORGE_CACHE_DIR", str(tmp_path / "cache"))
    models = [
        f"renderer.base={tiny / 'base'}",
        f"renderer.controlnet={tiny / 'controlnet'}",
        f"renderer.lora.busi={tiny / 'lora' / 'busi'}",
        f"renderer.lora.udiat={tiny / 'lora' / 'udiat'}",
    ]
    recipe = load_recipe(repo / "recipes/tiny_diffusion.yaml", models)
    actor = ShardRenderer(recipe, str(tmp_path), "probe", 1, {}, PlanHints(frozenset({"busi"}), 5000))
    assert actor.source is None
    assert "no GPU found for 5000 samples" in actor.refused and "renderer.device" in actor.refused
