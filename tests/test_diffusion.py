"""The diffusion renderer on the tiny random-weight model: CPU, offline, seconds.

Float tolerance: a sample's image is rendered from its own seeded generator, so batch size,
batch position and fused/unfused LoRA change only float rounding; after 8-bit quantisation the
images agree to within GREY_TOLERANCE grey levels (measured: at most 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from busforge.errors import BadInput

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "tiny_diffusion.yaml"
GREY_TOLERANCE = 2
E2E_COUNT = 12  # 6 shards of 2 rows: room to kill a render between two shards
CLI = [sys.executable, "-c", "from busforge.cli import main; main()"]
# The known token ids of OpenAI CLIP's BPE (SD 1.5's tokenizer) for "a photo of a cat".
CLIP_IDS_A_PHOTO_OF_A_CAT = [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread_and_private_hash_cache(tmp_path_factory):
    """One intra-op thread: on a small shared machine, spinning OpenMP threads slow torch 10x+.
    Weight hashes are cached in a temporary folder, not in the user's ~/.cache."""
    import torch

    before = torch.get_num_threads()
    cache_before = os.environ.get("BUSFORGE_CACHE_DIR")
    torch.set_num_threads(1)
    os.environ["BUSFORGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    torch.set_num_threads(before)
    if cache_before is None:
        os.environ.pop("BUSFORGE_CACHE_DIR", None)
    else:
        os.environ["BUSFORGE_CACHE_DIR"] = cache_before


def model_overrides(tiny: Path) -> list[str]:
    return [
        f"renderer.base={tiny / 'base'}",
        f"renderer.controlnet={tiny / 'controlnet'}",
        f"renderer.lora.busi={tiny / 'lora' / 'busi'}",
        f"renderer.lora.udiat={tiny / 'lora' / 'udiat'}",
    ]


def tiny_recipe(tiny: Path, *extra: str):
    from busforge.recipe import load_recipe

    return load_recipe(RECIPE, [*model_overrides(tiny), *extra])


def make_items(recipe, count: int | None = None):
    from busforge.executors.rows import make_masks
    from busforge.renderers.base import RenderItem
    from busforge.sample_plan import make_plan

    specs = make_plan(recipe).specs[:count]
    masks = make_masks(specs, recipe.image_size)
    return [RenderItem(spec=s, mask=m) for s, (m, _) in zip(specs, masks, strict=True)]


def renderer(recipe, **options):
    from busforge.renderers.diffusion import DiffusionRenderer

    return DiffusionRenderer({**recipe.renderer.options, **options}, recipe.image_size)


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def busi_items(tiny):
    return make_items(tiny_recipe(tiny, "domain=busi"), 4)


@pytest.fixture(scope="module")
def busi_images(tiny, busi_items):
    """The first 4 busi samples rendered at batch 4 (two domains mapped: adapters switched, not fused)."""
    r = renderer(tiny_recipe(tiny), batch_size=4)
    return r.render(busi_items)


# ---------------------------------------------------------------- the tiny model itself


def test_tiny_model_has_real_clip_tokenizer_and_is_a_function_of_its_seed(tiny, tmp_path):
    from transformers import CLIPTokenizer

    from busforge.models.tiny import write_tiny_model
    from busforge.models.weights import folder_sha256

    tokenizer = CLIPTokenizer.from_pretrained(tiny / "base" / "tokenizer")
    assert tokenizer("a photo of a cat").input_ids == CLIP_IDS_A_PHOTO_OF_A_CAT
    assert len(tokenizer) == 49408

    again = tmp_path / "again"
    write_tiny_model(again, ["busi"])
    assert folder_sha256(again / "base") == folder_sha256(tiny / "base")
    assert folder_sha256(again / "lora" / "busi") == folder_sha256(tiny / "lora" / "busi")
    assert folder_sha256(tiny / "lora" / "busi") != folder_sha256(tiny / "lora" / "udiat")


# ---------------------------------------------------------------- options and identity


def test_unknown_or_bad_options_are_one_line_errors(tiny):
    recipe = tiny_recipe(tiny)
    with pytest.raises(
        BadInput, match=r"^recipe: renderer\.sampler: unknown option .*allowed: base, controlnet"
    ):
        renderer(recipe, sampler="unipc")
    with pytest.raises(BadInput, match=r"renderer\.steps: got 0"):
        renderer(recipe, steps=0)
    with pytest.raises(BadInput, match=r"renderer\.batch_size: got 'big'; use a whole number"):
        renderer(recipe, batch_size="big")
    with pytest.raises(BadInput, match=r"renderer\.dtype: fp16 on the CPU .*use fp32 or auto"):
        renderer(recipe, dtype="fp16", device="cpu")
    with pytest.raises(BadInput, match=r"renderer\.base: no folder .*hf download stable-diffusion-v1-5"):
        renderer(recipe, base=str(tiny / "no-such-folder"))
    with pytest.raises(BadInput, match=r"renderer\.controlnet: required"):
        from busforge.renderers.diffusion import DiffusionRenderer

        DiffusionRenderer({"base": str(tiny / "base")}, 64)
    with pytest.raises(BadInput, match=r"renderer\.lora\.busi: .*no pytorch_lora_weights\.safetensors"):
        renderer(recipe, lora={"busi": str(tiny / "base")})


def test_identity_names_weights_and_settings_and_provenance_names_one_adapter(tiny):
    from busforge.models.weights import folder_sha256

    recipe = tiny_recipe(tiny)
    r = renderer(recipe)
    identity = r.identity()
    assert identity["base"] == {"sha256": folder_sha256(tiny / "base")}
    assert identity["controlnet"] == {"sha256": folder_sha256(tiny / "controlnet")}
    assert identity["lora"]["udiat"] == {"sha256": folder_sha256(tiny / "lora" / "udiat")}
    assert (identity["scheduler"], identity["steps"], identity["dtype"]) == ("unipc", 4, "fp32")
    assert identity["guidance_scale"] == 7.5 and identity["controlnet_scale"] == 1.0
    assert renderer(recipe, steps=5).identity() != identity
    assert renderer(recipe, scheduler="ddim").identity() != identity

    spec = make_items(tiny_recipe(tiny, "domain=udiat"), 1)[0].spec
    row = r.provenance(spec)
    assert row["lora"] == {"domain": "udiat", "adapter": identity["lora"]["udiat"]}
    assert row["base"] == identity["base"]


def test_hub_model_in_cache_is_pinned_to_its_commit(tmp_path, monkeypatch):
    """A Hub id resolves offline through the local cache, and its identity is id + commit."""
    from huggingface_hub import constants

    from busforge.models.weights import resolve_model

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-sd"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    source = resolve_model("someone/tiny-sd", "renderer.base", "model_index.json")
    assert source.identity == {"hub_id": "someone/tiny-sd", "revision": commit}
    assert (source.pretrained, source.revision) == ("someone/tiny-sd", commit)
    with pytest.raises(BadInput, match=r"hf download someone/other"):
        resolve_model("someone/other", "renderer.base", "model_index.json")


def test_pinned_hub_revision_is_named_in_the_download_hint():
    from busforge.models.weights import resolve_model

    with pytest.raises(BadInput, match=r"hf download someone/model --revision v1\.0`"):
        resolve_model("someone/model@v1.0", "renderer.base", "model_index.json")


def test_weight_hashes_are_cached_until_the_file_changes(tmp_path):
    from busforge.models.weights import folder_sha256

    folder = tmp_path / "weights"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"first")
    (folder / "README.md").write_text("not part of the identity")
    first = folder_sha256(folder)
    cache_file = Path(os.environ["BUSFORGE_CACHE_DIR"]) / "weight-hashes.json"
    cache = json.loads(cache_file.read_text())
    assert cache["files"][str(weights.resolve())]["sha256"] == hashlib.sha256(b"first").hexdigest()

    (folder / "README.md").write_text("edited")
    assert folder_sha256(folder) == first
    # Same size and mtime: the cached digest is trusted (that is what makes multi-GB weights cheap).
    stat = weights.stat()
    weights.write_bytes(b"fir5t")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert folder_sha256(folder) == first
    weights.write_bytes(b"changed")
    assert folder_sha256(folder) != first


