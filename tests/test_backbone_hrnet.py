"""HRNetV2-W48 backbone: upstream state-dict layout, parity with the upstream fixtures, stem switch.

The parity tests fill the backbone with the deterministic fill (seeded from the full upstream
key `backbone_net.*`), run the fixture input and compare the per-channel mean / std of the
backbone output with those recorded from upstream sssegmentation (tests/fixtures/parity/,
copied from shared/parity/). Both HRNet fixtures (MCIBI cocostuff10k, MCIBI++ LIP) build the
backbone with `mcibi_version` false.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.models.backbones.hrnet import hrnetv2_w48
from repro.models.fill import deterministic_fill

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
PARITY_CONFIGS = ["mcibi_deeplabv3_hrnetv2w48_cocostuff10k", "mcibiplusplus_aspp_hrnetv2w48_lip"]
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def filled_state_dict() -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # only the keys, shapes and dtypes are needed to derive the fill
        layout = hrnetv2_w48().state_dict()
    template = {k: torch.zeros(v.shape, dtype=v.dtype) if not v.is_floating_point() else v for k, v in layout.items()}
    return deterministic_fill(template, prefix="backbone_net.")


def filled_hrnet(state_dict: dict[str, torch.Tensor], **kwargs) -> torch.nn.Module:
    """hrnetv2_w48(**kwargs) holding `state_dict`, without paying for a random initialisation."""
    with torch.device("meta"):
        model = hrnetv2_w48(**kwargs)
    model.to_empty(device="cpu")
    model.load_state_dict(state_dict, strict=True)
    return model


@pytest.fixture(scope="module")
def filled_backbone(filled_state_dict) -> torch.nn.Module:
    return filled_hrnet(filled_state_dict)


def channel_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (unbiased, torch's default) std over batch and space, in float64."""
    flat = features.double().transpose(0, 1).reshape(features.shape[1], -1)
    return flat.mean(dim=1).numpy(), flat.std(dim=1).numpy()


def test_state_dict_matches_upstream_keys_shapes_dtypes():
    reference = json.loads((FIXTURES / "hrnetv2_w48_backbone_keys.json").read_text())
    with torch.device("meta"):
        model = hrnetv2_w48()
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert ours == reference["keys"]


def test_built_in_eval_mode_with_batchnorm():
    with torch.device("meta"):
        model = hrnetv2_w48()
    assert not model.training
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is torch.nn.BatchNorm2d and m.eps == 1e-5 for m in norms)


@pytest.mark.parametrize("config", PARITY_CONFIGS)
def test_output_matches_upstream_fixture(config, filled_backbone):
    arrays = np.load(FIXTURES / f"{config}.npz")
    meta = json.loads((FIXTURES / f"{config}.json").read_text())
    backbone_outputs = sorted(k for k in meta["module_output_shapes"] if k.startswith("backbone_net."))

    with torch.no_grad():
        outputs = filled_backbone(torch.from_numpy(arrays["input"]))

    assert isinstance(outputs, tuple)
    assert len(outputs) == len(backbone_outputs)
    for index, features in enumerate(outputs):
        name = f"backbone_net.out{index}"
        assert list(features.shape) == meta["module_output_shapes"][name]
        mean, std = channel_stats(features)
        ref_mean, ref_std = arrays[f"{name}.channel_mean"], arrays[f"{name}.channel_std"]
        assert np.abs(mean - ref_mean).max() <= RELATIVE_TOLERANCE * np.abs(ref_mean).max()
        assert np.abs(std - ref_std).max() <= RELATIVE_TOLERANCE * np.abs(ref_std).max()


class StopForward(Exception):
    """Raised by a hook once the tensor under test has been seen: the rest of the net is not needed."""


def conv2_input(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []

    def record_and_stop(_module, args):
        seen.append(args[0].clone())
        raise StopForward

    handle = model.conv2.register_forward_pre_hook(record_and_stop)
    try:
        with torch.no_grad(), pytest.raises(StopForward):
            model(x)
    finally:
        handle.remove()
    return seen[0]


def test_mcibi_version_drops_the_relu_after_the_first_stem_norm(filled_state_dict, filled_backbone):
    # The cityscapes HRNet configs set mcibi_version: conv2 then sees bn1's raw (signed) output.
    x = torch.randn(1, 3, 33, 41, generator=torch.Generator().manual_seed(0))
    stem = filled_backbone_stem(filled_state_dict, x)
    with_relu = conv2_input(filled_backbone, x)
    without_relu = conv2_input(filled_hrnet(filled_state_dict, mcibi_version=True), x)
    torch.testing.assert_close(without_relu, stem, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(with_relu, stem.clamp(min=0), rtol=1e-5, atol=1e-5)
    assert (without_relu < 0).any()


def filled_backbone_stem(state_dict: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """conv1 (3x3, stride 2, pad 1) + eval-mode batch norm, computed directly from the weights."""
    y = torch.nn.functional.conv2d(x, state_dict["conv1.weight"], stride=2, padding=1)
    scale = state_dict["bn1.weight"] / torch.sqrt(state_dict["bn1.running_var"] + 1e-5)
    shift = state_dict["bn1.bias"] - state_dict["bn1.running_mean"] * scale
    return y * scale[None, :, None, None] + shift[None, :, None, None]
