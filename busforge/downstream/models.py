"""The two downstream networks, both MONAI and randomly initialised unless `--init` gives weights:
a 2D U-Net segmenter (2 classes: background, lesion) and an EfficientNet-B0 classifier (benign, malignant)."""

from __future__ import annotations

from pathlib import Path

from busforge.downstream.profiles import Profile
from busforge.errors import BadInput

# EfficientNet-B0's blocks (MONAI's EfficientNetBN uses the same), so smoke widths scale the same design.
B0_BLOCKS = [
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
]
# PyTorch's default BatchNorm momentum: MONAI's EfficientNet default (0.01) leaves the running
# statistics near their initial values after a few hundred steps, so eval-mode outputs are off.
CLS_NORM = ("batch", {"eps": 1e-3, "momentum": 0.1})


def build_segmenter(profile: Profile, in_channels: int):
    from monai.networks.nets import UNet

    channels = tuple(profile.seg_channels)
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=2,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=profile.seg_res_units,
    )


def build_classifier(profile: Profile, in_channels: int):
    from monai.networks.nets import EfficientNet, EfficientNetBN

    if profile.cls_width == 1.0 and profile.cls_depth == 1.0:
        return EfficientNetBN(
            "efficientnet-b0",
            pretrained=False,
            spatial_dims=2,
            in_channels=in_channels,
            num_classes=2,
            norm=CLS_NORM,
        )
    return EfficientNet(
        B0_BLOCKS,
        spatial_dims=2,
        in_channels=in_channels,
        num_classes=2,
        width_coefficient=profile.cls_width,
        depth_coefficient=profile.cls_depth,
        image_size=profile.cls_size,
        norm=CLS_NORM,
    )


def build_model(task: str, profile: Profile, in_channels: int):
    return build_segmenter(profile, in_channels) if task == "seg" else build_classifier(profile, in_channels)


def describe(task: str, profile: Profile) -> str:
    if task == "seg":
        return (
            f"MONAI UNet (2D, widths {list(profile.seg_channels)}, {profile.seg_res_units} residual units), "
            "Dice + cross-entropy loss"
        )
    name = (
        "EfficientNet-B0"
        if (profile.cls_width, profile.cls_depth) == (1.0, 1.0)
        else f"EfficientNet (B0 blocks, width x{profile.cls_width}, depth x{profile.cls_depth})"
    )
    return f"MONAI {name}, cross-entropy loss"


def load_init(model, path: Path, task: str) -> None:
    """Initial weights from a local safetensors file (no pickle); every key must match."""
    from safetensors.torch import load_file

    if not path.is_file() or path.suffix != ".safetensors":
        raise BadInput(f"--init {task}={path}: not a .safetensors file")
    state = load_file(str(path))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape
        first = str(err).strip().splitlines()[-1].strip()
        raise BadInput(
            f"--init {task}={path}: does not fit the {task} network of this profile ({first})"
        ) from None
    if missing or unexpected:
        raise BadInput(
            f"--init {task}={path}: does not fit the {task} network of this profile "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})"
        )
