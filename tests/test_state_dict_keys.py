"""Every upstream config builds a network whose state dict is upstream's, key for key and shape for shape.

Reference: upstream's state-dict keys, shapes and dtypes for all 55 configs of the two zoos
(tests/fixtures/upstream_state_dict_keys.json.gz), minus the documented training-only prefixes.
Models are built on the meta device (shapes only, no memory, no initialisation), so this is fast.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from repro.errors import UnknownModelError
from repro.models import ARCHITECTURES, TRAINING_ONLY_PREFIXES, build_architecture, config_num_classes
from repro.models.backbones import BackboneUnavailableError

KEYS_FILE = Path(__file__).parent / "fixtures" / "upstream_state_dict_keys.json.gz"


@lru_cache(maxsize=1)
def upstream_keys() -> dict[str, list]:
    with gzip.open(KEYS_FILE, "rt") as f:
        return json.load(f)


def build_on_meta(config: str) -> torch.nn.Module:
    try:
        with torch.device("meta"):
            return build_architecture(config)
    except BackboneUnavailableError as err:
        pytest.fail(f"{config}: cannot build the architecture: {err}")


def test_registry_covers_exactly_the_upstream_configs():
    assert set(ARCHITECTURES) == set(upstream_keys())
    assert len(ARCHITECTURES) == 55


@pytest.mark.parametrize("config", sorted(upstream_keys()))
def test_state_dict_matches_upstream(config: str):
    model = build_on_meta(config)
    ours = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    theirs = {
        k: (tuple(shape), dtype) for k, shape, dtype in upstream_keys()[config] if not k.startswith(TRAINING_ONLY_PREFIXES)
    }
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    assert not missing, f"{config}: {len(missing)} upstream keys missing, e.g. {missing[:5]}"
    assert not extra, f"{config}: {len(extra)} keys upstream does not have, e.g. {extra[:5]}"
    wrong = [(k, ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]]
    assert not wrong, f"{config}: {len(wrong)} keys differ in shape/dtype, e.g. {wrong[:3]}"


def test_training_only_keys_are_only_auxiliary_decoders():
    # The skip list must not hide anything the test-time network uses: every skipped key belongs
    # to an auxiliary decoder, and no config has other keys our models lack (checked above).
    skipped = {k.split(".")[0] for rows in upstream_keys().values() for k, _, _ in rows if k.startswith(TRAINING_ONLY_PREFIXES)}
    assert skipped == {"auxiliary_decoder"}


def test_num_classes_follow_the_dataset_and_can_be_overridden():
    assert config_num_classes("mcibiplusplus_upernet_resnet101os8_vspw") == 124
    assert config_num_classes("mcibi_deeplabv3_resnet50os8_lip") == 20
    with torch.device("meta"):
        model = build_architecture("mcibiplusplus_resnet50os8_lip", num_classes=7)
    assert model.decoder_cls.conv2.weight.shape[0] == 7
    assert model.memory_module.memory.shape == (7, 2)


def test_unknown_config_is_a_one_line_error_with_suggestion():
    with pytest.raises(UnknownModelError) as info:
        build_architecture("mcibi_deeplabv3_resnet50os8_ade20")
    message = str(info.value)
    assert "\n" not in message
    assert "did you mean mcibi_deeplabv3_resnet50os8_ade20k" in message
