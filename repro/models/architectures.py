"""Upstream config name -> architecture: which network each of the 55 zoo configs builds.

The table below records, for every sssegmentation config of the two zoos, the options of its
test-time network as the config sets them (read from the upstream config files; facts only).
Configs of one family differ in more than the class count: LIP MCIBI ResNet heads use
LeakyReLU, the MCIBI ViT-L ADE20k ASPP uses dilations 1/6/12/18, two HRNet configs drop the
stem's first ReLU ("mcibi_version"; the other four HRNet configs too in their "training-era"
variant, see ERA_STEM_CONFIGS), the MCIBI++ heads vary in whether the context branch has a
self-attention block, in the decoders' kernel sizes, in ASPP vs PPM, in the FPN width, and one
config gathers the memory with the pixel-representation logits: the 55 configs build 34 distinct
networks (class counts aside), not one per backbone/head family. Options that add or reshape
weights are checked against upstream's state-dict keys by the tests; the others
(`act`, `dilations`, `hrnet_mcibi_version`, `force_use_preds_pr`) only change the forward pass.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

from torch import nn

from ..datasets.registry import get_spec
from ..errors import ReproError, UnknownModelError
from .backbones import BACKBONES, build_backbone

DEFAULT_ASPP_DILATIONS = (1, 12, 24, 36)

# Forwards a config can be run with. "upstream-head": upstream's current code as the config says.
# "training-era": the forward its checkpoint was trained with, where that differs (see below);
# for every other config the two names give the same network.
VARIANTS = ("training-era", "upstream-head")
DEFAULT_VARIANT = "upstream-head"
# Upstream's HRNet stem had no ReLU after bn1 from 2020 until commit 4602275d (2025-06-08,
# "refactor hrnet"), which added `x = self.relu(x)` there. Every MCIBI / MCIBI++ HRNet checkpoint
# was trained before that; upstream later set `mcibi_version=True` (the old stem) only in the two
# Cityscapes HRNet configs, so these four run today with a stem they were never trained with.
ERA_STEM_CONFIGS = frozenset({
    "mcibi_deeplabv3_hrnetv2w48_ade20k",
    "mcibi_deeplabv3_hrnetv2w48_cocostuff10k",
    "mcibi_deeplabv3_hrnetv2w48_lip",
    "mcibiplusplus_aspp_hrnetv2w48_lip",
})


@dataclass(frozen=True)
class ArchSpec:
    """Everything that shapes one config's test-time network, apart from the class count."""

    method: str  # "mcibi" | "mcibiplusplus"
    backbone: str  # key of repro.models.backbones.BACKBONES
    context: str | None = "aspp"  # context-within-image module: "aspp", "ppm" or None
    dilations: tuple[int, ...] = DEFAULT_ASPP_DILATIONS
    act: str = "relu"  # head activation ("relu" | "leaky_relu"); backbones always use ReLU
    hrnet_mcibi_version: bool = False  # HRNet stem without the ReLU after bn1
    # MCIBI only
    downsample_backbone: bool = False  # 3x3/2 conv-BN-act on the backbone output
    # MCIBI++ only
    cwi_self_attention: bool = True  # attention between memory output and context features
    decoder_kernels: tuple[tuple[str, int], ...] = field(default=())  # non-1x1 decoders, e.g. (("cls", 3),)
    downsample_before_sa: bool = False  # memory attention at half resolution
    force_use_preds_pr: bool = False  # gather memory with decoder_pr logits even with a context module
    fpn_out_channels: int | None = None  # UPerNet-style FPN (None = none)


def _mcibi(backbone: str, **options) -> ArchSpec:
    return ArchSpec(method="mcibi", backbone=backbone, **options)


def _mpp(backbone: str, *, cls: int = 1, cwi: int = 1, pr: int = 1, **options) -> ArchSpec:
    kernels = tuple((name, k) for name, k in (("pr", pr), ("cwi", cwi), ("cls", cls)) if k != 1)
    return ArchSpec(method="mcibiplusplus", backbone=backbone, decoder_kernels=kernels, **options)


def _same(spec: ArchSpec, *configs: str) -> dict[str, ArchSpec]:
    return {config: spec for config in configs}


_LEAKY = {"act": "leaky_relu"}
_UPER = {"fpn_out_channels": 512, "cwi_self_attention": False}

