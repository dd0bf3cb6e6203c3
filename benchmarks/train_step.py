"""Training throughput of the ControlNet and LoRA trainers' step (forward + backward + AdamW).

    python benchmarks/train_step.py                      # tiny model, CPU (what CI machines can run)
    python benchmarks/train_step.py --arch sd15 --resolution 512 --batch-sizes 1,4,8,16   # on a GPU

`--arch sd15` builds the exact SD 1.5 UNet + ControlNet + VAE + CLIP text architecture with random
weights (the compute does not depend on the weights); `--arch tiny` the tiny test model. Mixed
precision is on wherever a GPU runs (bf16 where supported, else fp16), frozen parts in that dtype,
trained parts in fp32 under autocast, exactly as the trainers place them.

Every configuration runs in the same process on the same machine, and the baseline is measured in
the same run: the diffusers example script's step, which runs the frozen text encoder on every
batch, against busforge's step with cached prompt embeddings. Printed per configuration: the
median step time over --repeats steps (after --warmup), samples/s, the ratio to the baseline of the
same batch size, and the peak GPU memory.

With `--compile both` (the default) each mode is also timed with its UNet and ControlNet under
`torch.compile` (cached prompts, no checkpointing): the first step compiles, its time beyond a
normal step is the compile cost, and cost / (eager - compiled step time) is the break-even in
steps, the run length above which compiling the trainer would pay. (The trainers run eagerly.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from busforge.train.arch import build_sd15, lora_config
from busforge.train.components import place
from busforge.train.objective import DiffusionLoss, draw_inputs


def build(arch: str, device: str) -> dict[str, Any]:
    from diffusers import DDPMScheduler
    from transformers import CLIPTokenizer

    from busforge.models.tiny import write_clip_tokenizer

    if arch == "sd15":
        models = build_sd15("cpu")
        parts = {"unet": models.unet, "controlnet": models.controlnet, "vae": models.vae}
        parts["text_encoder"] = models.text_encoder
    else:
        from busforge.models.tiny import build_components

        tiny = build_components(0)
        parts = {k: tiny[k] for k in ("unet", "controlnet", "vae", "text_encoder")}
    parts["scheduler"] = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    # The real CLIP tokenizer, built offline, for the baseline's per-step text encoding.
    folder = Path(tempfile.mkdtemp())
    write_clip_tokenizer(folder)
    parts["tokenizer"] = CLIPTokenizer.from_pretrained(folder)
    return parts


def make_step(
    parts: dict[str, Any],
    mode: str,
    device: str,
    dtype: torch.dtype,
    checkpointing: bool,
    size: int,
    compiled: bool = False,
):
    """A closure running one optimizer step on a batch; returns the parameters it trains."""
    import copy

    unet = copy.deepcopy(parts["unet"])
    controlnet = copy.deepcopy(parts["controlnet"])
    vae = parts["vae"]
    text_encoder = parts["text_encoder"]
    for m in (unet, controlnet, vae, text_encoder):
        m.requires_grad_(False)
    if mode == "lora":
        place(unet, device, dtype)
        place(controlnet, device, dtype)
        unet.add_adapter(lora_config(8))
        for p in unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    else:
        place(unet, device, dtype)
        place(controlnet, device, torch.float32)
        controlnet.requires_grad_(True)
        if checkpointing:
            controlnet.enable_gradient_checkpointing()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    place(vae, device, dtype)
    place(text_encoder, device, dtype)
    if compiled:  # the modules that hold nearly all of a step's compute
        unet, controlnet = torch.compile(unet), torch.compile(controlnet)
    model = DiffusionLoss(unet, controlnet, vae, parts["scheduler"], kl_alpha=0.0).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    tokens = parts["tokenizer"](
        ["breast ultrasound image of benign tumor with homogeneous echogenicity and clear boundary."],
        padding="max_length",
        max_length=77,
        return_tensors="pt",
    ).input_ids.to(device)
    with torch.no_grad():
        cached = text_encoder(tokens)[0]

    def step(batch: int, per_step_text: bool, generator: torch.Generator) -> None:
        pixels = torch.randn(batch, 3, size, size, generator=generator).to(device)
        cond = (torch.rand(batch, 3, size, size, generator=generator) > 0.5).float().to(device)
        drawn = draw_inputs(vae, parts["scheduler"], batch, size, generator, torch.device(device))
        with autocast:
            if per_step_text:
                with torch.no_grad():
                    states = text_encoder(tokens.expand(batch, -1))[0]
            else:
                states = cached.expand(batch, -1, -1)
            loss, _, _ = model(pixels, cond, states, **drawn)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, sum(p.numel() for p in params)


def measure(
    step, batch: int, per_step_text: bool, warmup: int, repeats: int, device: str
) -> tuple[float, float, float]:
    """(median step s after the warm-up, peak GPU GiB, first step s: includes any compiling)."""
    generator = torch.Generator().manual_seed(0)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, first = [], float("nan")
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(batch, per_step_text, generator)
        if cuda:
            torch.cuda.synchronize()
        if i == 0:
            first = time.perf_counter() - t0
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return statistics.median(times), peak, first


def peak_text(gib: float) -> str:
    return "n/a" if gib != gib else f"{gib:.2f}"  # NaN: no GPU, no peak memory to report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=None, help="default: 512 for sd15, 64 for tiny")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", default="controlnet,lora")
    parser.add_argument(
        "--compile",
        choices=["both", "off"],
        default="both",
        help="both: also time each mode compiled, with the compile cost and break-even; off: eager only",
    )
    args = parser.parse_args()
    size = args.resolution or (512 if args.arch == "sd15" else 64)
    cuda = args.device.startswith("cuda")
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    batches = [int(b) for b in args.batch_sizes.split(",")]
    name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# train step, {args.arch} at {size}x{size}, {name}, {str(dtype).removeprefix('torch.')}")
    print(f"# median of {args.repeats} steps after {args.warmup} warm-up; baseline = text encoder every step")
    parts = build(args.arch, args.device)
    header = f"{'mode':<11} {'grad ckpt':<9} {'text':<10} {'batch':>5} {'median s':>9} {'samples/s':>10} {'x base':>7} {'peak GiB':>9}"
    print(header)
    print("-" * len(header))
    eager_cached: dict[tuple[str, int], float] = {}
    for mode in args.modes.split(","):
        for checkpointing in (False, True):
            step, trained = make_step(parts, mode, args.device, dtype, checkpointing, size)
            for batch in batches:
                rows = []
                for per_step_text in (True, False):
                    try:
                        median, peak, _ = measure(
                            step, batch, per_step_text, args.warmup, args.repeats, args.device
                        )
                    except torch.cuda.OutOfMemoryError:
                        print(f"{mode:<11} {checkpointing!s:<9} {'':<10} {batch:>5} out of memory")
                        torch.cuda.empty_cache()
                        break
                    rows.append((per_step_text, median, peak))
                base = rows[0][1] if rows else float("nan")
                for per_step_text, median, peak in rows:
                    text = "per step" if per_step_text else "cached"
                    print(
                        f"{mode:<11} {checkpointing!s:<9} {text:<10} {batch:>5} {median:>9.4f} "
                        f"{batch / median:>10.2f} {base / median:>7.2f} {peak_text(peak):>9}"
                    )
                if not checkpointing and rows and not rows[-1][0]:
                    eager_cached[mode, batch] = rows[-1][1]
            print(f"#   {mode}: {trained:,} trained parameters")
            del step
            if cuda:
                torch.cuda.empty_cache()
        if args.compile == "both":
            compare_compiled(parts, mode, args, dtype, size, batches, eager_cached)


def compare_compiled(parts, mode: str, args, dtype, size: int, batches: list[int], eager: dict) -> None:
    """Compiled UNet + ControlNet against the eager step of the same batch (cached text, no checkpointing)."""
    import torch._dynamo

    cuda = args.device.startswith("cuda")
    for batch in batches:
        if (mode, batch) not in eager:
            continue
        torch._dynamo.reset()  # every batch size pays its own first compile, as a run would
        step, _ = make_step(parts, mode, args.device, dtype, False, size, compiled=True)
        head = f"{mode:<11} {'False':<9} {'compiled':<10} {batch:>5}"
        try:
            median, peak, first = measure(step, batch, False, max(args.warmup, 1), args.repeats, args.device)
        except torch.cuda.OutOfMemoryError:
            print(f"{head} out of memory")
            torch.cuda.empty_cache()
            continue
        except Exception as err:  # no Triton or C compiler: say so, keep the eager figures
            print(f"{head} torch.compile failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
            continue
        eager_step = eager[mode, batch]
        cost = first - median
        print(
            f"{head} {median:>9.4f} {batch / median:>10.2f} {eager_step / median:>7.2f} {peak_text(peak):>9}"
            f"   (x eager cached; compiling took {cost:.1f} s; "
            + (
                f"break-even after {cost / (eager_step - median):,.0f} steps)"
                if median < eager_step
                else "no break-even: not faster compiled)"
            )
        )
        del step
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
