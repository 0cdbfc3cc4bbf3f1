"""Architecture options that change the forward pass without changing any weight shape.

The state-dict test cannot see these, so they are checked here against the upstream config
files' settings (facts read from sssegmentation's configs, not from our code):
- `mcibi_deeplabv3_resnet{50,101}os8_lip` set act_cfg LeakyReLU(0.01) for the head (the backbone
  keeps ReLU); no other config changes the activation;
- `mcibi_deeplabv3_vitlarge_ade20k` uses ASPP dilations [1, 6, 12, 18]; every other ASPP
  [1, 12, 24, 36];
- `mcibi_deeplabv3_hrnetv2w48_cityscapes` and `mcibiplusplus_aspp_hrnetv2w48_cityscapes` build
  HRNet with mcibi_version=True; the other HRNet configs do not;
- `mcibiplusplus_ppm_resnet50os8_ade20k` is the only config with force_use_preds_pr.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repro.models import ARCHITECTURES, build_architecture, build_segmentor

LEAKY_CONFIGS = {"mcibi_deeplabv3_resnet50os8_lip", "mcibi_deeplabv3_resnet101os8_lip"}
HRNET_MCIBI_VERSION = {"mcibi_deeplabv3_hrnetv2w48_cityscapes", "mcibiplusplus_aspp_hrnetv2w48_cityscapes"}


def build_on_meta(config: str) -> nn.Module:
    with torch.device("meta"):
        return build_architecture(config)


@pytest.mark.parametrize("config", sorted(LEAKY_CONFIGS) + ["mcibi_deeplabv3_resnet50os8_ade20k", "mcibiplusplus_resnet50os8_lip"])
def test_head_activation(config: str):
    model = build_on_meta(config)
    head_leaky = [m for name, m in model.named_modules() if not name.startswith("backbone_net") and isinstance(m, nn.LeakyReLU)]
    head_relu = [m for name, m in model.named_modules() if not name.startswith("backbone_net") and isinstance(m, nn.ReLU)]
    backbone_leaky = [m for m in model.backbone_net.modules() if isinstance(m, nn.LeakyReLU)]
    assert not backbone_leaky
    if config in LEAKY_CONFIGS:
        assert head_leaky and not head_relu
        assert all(m.negative_slope == 0.01 for m in head_leaky)
    else:
        assert head_relu and not head_leaky


def test_only_the_lip_resnet_mcibi_configs_use_leaky_relu():
    assert {c for c, spec in ARCHITECTURES.items() if spec.act != "relu"} == LEAKY_CONFIGS


@pytest.mark.parametrize("config, dilations", [
    ("mcibi_deeplabv3_vitlarge_ade20k", (1, 6, 12, 18)),
    ("mcibi_deeplabv3_vitlarge_cocostuff10k", (1, 12, 24, 36)),
    ("mcibi_deeplabv3_resnet50os8_ade20k", (1, 12, 24, 36)),
    ("mcibiplusplus_aspp_resnet50os8_ade20k", (1, 12, 24, 36)),
])
def test_aspp_dilations(config: str, dilations: tuple[int, ...]):
    model = build_on_meta(config)
    branches = model.context_within_image_module.parallel_branches
    assert tuple(branch[0].dilation[0] for branch in branches) == dilations
    assert tuple(branch[0].padding[0] for branch in branches) == (0,) + dilations[1:]


def test_hrnet_stem_variant():
    hrnet_configs = [c for c, spec in ARCHITECTURES.items() if spec.backbone == "hrnetv2_w48"]
    assert len(hrnet_configs) == 6
    for config in hrnet_configs:
        model = build_on_meta(config)
        assert model.backbone_net.mcibi_version == (config in HRNET_MCIBI_VERSION), config


def test_memory_gathering_logits():
    assert {c for c, spec in ARCHITECTURES.items() if spec.force_use_preds_pr} == {"mcibiplusplus_ppm_resnet50os8_ade20k"}
    assert build_on_meta("mcibiplusplus_ppm_resnet50os8_ade20k").force_use_preds_pr
    assert not build_on_meta("mcibiplusplus_ppm_resnet50os8_lip").force_use_preds_pr


def test_built_models_are_eval_float32():
    model = build_on_meta("mcibiplusplus_upernet_resnet50os8_voc")
    assert not model.training and not any(m.training for m in model.modules())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_build_segmentor_uses_the_manifest_entry():
    from repro.manifest import load_manifest

    entry = next(e for e in load_manifest().entries if e.aliases)
    with torch.device("meta"):
        model = build_segmentor(entry.aliases[0])
    assert model.model_id == entry.id
    assert model.upstream_config == entry.upstream_config
    assert model.num_classes == entry.num_classes


def _same_after_a_strict_load(config: str) -> list[str]:
    """Build `config` twice, with and without its random initial weights drawn, load the same
    filled weights strictly into both: every parameter and buffer (non-persistent ones too) must
    be equal, so skipping the draws (repro.models.load_segmentor) cannot change a number."""
    import torch

    from repro.models import build_architecture, deterministic_fill, random_init_skipped

    plain = build_architecture(config)
    with random_init_skipped():
        skipped = build_architecture(config)
    weights = deterministic_fill(plain.state_dict())
    plain.load_state_dict(weights, strict=True)
    skipped.load_state_dict(weights, strict=True)
    mine = dict(skipped.named_parameters()) | dict(skipped.named_buffers())
    return [name for name, tensor in [*plain.named_parameters(), *plain.named_buffers()]
            if not torch.equal(tensor, mine[name])]


@pytest.mark.parametrize("config", ["mcibi_deeplabv3_resnet50os8_ade20k", "mcibiplusplus_upernet_resnet50os8_lip"])
def test_skipping_the_random_initial_weights_changes_nothing_once_loaded(config):
    assert _same_after_a_strict_load(config) == []


@pytest.mark.slow
def test_skipping_the_random_initial_weights_changes_nothing_in_any_config():
    from repro.models import ARCHITECTURES

    differing = {config: diff for config in ARCHITECTURES if (diff := _same_after_a_strict_load(config))}
    assert differing == {}