# Keyed by upstream's full config name (<method>_<head>_<backbone>_<dataset>), as its files are named.
ARCHITECTURES: dict[str, ArchSpec] = {
    # ---- MCIBI (all: ASPP context, memory v1) ----
    "mcibi_deeplabv3_hrnetv2w48_ade20k": _mcibi("hrnetv2_w48"),
    "mcibi_deeplabv3_hrnetv2w48_cityscapes": _mcibi("hrnetv2_w48", downsample_backbone=True,
                                                    hrnet_mcibi_version=True),
    "mcibi_deeplabv3_hrnetv2w48_cocostuff10k": _mcibi("hrnetv2_w48"),
    "mcibi_deeplabv3_hrnetv2w48_lip": _mcibi("hrnetv2_w48", downsample_backbone=True),
    **_same(_mcibi("resnest101"), "mcibi_deeplabv3_resnest101os8_ade20k", "mcibi_deeplabv3_resnest101os8_cityscapes",
            "mcibi_deeplabv3_resnest101os8_cocostuff10k", "mcibi_deeplabv3_resnest101os8_lip"),
    **_same(_mcibi("resnet101"), "mcibi_deeplabv3_resnet101os8_ade20k", "mcibi_deeplabv3_resnet101os8_cityscapes",
            "mcibi_deeplabv3_resnet101os8_cocostuff10k"),
    "mcibi_deeplabv3_resnet101os8_lip": _mcibi("resnet101", **_LEAKY),
    **_same(_mcibi("resnet50"), "mcibi_deeplabv3_resnet50os8_ade20k", "mcibi_deeplabv3_resnet50os8_cityscapes",
            "mcibi_deeplabv3_resnet50os8_cocostuff10k"),
    "mcibi_deeplabv3_resnet50os8_lip": _mcibi("resnet50", **_LEAKY),
    "mcibi_deeplabv3_vitlarge_ade20k": _mcibi("vit_large", dilations=(1, 6, 12, 18)),
    "mcibi_deeplabv3_vitlarge_cocostuff10k": _mcibi("vit_large"),
    # ---- MCIBI++ (memory v2) ----
    "mcibiplusplus_aspp_hrnetv2w48_cityscapes": _mpp("hrnetv2_w48", cwi=3, cls=3, downsample_before_sa=True,
                                                     cwi_self_attention=False, hrnet_mcibi_version=True),
    "mcibiplusplus_aspp_hrnetv2w48_lip": _mpp("hrnetv2_w48", cls=3, downsample_before_sa=True,
                                              cwi_self_attention=False),
    "mcibiplusplus_aspp_resnest101os8_cityscapes": _mpp("resnest101", cls=3),
    "mcibiplusplus_aspp_resnet101os8_cityscapes": _mpp("resnet101", cls=3),
    "mcibiplusplus_aspp_resnet50os8_ade20k": _mpp("resnet50", cls=3, cwi_self_attention=False),
    **_same(_mpp("resnet50"), "mcibiplusplus_aspp_resnet50os8_cityscapes", "mcibiplusplus_aspp_resnet50os8_lip"),
    "mcibiplusplus_aspp_resnet50os8_cocostuff10k": _mpp("resnet50", cls=3),
    "mcibiplusplus_ppm_resnet50os8_ade20k": _mpp("resnet50", context="ppm", force_use_preds_pr=True),
    "mcibiplusplus_ppm_resnet50os8_cityscapes": _mpp("resnet50", context="ppm", pr=3, cwi=3, cls=3,
                                                     cwi_self_attention=False),
    "mcibiplusplus_ppm_resnet50os8_cocostuff10k": _mpp("resnet50", context="ppm", cls=3),
    "mcibiplusplus_ppm_resnet50os8_lip": _mpp("resnet50", context="ppm"),
    **_same(_mpp("resnet50", context=None), "mcibiplusplus_resnet50os8_ade20k", "mcibiplusplus_resnet50os8_cityscapes",
            "mcibiplusplus_resnet50os8_cocostuff10k", "mcibiplusplus_resnet50os8_lip"),
    **_same(_mpp("resnest101", cls=3, **_UPER), "mcibiplusplus_upernet_resnest101os8_ade20k",
            "mcibiplusplus_upernet_resnest101os8_pascalcontext59"),
    "mcibiplusplus_upernet_resnest101os8_cocostuff10k": _mpp("resnest101", context="ppm", cwi=3, cls=3, **_UPER),
    "mcibiplusplus_upernet_resnest101os8_lip": _mpp("resnest101", context="ppm", cls=3, **_UPER),
    **_same(_mpp("resnet101", cls=3, **_UPER), "mcibiplusplus_upernet_resnet101os8_ade20k",
            "mcibiplusplus_upernet_resnet101os8_cocostuff10k", "mcibiplusplus_upernet_resnet101os8_pascalcontext59",
            "mcibiplusplus_upernet_resnet101os8_vspw"),
    **_same(_mpp("resnet101", context="ppm", cls=3, **_UPER), "mcibiplusplus_upernet_resnet101os8_lip",
            "mcibiplusplus_upernet_resnet101os8_voc"),
    **_same(_mpp("resnet50", context="ppm", cls=3, **_UPER), "mcibiplusplus_upernet_resnet50os8_ade20k",
            "mcibiplusplus_upernet_resnet50os8_cocostuff10k", "mcibiplusplus_upernet_resnet50os8_lip"),
    "mcibiplusplus_upernet_resnet50os8_cityscapes": _mpp("resnet50", context="ppm", fpn_out_channels=1024,
                                                         cwi_self_attention=False),
    **_same(_mpp("resnet50", cls=3, **_UPER), "mcibiplusplus_upernet_resnet50os8_voc",
            "mcibiplusplus_upernet_resnet50os8_vspw"),
    "mcibiplusplus_upernet_swinlarge_ade20k": _mpp("swin_large", cls=3, fpn_out_channels=512),
    **_same(_mpp("swin_large", cls=3, **_UPER), "mcibiplusplus_upernet_swinlarge_cocostuff10k",
            "mcibiplusplus_upernet_swinlarge_pascalcontext59"),
    "mcibiplusplus_upernet_swinlarge_lip": _mpp("swin_large", context="ppm", **_UPER),
    "mcibiplusplus_upernet_swinlarge_vspw": _mpp("swin_large", context="ppm", cwi=3, cls=3, fpn_out_channels=512),
}


