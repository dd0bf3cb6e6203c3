"""What the GPU path meets that a CPU run with the tiny model does not, emulated on the CPU.

Non-finite decodes (an fp16 overflow), a compiler that fails, ragged batches that would recompile,
`compile: auto` on small runs, fused vs switched adapters per dtype, and deprecated arguments.
The tiny model keeps each test to seconds; the one that traces the real models with dynamo is the
slowest (tens of seconds).
"""

from __future__ import annotations

import functools
import logging
import warnings

import pytest
from test_diffusion import (
    GREY_TOLERANCE,
    make_items,
    max_diff,
    one_torch_thread_and_private_hash_cache,  # noqa: F401  (autouse: one thread, private hash cache)
    renderer,
    tiny_recipe,
)


@pytest.fixture(scope="module")
def items(tiny):
    return make_items(tiny_recipe(tiny, "domain=busi"), 5)


def busi_only(tiny, **options):
    """One domain mapped: its adapter is fused, the path a single-domain run takes (and compiles)."""
    return renderer(tiny_recipe(tiny), lora={"busi": str(tiny / "lora" / "busi")}, **options)


@pytest.fixture(scope="module")
def eager_images(tiny, items):
    """The reference: the 5 samples rendered eagerly, at batch 4 (4 + 1)."""
    return busi_only(tiny, batch_size=4, compile=False).render(items)


# ---------------------------------------------------------------- part 3: non-finite decodes


def test_non_finite_decode_is_redecoded_in_fp32_and_recorded_in_the_row(tiny, items, eager_images):
    import torch

    r = busi_only(tiny, batch_size=4)
    r.load()
    vae = r.pipe.vae
    real_decode = vae.decode

    def overflowing_decode(latents, *args, **kwargs):
        """Like an fp16 decoder that overflows on the second image of a batch."""
        out = real_decode(latents, *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else out.sample
        if sample.shape[0] > 1:
            sample[1] = torch.nan
        return out

    vae.decode = overflowing_decode
    images = r.render(items[:3])
    assert images[1].std() > 1, "the non-finite image became a flat (black) image"
    assert max_diff(images, eager_images[:3]) <= GREY_TOLERANCE
    assert r.provenance(items[1].spec)["vae_redecode"] == "fp32"
    assert "vae_redecode" not in r.provenance(items[0].spec)
    assert "vae_redecode" not in r.provenance(items[2].spec)
    assert "vae_redecode" not in r.identity()  # the dataset's identity does not change


def test_non_finite_latents_fail_the_run_naming_the_sample(tiny, items):
    import torch

    from busforge.renderers.diffusion import NonFiniteImage

    r = busi_only(tiny, batch_size=4)
    r.load()
    unet = r.pipe.unet
    real_forward = unet.forward

    def overflowing_unet(*args, **kwargs):
        """Like an fp16 UNet whose activations overflow for the second sample (both CFG rows)."""
        out = real_forward(*args, **kwargs)
        noise = out[0] if isinstance(out, tuple) else out.sample
        half = noise.shape[0] // 2
        noise[1] = torch.nan
        noise[half + 1] = torch.nan
        return out

    unet.forward = overflowing_unet
    with pytest.raises(NonFiniteImage) as err:
        r.render(items[:3])
    message = str(err.value)
    assert items[1].spec.sample_id in message and f"seed {items[1].spec.seed}" in message
    assert items[0].spec.sample_id not in message and "renderer.dtype" in message


# ---------------------------------------------------------------- part 4: compile


def test_a_compiler_that_fails_falls_back_to_eager_with_one_warning(
    tiny,
    items,
    eager_images,
    monkeypatch,
    caplog,
):
    """No C++ compiler / Triton: inductor raises on the first compiled call; the run goes on eagerly."""
    import torch._inductor.compile_fx

    def broken_compiler(*args, **kwargs):
        raise RuntimeError("simulated: no working C++ compiler (CXX=/bin/false)")

    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", broken_compiler)
    r = busi_only(tiny, batch_size=4, compile=True)
    with caplog.at_level(logging.WARNING, logger="busforge.renderers.diffusion"):
        images = r.render(items)
        images += r.render(items[:1])  # later batches do not try (or warn) again
    warned = [
        rec.getMessage()
        for rec in caplog.records
        if rec.name == "busforge.renderers.diffusion" and rec.levelno >= logging.WARNING
    ]
    assert len(warned) == 1 and "compile" in warned[0] and "eager" in warned[0], warned
    assert "simulated: no working C++ compiler" in warned[0]
    assert not r.compile
    assert max_diff(images, [*eager_images, eager_images[0]]) <= GREY_TOLERANCE


@pytest.mark.slow
def test_ragged_last_batch_is_padded_so_nothing_recompiles(tiny, items, eager_images, monkeypatch):
    """5 samples at batch 4: the last batch is padded to 4, so each module is traced exactly once."""
    import torch

    graphs: list[tuple[int, ...]] = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(tuple(t.shape[0] for t in example_inputs if isinstance(t, torch.Tensor) and t.ndim))
        return graph_module.forward  # run the traced graph as is: no inductor, seconds not minutes

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counting_backend))
    r = busi_only(tiny, batch_size=4, compile=True)
    images = r.render(items)
    assert len(images) == 5
    assert max_diff(images, eager_images) <= GREY_TOLERANCE
    # UNet, ControlNet and VAE decoder: one graph each (before: 3 more for the last batch of 1).
    assert len(graphs) == 3, graphs


