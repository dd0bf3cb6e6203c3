"""Diffusion render throughput: the naive community loop (a) against busforge's render path (b).

Both run in this process, on the same weights, masks and prompts, and are timed after a warm-up:

  (a) one `StableDiffusionControlNetPipeline` call per image (batch 1), 30 steps, its default PNDM
      scheduler, guidance 7.5, the LoRA loaded but not fused, 16-bit on GPU (fp32 on CPU), PNG
      encoding of each image;
  (b) `busforge.executors.rows.render_rows` with `DiffusionRenderer` at its defaults (20 UniPC
      steps, batched, fused LoRA, SDPA, channels_last on CUDA), eager: the renderer is built
      without a run size, so `compile: auto` does not compile; masks and PNG encoding included;
  (c) the same with `compile: true` (torch.compile of the UNet, ControlNet and VAE decoder), unless
      `--compile off`. Its first batch compiles; that time beyond a normal batch is the compile
      cost, and cost / (eager s per image - compiled s per image) is the break-even: the run size
      above which compiling pays (`compile: auto` compiles from COMPILE_AUTO_MIN_IMAGES on CUDA).
      Inductor caches compiled graphs on disk, so a second run of this script compiles faster.

Weights do not change the compute, so `--arch sd15` builds the exact SD 1.5 UNet + ControlNet + VAE +
CLIP ViT-L text encoder with random weights (written once, in fp16, in the diffusers layout, and
loaded through the same from_pretrained path); `--arch tiny` uses `busforge models tiny`.

    python benchmarks/render_diffusion.py --arch tiny                      # CPU, seconds
    python benchmarks/render_diffusion.py --arch sd15 --images 64 --sweep 1,2,4,8,16   # GPU

Prints medians over `--repeats` runs, the ratios (b)/(a) and (c)/(b), the compile cost and break-even,
GPU memory per batch size with `--sweep`,
and on CUDA the fraction of the dense fp16 bound (50 TFLOP per 512x512 image with ControlNet+CFG
at 20 steps; `--peak-tflops` is the card's peak, 989 for an H100 SXM).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TFLOP_PER_IMAGE_512_20_STEPS = 50.0
PROMPT_RECIPE = "recipes/tiny_diffusion.yaml"


def write_sd15_random(out: Path, domains: list[str]) -> None:
    """The SD 1.5 architecture (v1-inference.yaml) with random weights, in the diffusers layout."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from busforge.models.tiny import SD15_SCHEDULE, _randomize, lora_state_dict, write_clip_tokenizer

    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
    )
    controlnet = ControlNetModel.from_unet(unet)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
        )
    )
    generator = torch.Generator().manual_seed(0)
    for module in (unet, controlnet, vae, text_encoder):
        _randomize(module, generator)  # the values do not matter for speed; seeded anyway
    write_clip_tokenizer(out / "base" / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(out / "base" / "tokenizer"),
        unet=unet,
        scheduler=PNDMScheduler(**SD15_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(out / "base", safe_serialization=True)
    controlnet.to(torch.float16).save_pretrained(out / "controlnet", safe_serialization=True)
    for domain in domains:
        StableDiffusionPipeline.save_lora_weights(
            out / "lora" / domain,
            unet_lora_layers=lora_state_dict(unet.float(), generator),
            safe_serialization=True,
        )


def make_inputs(model: Path, size: int, count: int):
    from busforge.executors.rows import make_masks
    from busforge.recipe import load_recipe
    from busforge.sample_plan import make_plan

    overrides = [
        f"renderer.base={model / 'base'}",
        f"renderer.controlnet={model / 'controlnet'}",
        f"renderer.lora.busi={model / 'lora' / 'busi'}",
        "renderer.steps=20",
        f"image_size={size}",
        f"count={count}",
        "domain=busi",  # one domain, one fused adapter: the case the goal is about
    ]
    recipe = load_recipe(Path(__file__).resolve().parents[1] / PROMPT_RECIPE, overrides)
    # The busforge defaults, not the tiny recipe's test settings.
    options = {k: v for k, v in recipe.renderer.options.items() if k in ("base", "controlnet")}
    options["lora"] = {"busi": recipe.renderer.options["lora"]["busi"]}
    specs = make_plan(recipe).specs
    return options, specs, make_masks(specs, size)


def naive_loop(pipe, specs, masks, size: int, steps: int) -> None:
    """What community scripts do: one call per image."""
    import numpy as np
    import torch
    from PIL import Image

    from busforge.executors.rows import encode_png

    for spec, (mask, _) in zip(specs, masks, strict=True):
        condition = Image.fromarray(np.repeat((mask.astype(np.uint8) * 255)[:, :, None], 3, axis=2))
        image = pipe(
            spec.prompt,
            image=condition,
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=7.5,
            generator=torch.Generator("cpu").manual_seed(spec.seed),
            output_type="pil",
        ).images[0]
        encode_png(np.asarray(image.convert("L")))


def busforge_path(renderer, specs, size: int) -> None:
    from busforge.executors.rows import render_rows

    for start in range(0, len(specs), renderer.batch_size):
        render_rows(renderer, specs[start : start + renderer.batch_size], size)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--model", type=Path, help="existing folder from a previous run (skips writing)")
    parser.add_argument("--images", type=int, default=16, help="images per timed run of each path")
    parser.add_argument("--size", type=int, help="render size (default 64 tiny, 512 sd15)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-steps", type=int, default=30)
    parser.add_argument("--steps", type=int, help="busforge steps (default: its default, 20); for smoke runs")
    parser.add_argument("--sweep", default="", help="busforge batch sizes to time, e.g. 1,2,4,8,16")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense fp16 peak of the GPU")
    parser.add_argument(
        "--compile",
        choices=["both", "off"],
        default="both",
        help="both: also time (c), compiled, with its compile cost and break-even (on a CPU with the "
        "tiny model inductor takes a few minutes); off: eager only",
    )
    args = parser.parse_args()

    size = args.size or (64 if args.arch == "tiny" else 512)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or Path(tmp) / args.arch
        if args.model is None:
            print(f"writing the {args.arch} model (random weights) to {model} ...", flush=True)
            if args.arch == "tiny":
                from busforge.models.tiny import write_tiny_model

                write_tiny_model(model, ["busi"])
            else:
                write_sd15_random(model, ["busi"])
        run(args, model, size)


def run(args, model: Path, size: int) -> None:
    import torch
    import torch._dynamo
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from busforge.renderers.diffusion import DiffusionRenderer

    options, specs, masks = make_inputs(model, size, args.images)
    if args.steps:
        options["steps"] = args.steps
    renderer = DiffusionRenderer(options, size)
    device, dtype_name = renderer.device, renderer.dtype_name
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'CPU'}), "
        f"dtype {dtype_name}, {size}x{size}, {args.images} images x {args.repeats} repeats, arch {args.arch}"
    )

    controlnet = ControlNetModel.from_pretrained(model / "controlnet", dtype=dtype, use_safetensors=True)
    naive = StableDiffusionControlNetPipeline.from_pretrained(
        model / "base", controlnet=controlnet, safety_checker=None, dtype=dtype, use_safetensors=True
    ).to(device)
    naive.load_lora_weights(model / "lora" / "busi", adapter_name="busi")
    naive.set_progress_bar_config(disable=True)
    naive_loop(naive, specs[:1], masks[:1], size, args.naive_steps)  # warm-up
    a = timed(partial(naive_loop, naive, specs, masks, size, args.naive_steps), device, args.repeats)
    del naive, controlnet
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    # (a) ran with torch's defaults, as a community script does; the renderer's load() sizes the
    # pools as `busforge render` does, whoever calls it: nothing is set up here.
    renderer.load()
    batch_sizes = [int(b) for b in args.sweep.split(",") if b] or [renderer.batch_size]
    results = {
        batch_size: time_busforge(renderer, specs, size, batch_size, args) for batch_size in batch_sizes
    }
    del renderer
    compiled = {}
    if args.compile == "both":
        for batch_size in batch_sizes:
            torch._dynamo.reset()  # each batch size pays its own first compile, as a run would
            fresh = DiffusionRenderer({**options, "compile": True}, size)
            fresh.load()
            compiled[batch_size] = time_busforge(fresh, specs, size, batch_size, args)
            if not fresh.compile:  # the renderer fell back to eager (its warning says why)
                compiled[batch_size] = None
            del fresh

    a_ips = args.images / statistics.median(a)
    print(
        f"(a) naive loop, batch 1, {args.naive_steps} steps: median {statistics.median(a):.3f} s "
        f"-> {a_ips:.2f} images/s"
    )
    steps = options.get("steps", 20)
    for batch_size, (_, times, memory) in results.items():
        b_ips = args.images / statistics.median(times)
        line = (
            f"(b) busforge, batch {batch_size}, {steps} steps: median "
            f"{statistics.median(times):.3f} s -> {b_ips:.2f} images/s, {b_ips / a_ips:.2f}x (a)"
        )
        if device.startswith("cuda"):
            tflop = TFLOP_PER_IMAGE_512_20_STEPS * (size / 512) ** 2 * steps / 20
            bound = args.peak_tflops / tflop
            line += (
                f", peak GPU memory {memory:.1f} GiB, {b_ips / bound:.0%} of the {bound:.1f} images/s bound"
            )
        print(line)
        if batch_size in compiled:
            print(compile_line(batch_size, results[batch_size], compiled[batch_size], args.images))


