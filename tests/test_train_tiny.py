"""The trainers on the tiny model (CPU, offline): loss, resume, NaN stop, LoRA isolation, renderer use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train_checkpoint import pickled_files
from test_train_fixtures import fixture_dataset, scramble_global_generators, write_tiny

from busforge.errors import BadInput
from busforge.prompts import DEFAULT_PROMPT
from busforge.train.checkpoint import FILES as CHECKPOINT_FILES
from busforge.train.controlnet import ControlNetRun, controlnet_from_unet, train_controlnet
from busforge.train.loop import TrainingDiverged
from busforge.train.lora import LORA_FILE, LoraRun, train_lora
from busforge.train.objective import DiffusionLoss

SIZE = 32  # the tiny VAE halves: 16x16 latents keep a step at ~0.1 s on one core
SMALL = {
    "resolution": SIZE,
    "batch_size": 2,
    "effective_batch": 4,
    "warmup_steps": 1,
    "learning_rate": 1e-3,
    "num_workers": 0,
    "validation_images": 0,
    "validation_steps": 2,
    "quiet": True,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they lose 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def real_like_dataset(tmp_path_factory) -> Path:
    return fixture_dataset(tmp_path_factory.mktemp("real") / "ds")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny") / "model")


def controlnet_run(dataset: Path, model: Path, out: Path, **kw) -> ControlNetRun:
    return ControlNetRun(dataset=dataset, out=out, base=str(model / "base"), **{**SMALL, **kw})


def lora_run(dataset: Path, model: Path, out: Path, **kw) -> LoraRun:
    return LoraRun(
        dataset=dataset,
        out=out,
        domain="busi",
        base=str(model / "base"),
        rank=2,
        **{"controlnet": str(model / "controlnet"), **SMALL, **kw},
    )


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def fixed_batch(dataset: Path):
    from busforge.train.data import TrainingSet, collate, read_examples

    examples = read_examples(dataset, "train", DEFAULT_PROMPT)
    return collate([TrainingSet(examples, SIZE)[i] for i in range(4)])


@pytest.mark.parametrize("what", ["controlnet", "lora"])
def test_loss_is_finite_and_decreases_on_a_fixed_batch(what, real_like_dataset, tiny_model):
    from diffusers import ControlNetModel

    from busforge.train.arch import lora_config
    from busforge.train.components import PromptEmbeddings, load_base
    from busforge.train.objective import draw_inputs

    base = load_base(str(tiny_model / "base"))
    for module in (base.unet, base.vae, base.text_encoder):
        module.requires_grad_(False)
    if what == "controlnet":
        controlnet = controlnet_from_unet(base.unet, base.vae)
        kl_alpha = 0.001
        base.vae.encoder.requires_grad_(True)
    else:
        controlnet = ControlNetModel.from_pretrained(tiny_model / "controlnet").requires_grad_(False)
        base.unet.add_adapter(lora_config(4))
        kl_alpha = 0.0
    model = DiffusionLoss(base.unet, controlnet, base.vae, base.noise_scheduler, kl_alpha)
    batch = fixed_batch(real_like_dataset)
    embeddings = PromptEmbeddings(base.text_encoder, base.tokenizer, batch["prompts"], "cpu", torch.float32)
    drawn = draw_inputs(base.vae, base.noise_scheduler, 4, SIZE, torch.Generator().manual_seed(0), "cpu")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(8):
        loss, _, _ = model(
            batch["pixel_values"], batch["conditioning"], embeddings(batch["prompts"]), **drawn
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.97 * losses[0], losses


def test_controlnet_resume_gives_the_same_weights(real_like_dataset, tiny_model, tmp_path):
    whole = tmp_path / "whole"
    outcome = train_controlnet(
        controlnet_run(
            real_like_dataset,
            tiny_model,
            whole,
            max_steps=4,
            checkpoint_every=2,
            checkpoints_kept=1,
            validation_images=2,
        )
    )
    assert [p.name for p in (whole / "checkpoints").iterdir()] == ["checkpoint-4"]  # bounded count
    assert len(outcome.result.history) == 4 and all(np.isfinite(h["loss"]) for h in outcome.result.history)
    card = (whole / "README.md").read_text()
    assert "VAE encoder frozen (KL weight 0: the KL term is logged, not trained)" in card
    assert "![validation renders](validation.png)" in card
    assert all(h["kl"] > 0 for h in outcome.result.history)  # logged although not trained
    assert not (whole / "vae").exists()  # nothing of the VAE trained, nothing exported
    assert (whole / "loss.png").is_file() and (whole / "validation.png").is_file()
    # The loss curve as `dvc plots show` reads it: a header, then one row per optimizer step.
    loss_csv = (whole / "loss.csv").read_text().splitlines()
    assert loss_csv[0].startswith("step,loss") and [r.split(",")[0] for r in loss_csv[1:]] == [
        "1",
        "2",
        "3",
        "4",
    ]

    split = tmp_path / "split"
    train_controlnet(controlnet_run(real_like_dataset, tiny_model, split, max_steps=2, checkpoint_every=2))
    # busforge's own format: safetensors and JSON, nothing a resume would have to unpickle.
    ckpt = split / "checkpoints" / "checkpoint-2"
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(CHECKPOINT_FILES)
    assert not pickled_files(ckpt)
    # No random-number state is saved: the resumed run must not depend on the global generators.
    scramble_global_generators(1234)
    resumed = train_controlnet(
        controlnet_run(real_like_dataset, tiny_model, split, max_steps=4, checkpoint_every=2, resume="latest")
    )
    assert resumed.result.resumed_from == 2
    # Resumed from step 2 again, the run rewrites checkpoint-4: the old one is replaced whole, and a
    # stray set-aside folder from a run that stopped while saving is cleared.
    checkpoints = split / "checkpoints"
    (checkpoints / ".checkpoint-4.replaced").mkdir()
    again = train_controlnet(
        controlnet_run(
            real_like_dataset, tiny_model, split, max_steps=4, checkpoint_every=2, resume=str(ckpt)
        )
    )
    assert again.result.resumed_from == 2
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert json.loads((checkpoints / "checkpoint-4" / "trainer_state.json").read_text())["step"] == 4
    with pytest.raises(BadInput, match="--resume latest"):  # never mix two runs' checkpoints
        train_controlnet(controlnet_run(real_like_dataset, tiny_model, split, max_steps=4))
    with pytest.raises(BadInput, match=r"checkpoint-4: checkpoint of a different run \(seed: 0 -> 1\)"):
        train_controlnet(
            controlnet_run(real_like_dataset, tiny_model, split, max_steps=4, resume="latest", seed=1)
        )
    a = tensors(whole / "diffusion_pytorch_model.safetensors")
    b = tensors(split / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the run really trained: the zero-initialised output convolutions moved
    assert any(k.startswith("controlnet_down_blocks") and a[k].abs().sum() > 0 for k in a)
    histories = [json.loads((d / "training.json").read_text())["history"] for d in (whole, split)]
    assert histories[0] == histories[1]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    real_like_dataset, tiny_model, tmp_path, monkeypatch
):
    forward = DiffusionLoss.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        loss, mse, kl = forward(self, *args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 6 else loss), mse, kl  # step 3, 2nd micro-batch

    monkeypatch.setattr(DiffusionLoss, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"at step 3.*checkpoint-2"):
        train_controlnet(controlnet_run(real_like_dataset, tiny_model, out, max_steps=5, checkpoint_every=2))
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-2"]
    assert not (out / "config.json").exists()  # no model exported from a diverged run
    weights = tensors(out / "checkpoints" / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_lora_trains_only_the_adapter_and_loads_in_the_renderer(real_like_dataset, tiny_model, tmp_path):
    from diffusers import ControlNetModel, UNet2DConditionModel

    out = tmp_path / "lora"
    outcome = train_lora(lora_run(real_like_dataset, tiny_model, out, max_steps=3, checkpoint_every=3))
    trained = outcome.model
    base_unet = UNet2DConditionModel.from_pretrained(tiny_model / "base", subfolder="unet").state_dict()
    for name, value in trained.unet.state_dict().items():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        assert torch.equal(value, base_unet[key]), name
    base_cn = ControlNetModel.from_pretrained(tiny_model / "controlnet").state_dict()
    assert all(torch.equal(v, base_cn[k]) for k, v in trained.controlnet.state_dict().items())
    lora_b = [v for k, v in trained.unet.state_dict().items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero; training moved it

    saved = tensors(out / LORA_FILE)
    assert saved and all(k.startswith("unet.") for k in saved)
    ckpt = tensors(out / "checkpoints" / "checkpoint-3" / "model.safetensors")
    assert ckpt and all("lora_" in k for k in ckpt)  # checkpoints hold the adapter only
    adapter = sum(p.numel() for n, p in trained.unet.named_parameters() if "lora_" in n)
    assert sum(v.numel() for v in saved.values()) == adapter

    renders = (
        render_with(tiny_model, {"lora": {"busi": str(out)}}),
        render_with(tiny_model, {"lora": {"busi": None}}),
    )
    assert renders[0][0].shape == (SIZE * 2, SIZE * 2)
    assert not np.array_equal(renders[0][0], renders[1][0])


def test_full_fine_tune_exports_the_unet_and_steers_the_renderer(real_like_dataset, tiny_model, tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    out = tmp_path / "cn"
    outcome = train_controlnet(
        controlnet_run(
            real_like_dataset, tiny_model, out, max_steps=2, checkpoint_every=2, train_unet=True, kl_alpha=0.0
        )
    )
    base_unet = UNet2DConditionModel.from_pretrained(tiny_model / "base", subfolder="unet").state_dict()
    tuned = tensors(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(tuned[k], base_unet[k]) for k in tuned)  # the UNet trained too
    base_vae = AutoencoderKL.from_pretrained(tiny_model / "base", subfolder="vae").state_dict()
    assert all(torch.equal(v, base_vae[k]) for k, v in outcome.model.vae.state_dict().items())  # alpha 0

    steered = render_with(tiny_model, {"controlnet": str(out), "controlnet_scale": 1.0})
    unsteered = render_with(tiny_model, {"controlnet": str(out), "controlnet_scale": 0.0})
    assert not np.array_equal(steered[0], unsteered[0])

    # The renderer picks up OUT/unet: the same ControlNet without it (the base UNet) renders otherwise.
    alone = tmp_path / "cn-alone"
    shutil.copytree(out, alone, ignore=shutil.ignore_patterns("unet", "checkpoints"))
    with_base_unet = render_with(tiny_model, {"controlnet": str(alone), "controlnet_scale": 1.0})
    assert not np.array_equal(steered[0], with_base_unet[0])
    identity = renderer_identity(tiny_model, {"controlnet": str(out)})
    assert "unet" in identity and "unet" not in renderer_identity(tiny_model, {"controlnet": str(alone)})

    # A LoRA on that ControlNet adapts the fine-tuned UNet (the one it renders with), not the base's.
    lora_out = tmp_path / "lora"
    lora = train_lora(
        lora_run(
            real_like_dataset, tiny_model, lora_out, controlnet=str(out), max_steps=1, checkpoint_every=1
        )
    )
    frozen = {
        k.replace(".base_layer", ""): v for k, v in lora.model.unet.state_dict().items() if "lora_" not in k
    }
    assert frozen.keys() == tuned.keys() and all(torch.equal(frozen[k], tuned[k]) for k in tuned)
    assert "adapts the unet trained with the ControlNet" in (lora_out / "README.md").read_text()


def renderer_identity(model: Path, options: dict) -> dict:
    from busforge.renderers.base import make_renderer

    defaults = {"lora": {"busi": None}, "base": str(model / "base"), "device": "cpu"}
    return make_renderer("diffusion", {**defaults, **options}, SIZE).identity()


def render_with(model: Path, options: dict) -> list[np.ndarray]:
    """Two samples of one domain through the diffusion renderer, on CPU."""
    pytest.importorskip("busforge.renderers.diffusion")
    from busforge.executors.rows import make_masks
    from busforge.recipe import recipe_from_dict
    from busforge.renderers.base import RenderItem, make_renderer
    from busforge.sample_plan import make_plan

    size = SIZE * 2
    recipe = recipe_from_dict({"name": "t", "count": 2, "image_size": size, "domain": "busi"})
    specs = make_plan(recipe).specs
    masks = make_masks(specs, size)
    defaults = {
        "lora": {"busi": None},
        "base": str(model / "base"),
        "controlnet": str(model / "controlnet"),
        "steps": 2,
        "device": "cpu",
        "compile": False,
    }
    renderer = make_renderer("diffusion", {**defaults, **options}, size)
    renderer.load()
    return renderer.render([RenderItem(spec=s, mask=m) for s, (m, _) in zip(specs, masks, strict=True)])


def test_lora_runs_with_the_same_seed_give_the_same_adapter(real_like_dataset, tiny_model, tmp_path):
    """The adapter's initial A matrices come from --seed, not from torch's global RNG."""
    outs = []
    for name, global_seed in (("a", 1), ("b", 2)):
        torch.manual_seed(global_seed)  # a different global state must not matter
        out = tmp_path / name
        train_lora(lora_run(real_like_dataset, tiny_model, out, max_steps=2, checkpoint_every=2))
        outs.append(tensors(out / LORA_FILE))
    assert outs[0].keys() == outs[1].keys()
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def latent_stats(vae, pixels: torch.Tensor) -> tuple[float, float, float]:
    """Mean and std of the raw posterior means (before the scaling factor) and the mean KL."""
    from busforge.train.objective import posterior_kl

    with torch.no_grad():
        posterior = vae.encode(pixels).latent_dist
    return float(posterior.mean.mean()), float(posterior.mean.std()), float(posterior_kl(posterior))


def test_kl_alpha_trains_the_encoder_exports_it_and_moves_its_latents(
    real_like_dataset, tiny_model, tmp_path
):
    """With alpha > 0 the encoder trains toward N(0, I): latents of validation images move (and the
    decoder, which rendering uses, does not), so the run exports its VAE and the renderer takes it."""
    from diffusers import AutoencoderKL

    from busforge.train.data import TrainingSet, collate, read_examples

    out = tmp_path / "kl"
    train_controlnet(
        controlnet_run(real_like_dataset, tiny_model, out, max_steps=3, checkpoint_every=3, kl_alpha=1.0)
    )
    assert "VAE encoder (in vae/), KL weight 1" in (out / "README.md").read_text()
    base = AutoencoderKL.from_pretrained(tiny_model / "base", subfolder="vae").eval()
    trained = AutoencoderKL.from_pretrained(out / "vae").eval()
    decoders = [m.decoder.state_dict() for m in (base, trained)]
    assert all(torch.equal(v, decoders[1][k]) for k, v in decoders[0].items())

    examples = read_examples(real_like_dataset, "validation", DEFAULT_PROMPT)
    pixels = collate([TrainingSet(examples, SIZE)[i] for i in range(len(examples))])["pixel_values"]
    (base_mean, base_std, base_kl), (mean, std, kl) = (
        latent_stats(base, pixels),
        latent_stats(trained, pixels),
    )
    assert kl < 0.9 * base_kl, (base_kl, kl)  # pulled toward N(0, I) on images it never trained on
    assert abs(mean - base_mean) + abs(std - base_std) > 1e-3, (base_mean, base_std, mean, std)

    identity = renderer_identity(tiny_model, {"controlnet": str(out)})
    assert "vae" in identity and "unet" not in identity