def test_compile_auto_only_on_cuda_and_above_the_image_threshold(tiny, monkeypatch):
    from busforge.renderers import diffusion
    from busforge.renderers.diffusion import COMPILE_AUTO_MIN_IMAGES, DiffusionRenderer

    options = {**tiny_recipe(tiny).renderer.options, "batch_size": 4}
    assert not DiffusionRenderer({**options, "device": "cpu"}, 64, samples=10**6).compile  # CPU: never
    monkeypatch.setattr(diffusion, "_resolve_device", lambda device: "cuda")
    assert not DiffusionRenderer(options, 64, samples=COMPILE_AUTO_MIN_IMAGES - 1).compile
    assert not DiffusionRenderer(options, 64).compile  # run size unknown: compile does not pay for sure
    assert DiffusionRenderer(options, 64, samples=COMPILE_AUTO_MIN_IMAGES).compile
    assert DiffusionRenderer({**options, "compile": True}, 64, samples=1).compile
    assert not DiffusionRenderer({**options, "compile": False}, 64, samples=10**6).compile


# ---------------------------------------------------------------- part 6: fused vs switched per dtype


def render_in(tiny, items, dtype: str, fused: bool):
    """Forced to a 16-bit dtype on the CPU (the renderer refuses it there: slow, but it computes)."""
    r = renderer(tiny_recipe(tiny), batch_size=4)
    r.dtype_name = dtype
    if fused:
        r.expect_domains({"busi"})
    images = r.render(items)
    assert (r._fused == "busi") is fused
    return images


@pytest.fixture(scope="module")
def fp32_switched(tiny, items):
    return render_in(tiny, items[:4], "fp32", fused=False)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_fused_and_switched_adapters_agree_as_documented_per_dtype(tiny, items, fp32_switched, dtype):
    from busforge.renderers.diffusion import FUSED_VS_SWITCHED_GREY_LEVELS

    reference = fp32_switched
    switched = render_in(tiny, items[:4], dtype, fused=False)
    fused = render_in(tiny, items[:4], dtype, fused=True)
    assert max_diff(fused, switched) <= FUSED_VS_SWITCHED_GREY_LEVELS[dtype]
    # Fusing costs no accuracy: the fused images are as close to fp32 as the switched ones.
    assert max_diff(fused, reference) <= max_diff(switched, reference) + GREY_TOLERANCE


# ---------------------------------------------------------------- part 7: deprecated arguments


def test_loading_passes_no_deprecated_argument(tiny):
    r = busi_only(tiny)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r.load()
    deprecated = [
        str(w.message) for w in caught if issubclass(w.category, DeprecationWarning | FutureWarning)
    ]
    assert deprecated == []


def test_a_run_stopped_by_a_non_finite_sample_keeps_its_finished_shards(tiny, tmp_path, monkeypatch):
    """Through the executor: shard 0 is finished and kept, shard 1's first sample stops the run."""
    import torch

    from busforge.executors.local import run_render
    from busforge.renderers.diffusion import DiffusionRenderer, NonFiniteImage
    from busforge.sample_plan import make_plan

    recipe = tiny_recipe(tiny, "count=4", "output.rows_per_shard=2", "domain=busi")
    steps = recipe.renderer.options["steps"]
    real_load = DiffusionRenderer.load

    def load_overflowing_after_one_batch(self):
        real_load(self)
        forward, calls = self.pipe.unet.forward, []

        def unet(*args, **kwargs):  # one UNet call per step (UniPC): the second batch overflows
            calls.append(1)
            out = forward(*args, **kwargs)
            if len(calls) > steps:
                out[0][:] = torch.inf
            return out

        self.pipe.unet.forward = unet

    monkeypatch.setattr(DiffusionRenderer, "load", load_overflowing_after_one_batch)
    out = tmp_path / "out"
    with pytest.raises(NonFiniteImage) as err:
        run_render(recipe, out_dir=out, quiet=True)
    second_shard = sorted(make_plan(recipe).specs[2:4], key=lambda s: (s.domain, s.index))[0]
    assert str(err.value).startswith(f"sample {second_shard.sample_id} (seed {second_shard.seed}")
    assert not out.exists()
    monkeypatch.undo()
    outcome = run_render(recipe, out_dir=out, quiet=True)
    assert (outcome.reused_shards, outcome.rendered_shards) == (1, 1)
