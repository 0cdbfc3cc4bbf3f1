"""Parity with upstream on all 55 configs, in float32 and float64, and for both forwards of the
four HRNet configs whose checkpoints were trained with the older stem.

Fixtures (tests/fixtures/parity/, README in each folder): `all/` and `all64/` are upstream's
current forward of every config ("upstream-head"); `era/` and `era64/` the training-era forward
of the four HRNet configs. Each model is built with `build_architecture(config, variant=...)`,
filled per FILL.md through `load_checkpoint`, run on the fixture's 1x3x75x113 input in float32,
then converted with `.double()` and run in float64. Bars: 1e-4 (float32; deep filled networks
amplify rounding) and 1e-9 (float64) of max|logit|. `tools/parity_table.py` prints the figures.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from parity_support import FIXTURE_SETS, PARITY_DIR, compare, filled_model, fixture_configs, upstream_keys

from repro.errors import ReproError
from repro.manifest import load_manifest
from repro.models import ERA_STEM_CONFIGS, VARIANTS, build_architecture, build_segmentor, config_variants

# Filling and running a config in both precisions takes 5-15 s of CPU (ViT-L / Swin-L: 30-60 s).
# The default run checks, in float64 (the bar that a real difference cannot hide under), one
# config per (method, head, backbone) family: those of the 15-fixture set
# (tests/fixtures/parity/*.npz, whose own test checks them in float32), without ViT-L and Swin-L
# (that test keeps them), plus both training-era sets of those families. `-m slow` checks all.
FAMILY_CONFIGS = {p.stem for p in PARITY_DIR.glob("*.npz")}
LARGE_BACKBONES = ("vitlarge", "swinlarge")


def in_default_run(config: str, fixture_set: str) -> bool:
    family = config in FAMILY_CONFIGS and not any(b in config for b in LARGE_BACKBONES)
    return family and fixture_set != "all"


def params(*fixture_sets: str) -> list:
    """(config, fixture_set) pairs, the sets of one config next to each other (one fill serves both)."""
    return [(c, f) if in_default_run(c, f) else pytest.param(c, f, marks=pytest.mark.slow)
            for c in fixture_configs(fixture_sets[0]) for f in fixture_sets]


@lru_cache(maxsize=1)
def cached_model(config: str, variant: str) -> torch.nn.Module:
    # The float32 and float64 checks of a config run one after the other: fill it once.
    return filled_model(config, variant)


def check(config: str, fixture_set: str) -> None:
    variant = FIXTURE_SETS[fixture_set][0]
    result = compare(cached_model(config, variant), config, fixture_set)
    assert result.ok, (f"{config} ({variant}) differs from {fixture_set}/ by {result.relative:.2e} of max|logit| "
                       f"(bar {result.bar:g})")


def test_fixture_sets_are_complete():
    assert fixture_configs("all") == fixture_configs("all64") == sorted(upstream_keys())
    assert len(fixture_configs("all")) == 55
    assert fixture_configs("era") == fixture_configs("era64") == sorted(ERA_STEM_CONFIGS)


@pytest.mark.parametrize(("config", "fixture_set"), params("all", "all64"))
def test_upstream_head_matches_upstream(config: str, fixture_set: str):
    check(config, fixture_set)


@pytest.mark.parametrize(("config", "fixture_set"), params("era", "era64"))
def test_training_era_matches_the_old_stem(config: str, fixture_set: str):
    check(config, fixture_set)


def test_the_two_forwards_really_differ():
    # Guards the fixtures and the variant switch: the wrong forward misses the float64 bar by far
    # (the training-era test shows the right one meets it).
    config = "mcibiplusplus_aspp_hrnetv2w48_lip"
    era_model = cached_model(config, "training-era")  # the era test's last model: no rebuild
    assert compare(era_model, config, "all64").relative > 1e-4


def test_variants_of_each_config():
    for config in upstream_keys():
        expected = VARIANTS if config in ERA_STEM_CONFIGS else ("upstream-head",)
        assert config_variants(config) == expected
    for config in ("mcibi_deeplabv3_hrnetv2w48_cityscapes", "mcibiplusplus_aspp_hrnetv2w48_cityscapes"):
        with torch.device("meta"):  # both names give the old stem these configs already use
            assert all(build_architecture(config, variant=v).arch_spec.hrnet_mcibi_version for v in VARIANTS)


def test_build_segmentor_defaults_to_the_rows_training_forward():
    manifest = load_manifest()
    with torch.device("meta"):
        for entry in manifest.entries:
            assert tuple(entry.variants) == config_variants(entry.upstream_config), entry.id
            model = build_segmentor(entry.id)
            assert model.variant == config_variants(entry.upstream_config)[0], entry.id
            assert model.arch_spec.hrnet_mcibi_version == (
                entry.upstream_config in ERA_STEM_CONFIGS or "cityscapes" in entry.upstream_config
                and "hrnet" in entry.upstream_config), entry.id
        era_id = next(e.id for e in manifest.entries if e.upstream_config == "mcibiplusplus_aspp_hrnetv2w48_lip")
        assert build_segmentor(era_id).variant == "training-era"
        current = build_segmentor(era_id, variant="upstream-head")
        assert current.variant == "upstream-head" and not current.arch_spec.hrnet_mcibi_version


def test_unknown_variant_is_one_line_listing_the_valid_ones():
    with pytest.raises(ReproError) as info:
        build_segmentor("mcibi_deeplabv3_hrnetv2w48_lip", variant="2021")
    message = str(info.value)
    assert "\n" not in message and "'2021'" in message and "training-era, upstream-head" in message
    assert info.value.exit_code == 2
