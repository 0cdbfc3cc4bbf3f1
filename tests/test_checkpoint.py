"""`load_checkpoint`: accepted formats and every error path, each a one-line CheckpointError."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from repro.errors import CheckpointError
from repro.models import build_architecture, load_checkpoint

NUM_CLASSES = 4


class TinySegmentor(nn.Module):
    """A few modules named like the real segmentors (class count on the memory and classifier)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.backbone_net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.memory_module = nn.Module()
        self.memory_module.memory = nn.Parameter(torch.zeros(num_classes, 2), requires_grad=False)
        self.decoder_cls = nn.Sequential(OrderedDict(conv2=nn.Conv2d(6, num_classes, 1)))
        self.model_id = "tiny_model"


@dataclass
class ArbitraryObject:
    """Something a weights-only unpickler must refuse."""

    payload: str = "not a tensor"


def random_state_dict(num_classes: int = NUM_CLASSES, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = TinySegmentor(num_classes).state_dict()
    return {k: torch.randn(v.shape, generator=generator) if v.is_floating_point() else v + 3 for k, v in state.items()}


def assert_loaded(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def error_of(model: nn.Module, source, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, source, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# ---- accepted formats ----

def test_bare_state_dict():
    model, state = TinySegmentor(), random_state_dict()
    report = load_checkpoint(model, state)
    assert_loaded(model, state)
    assert report.skipped == [] and report.missing == [] and report.unexpected == []


def test_upstream_published_format_from_file(tmp_path):
    state = random_state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state, "epoch": 130, "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]}}, path)
    model = TinySegmentor()
    load_checkpoint(model, path)
    assert_loaded(model, state)
    model2 = TinySegmentor()
    load_checkpoint(model2, str(path))
    assert_loaded(model2, state)


def test_module_prefix_is_stripped(tmp_path):
    state = random_state_dict()
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    model = TinySegmentor()
    load_checkpoint(model, path)
    assert_loaded(model, state)


def test_training_only_keys_are_skipped_and_reported():
    state = random_state_dict()
    extra = {"auxiliary_decoder.0.weight": torch.zeros(2, 6, 3, 3), "auxiliary_decoder.4.bias": torch.zeros(NUM_CLASSES)}
    model = TinySegmentor()
    report = load_checkpoint(model, {**state, **extra})
    assert sorted(report.skipped) == sorted(extra)
    assert_loaded(model, state)


def test_missing_batchnorm_counters_are_tolerated():
    state = {k: v for k, v in random_state_dict().items() if not k.endswith("num_batches_tracked")}
    model = TinySegmentor()
    report = load_checkpoint(model, state)
    assert report.missing == ["backbone_net.1.num_batches_tracked"]
    assert torch.equal(model.backbone_net[1].running_mean, state["backbone_net.1.running_mean"])


def test_not_strict_tolerates_and_reports_missing_and_unexpected():
    state = random_state_dict()
    del state["backbone_net.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    model = TinySegmentor()
    report = load_checkpoint(model, state, strict=False)
    assert report.missing == ["backbone_net.0.bias"] and report.unexpected == ["extra.weight"]
    assert torch.equal(model.backbone_net[0].weight, state["backbone_net.0.weight"])


# ---- error paths ----

def test_missing_file(tmp_path):
    message = error_of(TinySegmentor(), tmp_path / "absent.pth")
    assert "not found" in message


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy-pickle"])
def test_truncated_file(tmp_path, zip_format):
    path = tmp_path / "truncated.pth"
    torch.save({"model": random_state_dict()}, path, _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = error_of(TinySegmentor(), path)
    assert "truncated" in message and str(path) in message


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "page.pth"
    path.write_text("<html>404 Not Found</html>\n")
    message = error_of(TinySegmentor(), path)
    assert "is not a PyTorch checkpoint" in message and "download it again" in message


def test_pickle_refused_by_weights_only(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"model": random_state_dict(), "meta": ArbitraryObject()}, path)
    message = error_of(TinySegmentor(), path)
    assert "weights_only" in message


def test_not_a_state_dict():
    assert "not a state dict" in error_of(TinySegmentor(), {"model": {"layer.weight": [1.0, 2.0]}})
    assert "no state dict" in error_of(TinySegmentor(), {})


def test_wrong_class_count_names_the_likely_dataset():
    model = TinySegmentor(num_classes=182)
    message = error_of(model, random_state_dict(num_classes=124))
    assert "this checkpoint has 124 classes (VSPW?), model tiny_model expects 182" in message


def test_missing_keys():
    state = random_state_dict()
    for key in ("backbone_net.0.weight", "backbone_net.0.bias", "backbone_net.1.weight", "backbone_net.1.bias"):
        del state[key]
    message = error_of(TinySegmentor(), state)
    assert "does not fit model tiny_model: lacks 4 of the 10 weights it needs (backbone_net.0.weight" in message


def test_unexpected_keys():
    state = random_state_dict()
    state["context_within_image_module.bottleneck.0.weight"] = torch.zeros(3)
    message = error_of(TinySegmentor(), state)
    assert "has 1 weights it does not know (context_within_image_module.bottleneck.0.weight)" in message


def test_shape_mismatch():
    state = random_state_dict()
    state["backbone_net.0.weight"] = torch.zeros(6, 3, 5, 5)
    message = error_of(TinySegmentor(), state)
    assert "backbone_net.0.weight is (6, 3, 5, 5) in the checkpoint but (6, 3, 3, 3)" in message


# ---- the real architectures (built on the meta device: only names and shapes matter here) ----

def meta_model(config: str) -> nn.Module:
    with torch.device("meta"):
        return build_architecture(config)


def test_real_models_wrong_dataset():
    model = meta_model("mcibiplusplus_upernet_resnet101os8_cocostuff10k")
    vspw_state = meta_model("mcibiplusplus_upernet_resnet101os8_vspw").state_dict()
    message = error_of(model, {"model": vspw_state})
    assert message.startswith("this checkpoint has 124 classes (VSPW?), "
                              "model mcibiplusplus_upernet_resnet101os8_cocostuff10k expects 182")


def test_real_models_mcibi_checkpoint_into_mcibiplusplus():
    # Same class count, other method: the memory has another shape and most names differ.
    model = meta_model("mcibiplusplus_aspp_resnet50os8_ade20k")
    mcibi_state = meta_model("mcibi_deeplabv3_resnet50os8_ade20k").state_dict()
    message = error_of(model, mcibi_state)
    assert "its memory is MCIBI's but the model is MCIBI++: is it another model's checkpoint?" in message