def test_training_checkpoints_are_not_part_of_a_model_folders_identity(tmp_path):
    from busforge.models.weights import folder_sha256

    folder = tmp_path / "controlnet"
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    (folder / "checkpoints" / "checkpoint-2" / "model.safetensors").write_bytes(b"step 2")
    with_checkpoint = folder_sha256(folder)
    shutil.rmtree(folder / "checkpoints")  # what a user does to free space once training is done
    assert folder_sha256(folder) == with_checkpoint
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"other weights")
    assert folder_sha256(folder) != with_checkpoint


def test_missing_model_offline_fails_before_rendering_with_exit_2(tiny, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    overrides = [a for o in model_overrides(tiny) for a in ("--set", o)]
    result = subprocess.run(
        [
            *CLI,
            "render",
            str(RECIPE),
            *overrides,
            "--set",
            "renderer.base=nobody/no-such-model",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    assert error_lines[0].startswith(f"error: {RECIPE}: renderer.base: model 'nobody/no-such-model'")
    assert "hf download nobody/no-such-model" in error_lines[0]
    assert not out.exists() and not (tmp_path / ".out.staging").exists()


def test_everything_a_run_lacks_is_one_message(tiny, tmp_path, monkeypatch):
    """Base not cached, ControlNet and a LoRA folder not trained yet, a domain without LoRA, no GPU."""
    from busforge.planning import prepare

    monkeypatch.chdir(tmp_path)
    recipe = tiny_recipe(
        tiny,
        "renderer.base=nobody/no-such-model",
        "renderer.controlnet=models/controlnet-busi",  # reads as a Hub id too
        "renderer.lora.udiat=models/lora-udiat",
        "domain.stu=1",
        "count=500",
    )
    with pytest.raises(BadInput) as err:
        prepare(recipe)
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        f"{RECIPE}: renderer: the diffusion renderer lacks 5 things: (1) "
    )
    assert "renderer.base: model 'nobody/no-such-model' is not in the local Hugging Face cache" in message
    assert "`hf download nobody/no-such-model`" in message
    assert "busforge train controlnet data/real/NAME --out models/controlnet-busi" in message
    assert "busforge train lora data/real/NAME --domain udiat --out models/lora-udiat" in message
    assert "renderer.lora.stu: no LoRA adapter for domain 'stu'" in message
    assert "renderer.device: no GPU found for 500 samples" in message
    # A small run, or one that asks for the CPU, is not refused for want of a GPU.
    prepare(tiny_recipe(tiny, "count=100"))
    prepare(tiny_recipe(tiny, "count=500", "renderer.device=cpu"))


def test_no_network_fails_at_once_without_trying_the_hub(tmp_path, monkeypatch):
    """Not offline by configuration, but nothing answers: one quick connect decides, no download retries."""
    import huggingface_hub
    from huggingface_hub import constants

    from busforge.models import weights

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    weights.hub_unreachable.cache_clear()
    calls = []
    real = huggingface_hub.snapshot_download

    def spy(*args, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    try:
        with pytest.raises(
            BadInput, match=r"the Hub is offline here: cannot reach 127\.0\.0\.1:9 .*`hf download a/b`"
        ):
            weights.resolve_model("a/b", "renderer.base", "model_index.json")
    finally:
        weights.hub_unreachable.cache_clear()
    assert calls == [True]  # the local cache only, never the network


# ---------------------------------------------------------------- determinism and adapters


def test_images_do_not_depend_on_batch_size_or_position(tiny, busi_items, busi_images):
    one_by_one = renderer(tiny_recipe(tiny), batch_size=1).render(busi_items)
    assert max_diff(one_by_one, busi_images) <= GREY_TOLERANCE

    # The same sample twice in one batch gets the same image; different seeds, different images.
    first = busi_items[0]
    twin = replace(first)
    other_seed = replace(first, spec=replace(first.spec, seed=first.spec.seed + 1))
    images = renderer(tiny_recipe(tiny), batch_size=4).render([first, other_seed, twin])
    assert max_diff([images[0]], [images[2]]) <= GREY_TOLERANCE
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 5
    assert all(img.shape == (64, 64) and img.dtype == np.uint8 for img in images)


def test_adapters_change_the_output_and_fused_equals_unfused(tiny, busi_items, busi_images):
    recipe = tiny_recipe(tiny)
    # A run of one domain fuses its adapter: announced by the executor, or when only one is mapped.
    fused = renderer(recipe, batch_size=4)
    fused.expect_domains({"busi"})
    fused_busi = fused.render(busi_items)
    assert fused._fused == "busi"
    assert max_diff(fused_busi, busi_images) <= GREY_TOLERANCE
    only_busi = renderer(recipe, lora={"busi": str(tiny / "lora" / "busi")})
    only_busi.render(busi_items[:1])
    assert only_busi._fused == "busi"

    unfused = renderer(recipe, batch_size=4)
    unfused.render(busi_items[:1])
    assert unfused._fused is None

    udiat_items = [replace(i, spec=replace(i.spec, domain="udiat")) for i in busi_items]
    udiat = unfused.render(udiat_items)
    base_only = renderer(recipe, lora={"busi": None}).render(busi_items)
    for a, b in ((udiat, busi_images), (base_only, busi_images), (base_only, udiat)):
        assert np.mean([np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b, strict=True)]) > 5

    # A batch mixing domains is split by domain, and each image is the one its domain gives alone.
    mixed = [busi_items[0], udiat_items[1], busi_items[2], udiat_items[3]]
    images = unfused.render(mixed)
    assert max_diff(images, [busi_images[0], udiat[1], busi_images[2], udiat[3]]) <= GREY_TOLERANCE


def test_domain_without_adapter_is_an_error_unless_mapped_to_null(tiny, busi_items):
    recipe = tiny_recipe(tiny)
    r = renderer(recipe, lora={"udiat": str(tiny / "lora" / "udiat")})
    with pytest.raises(BadInput, match=r"renderer\.lora\.busi: no LoRA adapter for domain 'busi'.*null"):
        r.expect_domains({"busi", "udiat"})
    with pytest.raises(BadInput, match=r"renderer\.lora\.busi: no LoRA adapter for domain 'busi'.*null"):
        r.render(busi_items[:1])


def test_out_of_memory_halves_the_batch_and_keeps_finished_samples(tiny, busi_items, busi_images):
    import torch

    r = renderer(tiny_recipe(tiny), batch_size=4)
    r.load()
    real_pipe = r.pipe
    calls: list[int] = []

    class SmallGpu:
        """Runs out of memory above 2 images per call, like a card that is too small."""

        def __getattr__(self, name):
            return getattr(real_pipe, name)

        def __call__(self, **kwargs):
            calls.append(len(kwargs["prompt"]))
            if len(kwargs["prompt"]) > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return real_pipe(**kwargs)

    r.pipe = SmallGpu()
    images = r.render(busi_items)
    assert calls == [4, 2, 2]
    assert max_diff(images, busi_images) <= GREY_TOLERANCE
    r.render(busi_items)  # the smaller size is remembered: no second failure
    assert calls == [4, 2, 2, 2, 2]


# ---------------------------------------------------------------- end to end through the executor


@pytest.fixture(scope="module")
def rendered(tiny, tmp_path_factory):
    """The shipped two-domain recipe, rendered in one run."""
    from busforge.executors.local import run_render

    recipe = tiny_recipe(tiny, f"count={E2E_COUNT}", "output.rows_per_shard=2")
    outcome = run_render(recipe, out_dir=tmp_path_factory.mktemp("render") / "tiny", quiet=True)
    return recipe, outcome


def test_end_to_end_two_domains_load_dataset(rendered):
    import datasets

    from busforge.dataset.features import dataset_features
    from busforge.dataset.manifest import read_manifest
    from busforge.sample_plan import make_plan
    from busforge.shapes.lesion import draw_mask

    recipe, outcome = rendered
    ds = datasets.load_dataset(str(outcome.out_dir), split="train")
    assert ds.features == dataset_features()
    # Rows follow the plan, ordered within each shard by (domain, index) so batches share a LoRA.
    per_shard = recipe.output.rows_per_shard
    planned = make_plan(recipe).specs
    specs = [
        spec
        for start in range(0, len(planned), per_shard)
        for spec in sorted(planned[start : start + per_shard], key=lambda s: (s.domain, s.index))
    ]
    assert ds["prompt"] == [s.prompt for s in specs]
    assert ds["domain"] == [s.domain for s in specs] and set(ds["domain"]) == {"busi", "udiat"}
    assert ds["sample_id"] == [s.sample_id for s in specs] and ds["seed"] == [s.seed for s in specs]
    manifest = read_manifest(outcome.out_dir)
    assert set(manifest["renderer"]["lora"]) == {"busi", "udiat"}
    for row, spec in zip(ds, specs, strict=True):
        expected_mask, _ = draw_mask(spec.shape, recipe.image_size, spec.seed, spec.size_range)
        assert np.array_equal(np.asarray(row["mask"]) > 0, expected_mask)
        provenance = json.loads(row["renderer"])
        assert provenance["lora"] == {
            "domain": spec.domain,
            "adapter": manifest["renderer"]["lora"][spec.domain],
        }
        assert provenance["base"] == manifest["renderer"]["base"]
        image = np.asarray(row["image"])
        assert image.shape == (64, 64) and image.std() > 1


# The render of the test below SIGKILLs itself at its first batch after shard 0 is complete: mid-run
# whatever the machine's load (a kill from outside, timed by polling, missed or overshot it).
KILL_AFTER_FIRST_SHARD = """
import os, signal, sys
from pathlib import Path
from busforge.renderers.diffusion import DiffusionRenderer
marker, render = Path(os.environ["BUSFORGE_TEST_KILL_AFTER"]), DiffusionRenderer.render
def render_or_die(self, items):
    if marker.exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return render(self, items)
DiffusionRenderer.render = render_or_die
from busforge.cli import main
main()
"""


def test_resume_after_sigkill_gives_identical_shards(tiny, rendered, tmp_path):
    from busforge.dataset.manifest import read_manifest
    from busforge.executors.local import run_render

    out = tmp_path / "killed"
    marker = tmp_path / ".killed.staging" / ".busforge" / "shards" / "train-00000.json"
    overrides = [f"count={E2E_COUNT}", "output.rows_per_shard=2", *model_overrides(tiny)]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "BUSFORGE_TEST_KILL_AFTER": str(marker),
    }
    command = [
        sys.executable,
        "-c",
        KILL_AFTER_FIRST_SHARD,
        "render",
        str(RECIPE),
        "--out",
        str(out),
        "--quiet",
    ]
    command += [a for o in overrides for a in ("--set", o)]
    # No deadline to race: the child ends itself; the timeout only guards against a hang.
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert marker.exists() and not out.exists(), "the render was not killed mid-way"
    staged = sorted(p.name for p in marker.parent.glob("train-*.json"))
    assert staged == ["train-00000.json"], staged  # killed in the second of 6 shards

    outcome = run_render(tiny_recipe(tiny, *overrides[:2]), out_dir=out, quiet=True)
    assert outcome.reused_shards >= 1
    reference = read_manifest(rendered[1].out_dir)
    resumed = read_manifest(out)
    assert resumed["fingerprint"] == reference["fingerprint"]
    assert [s["sha256"] for s in resumed["splits"]["train"]["shards"]] == [
        s["sha256"] for s in reference["splits"]["train"]["shards"]
    ]


def test_mask_is_resized_nearest_to_a_binary_conditioning_image():
    from busforge.renderers.diffusion import _mask_rgb

    mask = np.zeros((32, 32), dtype=bool)
    mask[8:16, 4:20] = True
    condition = _mask_rgb(mask, 64)
    assert condition.shape == (64, 64, 3) and set(np.unique(condition)) == {0, 255}
    assert np.array_equal(condition[:, :, 0] > 0, np.kron(mask, np.ones((2, 2), dtype=bool)))


def test_tiny_render_prints_no_warnings_and_quiet_silences_the_libraries(tiny, tmp_path, capfd):
    """A normal two-domain render warns about nothing; --quiet leaves only busforge's result line."""
    import warnings

    from busforge import quiet
    from busforge.cli import app

    args = ["render", str(RECIPE), *(a for o in model_overrides(tiny) for a in ("--set", o)), "--limit", "4"]
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app([*args, "--out", str(tmp_path / "loud")], standalone_mode=False)
    loud = capfd.readouterr()
    # What a user's terminal shows: Python hides DeprecationWarnings raised outside __main__.
    shown = [w for w in caught if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)]
    assert [f"{w.filename}: {w.message}" for w in shown] == []
    assert not [
        line for line in loud.err.splitlines() if "warn" in line.lower() or "deprecat" in line.lower()
    ]
    assert "No LoRA keys" not in loud.err
    try:
        app([*args, "--out", str(tmp_path / "quiet"), "--quiet"], standalone_mode=False)
        silent = capfd.readouterr()
    finally:
        quiet.set_quiet(False)
    assert silent.err == ""
    assert silent.out.count("\n") == 1 and "4 rows" in silent.out
