"""Diffusion renderer: Stable Diffusion 1.5 + mask ControlNet + per-domain LoRA (the paper's model).

The lesion mask is the ControlNet's conditioning image, the plan's prompt is the text, and the
sample's domain picks its LoRA adapter. Choices that keep datasets reproducible and fast:

- Per-sample determinism: every sample gets its own CPU `torch.Generator` seeded with its plan
  seed, passed to the pipeline as a list, so its initial noise does not depend on its batch, on the
  batch size or on the device (CPU generators give the same noise everywhere). Batched matmuls may
  still differ in the last float bits: images of one sample rendered in batches of 1 and of 4 agree
  to within 2 grey levels on the CPU (tests/test_diffusion.py pins this tolerance).
- LoRA: adapters are loaded lazily, per domain, when a batch of that domain first arrives. A run
  that can only render one domain fuses its adapter into the weights (no LoRA cost per step);
  otherwise adapters are switched with `set_adapters`. "Only one domain" is decided up front, so
  that every sample of a run (and of its resumption) is rendered the same way: by the executor's
  `expect_domains(plan domains)` when it calls it, else by `renderer.lora` mapping one domain.
  Fused and switched adapters agree to the float noise of the dtype (FUSED_VS_SWITCHED_GREY_LEVELS,
  tested): within 1-2 grey levels in fp32 and fp16, up to 7-8 in bf16, whose 8-bit mantissa makes any
  change in the order of operations (fusing rounds W + BA) move an image as much as bf16 itself
  moves it from fp32. Fusing costs no accuracy in any dtype: both paths are equally far from fp32.
- Non-finite images: each decoded image is checked. One that is NaN or inf (an fp16 overflow in
  the VAE decoder: diffusers' pipeline decodes in the model dtype without upcasting) is decoded
  again in fp32 and its row's `renderer` column says `"vae_redecode": "fp32"`; if it is still not
  finite (the latents themselves are), the run stops with `NonFiniteImage` naming the sample.
- Compile: `compile: auto` compiles only on CUDA and only runs of COMPILE_AUTO_MIN_IMAGES images or
  more, where the minute or two of compiling pays. Compiled, every batch has the same shape (the
  ragged last batch is padded with copies of its last sample, whose outputs are dropped), so the
  graphs compile once, plus once per out-of-memory halving. A compiler that fails (no Triton, no C
  compiler) costs one warning: the run goes on eagerly.
- Loading: safetensors only, no safety checker (medical images are not what it was built for; the
  card says so), no remote code. A model that is neither a local folder nor in the Hugging Face
  cache under `HF_HUB_OFFLINE=1` is a `BadInput` raised by the constructor, before rendering starts.
  A UNet or VAE trained with the ControlNet (`unet/`, `vae/` beside it) replaces the base model's.
- Faults: CUDA out-of-memory halves the sub-batch and retries it; finished sub-batches are kept and
  the smaller size is remembered for the rest of the run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from busforge.errors import BadInput
from busforge.models.companions import COMPANIONS, companion_folders, load_companion
from busforge.models.weights import ModelSource, resolve_model
from busforge.renderers.base import BaseRenderer
from busforge.renderers.diffusion_options import CPU_BATCH_SIZE, SCHEDULERS, DiffusionOptions, parse_options

if TYPE_CHECKING:
    from busforge.renderers.base import RenderItem
    from busforge.sample import SampleSpec

log = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"
# ITU-R BT.601 luma, as PIL's convert("L"): the decoded RGB image -> the grey B-mode image.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

# `batch_size: auto` on a GPU: an estimate of the memory one image needs at 512x512 in 16-bit with
# CFG (two UNet + ControlNet rows, SDPA attention), the weights' share, and a cap beyond which
# throughput no longer grows. OOM halving catches an estimate that is too optimistic.
IMAGE_BYTES_512_HALF = 1.0 * 2**30
WEIGHT_BYTES_HALF = 3.0 * 2**30
MAX_AUTO_BATCH = 16
# More samples than this with `device: auto` and no GPU is refused (SD 1.5 takes ~30 s an image on a CPU).
CPU_LARGE_RUN = 100
# `compile: auto` compiles runs of at least this many images (on CUDA). An estimate until measured on
# a GPU with `benchmarks/render_diffusion.py --arch sd15`, which prints the break-even: compiling SD
# 1.5's UNet, ControlNet and VAE decoder takes ~1-2 min the first time (inductor caches it on disk
# for later runs) and saves ~20-30% of the ~0.1-0.3 s an image takes eagerly, so it pays after
# roughly 1,000-4,000 images.
COMPILE_AUTO_MIN_IMAGES = 2000
# Fused vs switched adapters, same samples and dtype: the most any pixel differs, in grey levels
# (tiny model, CPU: measured 1 in fp32, 2 in fp16, 7 in bf16, where both paths are 7 from fp32).
FUSED_VS_SWITCHED_GREY_LEVELS = {"fp32": 2, "fp16": 3, "bf16": 10}


class NonFiniteImage(RuntimeError):
    """A sample whose image is NaN or inf even when decoded in fp32: the run stops, naming it."""


class DiffusionRenderer(BaseRenderer):
    """`renderer: {backend: diffusion, controlnet: ..., lora: {domain: folder}, ...}` (see the options)."""

    name = "diffusion"
    in_process = True  # one model on one accelerator: never fork a pool

    takes_plan_hints = True  # make_renderer passes the plan's domains and size (see `problems`)

    def __init__(
        self,
        options: dict[str, Any],
        image_size: int,
        *,
        domains: set[str] | None = None,
        samples: int | None = None,
    ) -> None:
        self.options: DiffusionOptions = parse_options(options)
        self.image_size = image_size
        self.device = _resolve_device(self.options.device)
        self.dtype_name = _resolve_dtype(self.options.dtype, self.device)
        self.compile = _wants_compile(self.options.compile, self.device, samples)
        self.batch_size = self._resolve_batch_size()
        self._sources: dict[str, ModelSource] | None = None
        self._identity: dict[str, Any] | None = None
        self.pipe: Any = None
        self._active: str | None = None  # domain whose adapter (or none) is in effect
        self._fused: str | None = None  # domain whose adapter is fused into the weights
        self._loaded: set[str] = set()  # adapters loaded into the pipeline
        self._single_domain = len(self.options.lora) == 1  # may fuse; refined by expect_domains
        self._uncompiled: dict[str, Any] = {}
        self._chunk = self.batch_size  # largest sub-batch that fits (halved on OOM)
        self._decoder32: tuple[Any, Any] | None = None  # fp32 copy of the VAE decoder, made on need
        self._redecoded: set[str] = set()  # sample ids whose image was decoded again in fp32
        if domains is not None:
            self._single_domain = len(domains) == 1
        # Fail now, before any rendering, on everything that is missing at once: model folders, uncached
        # Hub models when offline, LoRAs of planned domains, a GPU for a large run (hashes of local
        # weights are cached, so this is fast after the first run).
        problems: list[BadInput] = []
        self._sources = self._resolve_sources(problems)
        problems += self._plan_problems(domains, samples)
        if problems:
            raise one_error(problems)

    # ------------------------------------------------------------------ identity

    def sources(self) -> dict[str, ModelSource]:
        """Resolve every model once: local folders are hashed, Hub ids pinned to a cached commit.

        Raises `BadInput` for a missing folder or an uncached Hub model when offline.
        """
        if self._sources is None:
            problems: list[BadInput] = []
            self._sources = self._resolve_sources(problems)
            if problems:
                raise one_error(problems)
        return self._sources

    def _resolve_sources(self, problems: list[BadInput]) -> dict[str, ModelSource]:
        """Every model the options name; what cannot be found goes to PROBLEMS, not raised one by one."""
        wanted = [
            ("base", self.options.base, "renderer.base", "model_index.json"),
            ("controlnet", self.options.controlnet, "renderer.controlnet", "config.json"),
            *(
                (f"lora/{domain}", ref, f"renderer.lora.{domain}", LORA_FILE)
                for domain, ref in self.options.lora.items()
                if ref is not None
            ),
        ]
        # A UNet or VAE trained with the ControlNet, saved beside it (busforge.models.companions).
        wanted += [
            (name, str(folder), f"renderer.controlnet ({name}/)", "config.json")
            for name, folder in companion_folders(self.options.controlnet).items()
        ]
        found = {}
        for name, ref, key, need in wanted:
            try:
                found[name] = resolve_model(ref, key, need)
            except BadInput as err:
                problems.append(err)
        return found

    def _plan_problems(self, domains: set[str] | None, samples: int | None) -> list[BadInput]:
        """Planned domains without a LoRA mapping, and a large run that would fall back to the CPU."""
        problems = [self._unmapped(d) for d in sorted(set(domains or ()) - set(self.options.lora))]
        if (
            samples is not None
            and samples > CPU_LARGE_RUN
            and self.device == "cpu"
            and self.options.device == "auto"
        ):
            problems.append(
                BadInput(
                    f"no GPU found for {samples} samples ({self.options.steps} denoising steps each would "
                    "take hours on the CPU); run on a machine with a CUDA GPU, try a few first with "
                    "`--limit 8`, or set renderer.device: cpu to render on the CPU anyway",
                    key="renderer.device",
                )
            )
        return problems

    def input_locations(self) -> list[tuple[str, ...]]:
        """Models named by a local folder: the identity holds the folder's sha256, not its path."""
        keys = {"base": ("base",), "controlnet": ("controlnet",)}
        keys.update({f"lora/{domain}": ("lora", domain) for domain in self.options.lora})
        local = {name for name, source in self.sources().items() if source.revision is None}  # not the Hub
        return [key for name, key in keys.items() if name in local]

    def _lora_identity(self, domain: str) -> dict[str, Any] | None:
        source = self.sources().get(f"lora/{domain}")
        return None if source is None else source.identity

    def identity(self) -> dict[str, Any]:
        """Everything besides the plan that decides the pixels: goes into the dataset fingerprint."""
        if self._identity is None:
            sources = self.sources()
            opts = self.options
            self._identity = {
                "backend": self.name,
                "base": sources["base"].identity,
                "controlnet": sources["controlnet"].identity,
                "lora": {domain: self._lora_identity(domain) for domain in sorted(opts.lora)},
                # only when the ControlNet brought its own: base-model identities stay as they were
                **{name: sources[name].identity for name in COMPANIONS if name in sources},
                "scheduler": opts.scheduler,
                "steps": opts.steps,
                "guidance_scale": opts.guidance_scale,
                "controlnet_scale": opts.controlnet_scale,
                "negative_prompt": opts.negative_prompt,
                "dtype": self.dtype_name,
                # CPU and GPU kernels differ in the last bits; their datasets are not byte-identical.
                "device_type": self.device.split(":")[0],
            }
        return self._identity

    def provenance(self, spec: SampleSpec) -> dict[str, Any]:
        """A row's `renderer` column: the identity with only the LoRA of that sample's domain."""
        identity = dict(self.identity())
        identity["lora"] = {"domain": spec.domain, "adapter": self._lora_identity(spec.domain)}
        if spec.sample_id in self._redecoded:
            identity["vae_redecode"] = "fp32"
        return identity

    def expect_domains(self, domains: set[str] | list[str]) -> None:
        """Optional hint from the executor, before the first batch: the domains of the run's plan.

        With one domain its adapter is fused (fastest); with several, adapters are switched and never
        fused, so that every sample renders the same way whatever the order of batches.
        """
        unmapped = sorted(set(domains) - set(self.options.lora))
        if unmapped:
            raise self._unmapped(unmapped[0])
        self._single_domain = len(set(domains)) == 1

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load the pipeline once: safetensors only, no safety checker, no remote code. The thread
        pools are sized for an in-process render as `busforge render` sizes them (a Ray actor's
        executor sizes them again to its share), whoever calls this."""
        import torch

        from busforge.executors.threads import in_process_threads, limit_threads

        limit_threads(in_process_threads())
        from transformers.utils import logging as transformers_logging

        # Importing the SD pipelines makes transformers warn that torchvision is absent (busforge does
        # not use its image processors): a notice, not a problem, so keep it off the user's terminal.
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            import diffusers
            from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
        finally:
            transformers_logging.set_verbosity(verbosity)
        from busforge import quiet

        quiet.apply()  # --quiet: no loading bars or notices from diffusers, transformers, peft

        sources = self.sources()
        dtype = getattr(torch, DTYPES[self.dtype_name])
        base, control = sources["base"], sources["controlnet"]
        controlnet = ControlNetModel.from_pretrained(
            control.pretrained, revision=control.revision, dtype=dtype, use_safetensors=True
        )
        companions = {
            name: load_companion(name, sources[name].pretrained, dtype=dtype)
            for name in COMPANIONS
            if name in sources
        }
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            base.pretrained,
            revision=base.revision,
            controlnet=controlnet,
            **companions,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            dtype=dtype,
            use_safetensors=True,
        )
        scheduler_class = getattr(diffusers, SCHEDULERS[self.options.scheduler])
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(self.device)
        if self.device.startswith("cuda"):
            # NHWC convolutions are the fast layout for tensor cores; SDPA is diffusers' default.
            for module in (pipe.unet, pipe.controlnet, pipe.vae):
                module.to(memory_format=torch.channels_last)
        self.pipe = pipe

    def _activate(self, domain: str) -> None:
        """Make `domain`'s adapter (or the bare base model, if mapped to null) the one in effect."""
        if domain == self._active:
            return
        if domain not in self.options.lora:
            raise self._unmapped(domain)
        source = self.sources().get(f"lora/{domain}")
        pipe = self.pipe
        first = self._active is None
        if first and self._single_domain:
            if source is not None:
                self._load_adapter(domain, source)
                pipe.fuse_lora(adapter_names=[domain])
                self._fused = domain
            self._maybe_compile()
        else:
            # From now on adapters are switched, not fused, so the run renders every domain alike.
            self._drop_compile()
            if self._fused is not None:
                pipe.unfuse_lora()
                self._fused = None
            if source is None:
                if self._loaded:
                    pipe.disable_lora()
            else:
                self._load_adapter(domain, source)
                pipe.enable_lora()
                pipe.set_adapters([domain])
        self._active = domain

    def _unmapped(self, domain: str) -> BadInput:
        mapped = ", ".join(sorted(self.options.lora)) or "none"
        return BadInput(
            f"no LoRA adapter for domain {domain!r} (mapped: {mapped}); "
            f"map it to a folder holding {LORA_FILE}, or to null to render it with the base model only",
            key=f"renderer.lora.{domain}",
        )

    def _load_adapter(self, domain: str, source: ModelSource) -> None:
        if domain not in self._loaded:
            import warnings

            from diffusers.utils import logging as diffusers_logging

            # Two notices that always hold here and need no action: busforge's adapters are UNet-only
            # ("No LoRA keys associated to CLIPTextModel"), and a second domain's adapter joins the
            # first ("Already found a `peft_config` attribute").
            verbosity = diffusers_logging.get_verbosity()
            diffusers_logging.set_verbosity_error()
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                    self.pipe.load_lora_weights(
                        source.pretrained,
                        weight_name=LORA_FILE,
                        adapter_name=domain,
                        revision=source.revision,
                        use_safetensors=True,  # never a pickle, whatever the folder holds
                    )
            finally:
                diffusers_logging.set_verbosity(verbosity)
            self._loaded.add(domain)

    def _maybe_compile(self) -> None:
        if not self.compile:
            return
        import torch

        for name in ("unet", "controlnet"):
            module = getattr(self.pipe, name)
            self._uncompiled[name] = module
            setattr(self.pipe, name, torch.compile(module))
        self._uncompiled["vae.decoder"] = self.pipe.vae.decoder
        self.pipe.vae.decoder = torch.compile(self.pipe.vae.decoder)

    def _drop_compile(self) -> None:
        """Back to the eager modules before LoRA layers change (compiled graphs would be stale)."""
        for name, module in self._uncompiled.items():
            if name == "vae.decoder":
                self.pipe.vae.decoder = module
            else:
                setattr(self.pipe, name, module)
        self._uncompiled = {}

    # ------------------------------------------------------------------ rendering

    def render(self, items: list[RenderItem]) -> list[np.ndarray]:
        """One grey uint8 image per item, in order; items are grouped by domain (one adapter each)."""
        if self.pipe is None:
            self.load()
        images: list[np.ndarray | None] = [None] * len(items)
        by_domain: dict[str, list[int]] = {}
        for position, item in enumerate(items):
            by_domain.setdefault(item.spec.domain, []).append(position)
        for domain, positions in by_domain.items():
            self._activate(domain)
            for position, image in zip(
                positions, self._render_group([items[p] for p in positions]), strict=True
            ):
                images[position] = image
        return images  # type: ignore[return-value]

    def _render_group(self, items: list[RenderItem]) -> list[np.ndarray]:
        """Render in sub-batches of at most `self._chunk`; on CUDA OOM halve it and retry.

        Compiled, a short sub-batch is padded to `self._chunk` with copies of its last item (their
        images dropped): a new batch size would compile the graphs again, for minutes.
        """
        import torch

        out: list[np.ndarray] = []
        start = 0
        while start < len(items):
            part = items[start : start + self._chunk]
            count = len(part)
            if self._uncompiled and count < self._chunk:
                part = part + [part[-1]] * (self._chunk - count)
            try:
                out.extend(self._denoise(part)[:count])
            except torch.cuda.OutOfMemoryError:
                if len(part) == 1:
                    raise
                self._chunk = max(1, len(part) // 2)
                log.warning("CUDA out of memory at batch %d; retrying with %d", len(part), self._chunk)
                torch.cuda.empty_cache()
                continue
            except (BadInput, NonFiniteImage):
                raise
            except Exception as err:
                # Compiling happens at the first call (and at a new shape): a missing Triton or C
                # compiler raises here. Anything else fails again eagerly and is raised from there.
                if not self._uncompiled:
                    raise
                self._compile_failed(err)
                continue
            start += count
        return out

    def _compile_failed(self, err: Exception) -> None:
        """One warning, then eager modules for the rest of the run (the batch is retried)."""
        cause = getattr(err, "inner_exception", None) or err
        first_line = (str(cause).strip().splitlines() or [""])[0]
        log.warning(
            "torch.compile failed (%s: %s); rendering eagerly (not compiled) from here on "
            "(set renderer.compile: false to skip the attempt)",
            type(cause).__name__,
            first_line,
        )
        self._drop_compile()
        self.compile = False

    def _denoise(self, items: list[RenderItem]) -> list[np.ndarray]:
        import torch
        from PIL import Image

        size = self.image_size
        conditioning = [Image.fromarray(_mask_rgb(item.mask, size)) for item in items]
        # CPU generators: the same noise on every device, one stream per sample.
        generators = [torch.Generator("cpu").manual_seed(item.spec.seed) for item in items]
        negative = self.options.negative_prompt
        result = self.pipe(
            prompt=[item.prompt for item in items],
            image=conditioning,
            height=size,
            width=size,
            num_inference_steps=self.options.steps,
            guidance_scale=self.options.guidance_scale,
            controlnet_conditioning_scale=self.options.controlnet_scale,
            negative_prompt=[negative] * len(items) if negative else None,
            generator=generators,
            output_type="latent",
        )
        pixels = self._decode(result.images, items)
        rgb = self.pipe.image_processor.postprocess(pixels, output_type="np")  # (n, H, W, 3) in [0, 1]
        grey = np.clip(np.asarray(rgb, dtype=np.float32) @ LUMA, 0.0, 1.0)
        return [np.round(g * 255).astype(np.uint8) for g in grey]

    def _decode(self, latents: Any, items: list[RenderItem]) -> Any:
        """The VAE decode the pipeline would do, then a finiteness check per image (see the module doc)."""
        import torch

        vae = self.pipe.vae
        with torch.no_grad():
            pixels = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
        finite = torch.isfinite(pixels.flatten(1)).all(dim=1).tolist()
        for i in (i for i, ok in enumerate(finite) if not ok):
            pixels[i] = self._decode_fp32(latents[i : i + 1], items[i]).to(pixels.dtype)[0]
        return pixels

    def _decode_fp32(self, latent: Any, item: RenderItem) -> Any:
        """Decode one latent again in fp32, or stop the run naming the sample."""
        import torch

        spec = item.spec
        where = f"sample {spec.sample_id} (seed {spec.seed}, domain {spec.domain})"
        if not torch.isfinite(latent).all():
            raise NonFiniteImage(
                f"{where}: the denoised latents are NaN or inf in {self.dtype_name} (the UNet or "
                "ControlNet overflowed; re-decoding cannot help); render with renderer.dtype: bf16 "
                "or fp32, or check the ControlNet and LoRA weights"
            )
        post_quant_conv, decoder = self._fp32_decoder()
        with torch.no_grad():
            z = latent.float() / self.pipe.vae.config.scaling_factor
            pixel = decoder(z if post_quant_conv is None else post_quant_conv(z))
        if not torch.isfinite(pixel).all():
            raise NonFiniteImage(
                f"{where}: the VAE decode is NaN or inf even in fp32 (latents outside what the "
                "decoder was trained on?); check the ControlNet and LoRA weights, or try "
                "renderer.dtype: fp32"
            )
        if not self._redecoded:
            log.warning(
                "%s: the %s VAE decode was not finite; decoded again in fp32 (this and any further "
                "re-decode is recorded in the row's renderer column as vae_redecode)",
                where,
                self.dtype_name,
            )
        self._redecoded.add(spec.sample_id)
        return pixel

    def _fp32_decoder(self) -> tuple[Any, Any]:
        """An fp32 copy of the eager post-quant conv and VAE decoder, made the first time one is needed."""
        if self._decoder32 is None:
            import copy

            vae = self.pipe.vae
            decoder = self._uncompiled.get("vae.decoder", vae.decoder)
            post = getattr(vae, "post_quant_conv", None)
            self._decoder32 = (
                None if post is None else copy.deepcopy(post).float(),
                copy.deepcopy(decoder).float(),
            )
        return self._decoder32

    # ------------------------------------------------------------------ batch size

    def _resolve_batch_size(self) -> int:
        if self.options.batch_size != "auto":
            return int(self.options.batch_size)
        if not self.device.startswith("cuda"):
            return CPU_BATCH_SIZE
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(self.device))
        per_image = IMAGE_BYTES_512_HALF * (self.image_size / 512) ** 2
        per_image *= (2 if self.options.guidance_scale > 1 else 1) / 2  # the estimate assumes CFG
        per_image *= 2 if self.dtype_name == "fp32" else 1
        weights = WEIGHT_BYTES_HALF * (2 if self.dtype_name == "fp32" else 1)
        fits = int((0.9 * free - weights) // per_image)
        return max(1, min(MAX_AUTO_BATCH, fits))


def one_error(problems: list[BadInput]) -> BadInput:
    """Several problems as one line, so that one run shows everything to fix."""
    if len(problems) == 1:
        return problems[0]
    items = "; ".join(
        f"({i}) {p.message if p.key is None else f'{p.key}: {p.message}'}" for i, p in enumerate(problems, 1)
    )
    return BadInput(f"the diffusion renderer lacks {len(problems)} things: {items}", key="renderer")


def _mask_rgb(mask: np.ndarray, size: int) -> np.ndarray:
    """The lesion mask as a 3-channel 0/255 conditioning image at the render size (nearest)."""
    from PIL import Image

    grey = (np.asarray(mask) > 0).astype(np.uint8) * 255
    if grey.shape != (size, size):
        grey = np.asarray(Image.fromarray(grey).resize((size, size), Image.Resampling.NEAREST))
    return np.repeat(grey[:, :, None], 3, axis=2)


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _wants_compile(option: bool | str, device: str, samples: int | None) -> bool:
    """`compile: auto`: on CUDA, for runs large enough that compiling pays (COMPILE_AUTO_MIN_IMAGES)."""
    if option != "auto":
        return bool(option)
    return device.startswith("cuda") and samples is not None and samples >= COMPILE_AUTO_MIN_IMAGES


def _resolve_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        if dtype != "fp32" and device == "cpu":
            raise BadInput(
                f"{dtype} on the CPU is slow and poorly supported; use fp32 or auto", key="renderer.dtype"
            )
        return dtype
    return "fp16" if device.startswith(("cuda", "mps")) else "fp32"
