"""Parameter counts of the SD 1.5 architecture, built on the meta device (no weights, no download)."""

import pytest

from busforge.errors import BadInput
from busforge.train.arch import controlnet_counts, lora_counts, unet_counts


@pytest.mark.parametrize(
    ("rank", "expected", "paper_millions"),
    [(2, 398_592, "0.40"), (4, 797_184, "0.80"), (8, 1_594_368, "1.59")],
)
def test_lora_counts_match_paper_table_2(rank, expected, paper_millions):
    counts = lora_counts("sd15", rank)
    assert counts.trainable == expected
    assert f"{counts.trainable / 1e6:.2f}" == paper_millions
    assert counts.total == 859_520_964 + expected


def test_full_unet_is_paper_859_52m():
    n = unet_counts("sd15")
    assert n == 859_520_964
    assert f"{n / 1e6:.2f}" == "859.52"


def test_controlnet_counts_add_up():
    only = controlnet_counts("sd15", train_unet=False, train_vae_encoder=False)
    both = controlnet_counts("sd15", train_unet=True, train_vae_encoder=True)
    assert set(only.parts) == {"controlnet"}
    assert only.trainable == 361_279_120
    assert both.parts["unet"] == 859_520_964
    assert both.trainable == only.trainable + 859_520_964 + both.parts["vae encoder"]
    assert only.total == both.total > both.trainable


def test_unknown_arch_is_bad_input():
    with pytest.raises(BadInput, match="--arch sdxl"):
        lora_counts("sdxl", 4)