def config_num_classes(upstream_config: str) -> int:
    """The class count of the dataset the config names last (its spec in repro.datasets)."""
    return get_spec(upstream_config.rsplit("_", 1)[-1]).num_classes


def architecture_spec(upstream_config: str) -> ArchSpec:
    try:
        return ARCHITECTURES[upstream_config]
    except KeyError:
        close = difflib.get_close_matches(upstream_config, list(ARCHITECTURES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown upstream config {upstream_config!r}{hint}") from None


def config_variants(upstream_config: str) -> tuple[str, ...]:
    """The distinct forwards of a config, the default first (the one its checkpoint was trained with)."""
    return VARIANTS if upstream_config in ERA_STEM_CONFIGS else (DEFAULT_VARIANT,)


def check_variant(variant: str, name: str) -> str:
    """`variant` if it is a known name (both are accepted for every config), else one line naming `name`."""
    if variant not in VARIANTS:
        raise ReproError(f"unknown variant {variant!r} for {name}; valid: {', '.join(VARIANTS)}",
                         exit_code=2)
    return variant


def variant_spec(spec: ArchSpec, upstream_config: str, variant: str) -> ArchSpec:
    """The spec of `variant`: the training-era HRNet stem where upstream's current config lost it."""
    if variant == "training-era" and upstream_config in ERA_STEM_CONFIGS:
        return replace(spec, hrnet_mcibi_version=True)
    return spec


def build_from_spec(spec: ArchSpec, num_classes: int) -> nn.Module:
    """The segmentor for `spec` with `num_classes` outputs (train mode, default init)."""
    from .mcibi import MCIBISegmentor
    from .mcibiplusplus import MCIBIPlusPlusSegmentor

    backbone_options = {"mcibi_version": True} if spec.hrnet_mcibi_version else {}
    backbone = build_backbone(spec.backbone, **backbone_options)
    out_channels = BACKBONES[spec.backbone].out_channels
    if spec.method == "mcibi":
        return MCIBISegmentor(
            backbone, out_channels[-1], num_classes, context=spec.context or "aspp", dilations=spec.dilations,
            act=spec.act, output_norm_channels=out_channels if spec.backbone == "vit_large" else None,
            downsample_backbone=spec.downsample_backbone,
        )
    if spec.method == "mcibiplusplus":
        return MCIBIPlusPlusSegmentor(
            backbone, out_channels[-1], num_classes, context=spec.context, dilations=spec.dilations,
            cwi_self_attention=spec.cwi_self_attention, decoder_kernels=dict(spec.decoder_kernels),
            downsample_before_sa=spec.downsample_before_sa, force_use_preds_pr=spec.force_use_preds_pr,
            fpn_channels=out_channels[:-1] if spec.fpn_out_channels is not None else None,
            fpn_out_channels=spec.fpn_out_channels or 512, act=spec.act,
        )
    raise ValueError(f"unknown method {spec.method!r}")


def build_architecture(upstream_config: str, num_classes: int | None = None,
                       variant: str = DEFAULT_VARIANT) -> nn.Module:
    """The network upstream config `upstream_config` builds, in eval mode, float32, on the current
    default device (CPU unless a `torch.device` context says otherwise), with default weights.

    `num_classes` defaults to the config's own class count; `variant` is one of `VARIANTS`
    ("training-era" differs from "upstream-head" only for `ERA_STEM_CONFIGS`).
    """
    spec = variant_spec(architecture_spec(upstream_config), upstream_config, check_variant(variant, upstream_config))
    if num_classes is None:
        num_classes = config_num_classes(upstream_config)
    model = build_from_spec(spec, num_classes)
    model.upstream_config = upstream_config
    model.arch_spec = spec
    model.variant = variant
    return model.float().eval()