def time_busforge(renderer, specs, size: int, batch_size: int, args) -> tuple[float, list[float], float]:
    """(first batch s, timed runs s, peak GPU GiB): the first batch includes any compilation."""
    import torch

    device = renderer.device
    renderer.batch_size = renderer._chunk = batch_size
    first = timed(partial(busforge_path, renderer, specs[:batch_size], size), device, 1)[0]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = timed(partial(busforge_path, renderer, specs, size), device, args.repeats)
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return first, times, memory


def compile_line(batch_size: int, eager, compiled, images: int) -> str:
    """(c) against (b): speed, the compile cost, and the run size from which compiling pays."""
    from busforge.renderers.diffusion import COMPILE_AUTO_MIN_IMAGES

    head = f"(c) busforge compiled, batch {batch_size}: "
    if compiled is None:
        return head + "torch.compile failed here and the renderer fell back to eager (see its warning)"
    eager_per_image = statistics.median(eager[1]) / images
    per_image = statistics.median(compiled[1]) / images
    cost = compiled[0] - per_image * batch_size  # the first batch beyond what a batch costs
    line = (
        f"{head}median {per_image * images:.3f} s -> {1 / per_image:.2f} images/s, "
        f"{eager_per_image / per_image:.2f}x (b); compiling took {cost:.1f} s"
    )
    saved = eager_per_image - per_image
    if saved <= 0:
        return line + "; no break-even: compiled is not faster here"
    return (
        line + f"; break-even after {cost / saved:,.0f} images "
        f"(`compile: auto` compiles runs of {COMPILE_AUTO_MIN_IMAGES:,}+ on CUDA)"
    )


if __name__ == "__main__":
    main()
