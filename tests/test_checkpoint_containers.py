"""Checkpoint files of every era of upstream's training scripts load, through `load_checkpoint`
and through `repro fetch ID --from FILE`, all with weights_only=True; files that do not fit the
model are one line that says what they look like.

Containers (upstream train.py over the years): 2021 {'epoch', 'model', 'optimizer'}; 2022 on
{'cur_epoch', 'cur_iter', 'optimizer', 'model'}; re-saved {'model'}; current training may add
'model_ema' and 'grad_scaler'; DataParallel 'module.' prefixes; torch's legacy (non-zip) format.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from fetch_support import fetch_env  # noqa: F401
from torch import nn
from typer.testing import CliRunner

from repro.cli import app
from repro.errors import CheckpointError
from repro.manifest import load_manifest
from repro.models import build_architecture, build_segmentor, deterministic_fill, load_checkpoint

NUM_CLASSES = 20  # LIP: the fetch tests import into a MCIBI++ LIP row
runner = CliRunner()


class SmallSegmentor(nn.Module):
    """A few modules named like an MCIBI++ segmentor (memory (K, 2), decoder_cls classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone_net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.memory_module = nn.Module()
        self.memory_module.memory = nn.Parameter(torch.zeros(NUM_CLASSES, 2), requires_grad=False)
        self.decoder_cls = nn.Sequential(OrderedDict(conv1=nn.Conv2d(8, 8, 3, padding=1), bn1=nn.BatchNorm2d(8),
                                                     conv2=nn.Conv2d(8, NUM_CLASSES, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder_cls(self.backbone_net(x))


def filled_state(prefix: str = "") -> dict[str, torch.Tensor]:
    """The FILL.md fill of SmallSegmentor (another `prefix` gives other values, e.g. for EMA weights)."""
    return deterministic_fill(SmallSegmentor().state_dict(), prefix)


def optimizer_state(model: nn.Module) -> dict:
    """A real SGD state after one step, as upstream saves it (ints, floats, bools, None, lists, tensors)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    model(torch.randn(2, 3, 8, 8)).mean().backward()
    optimizer.step()
    return optimizer.state_dict()


def container(kind: str, weights: dict[str, torch.Tensor] | None = None) -> dict:
    """Upstream's checkpoint containers around `weights` (default: the small segmentor's fill)."""
    weights = filled_state() if weights is None else weights
    donor = SmallSegmentor()  # the optimizer's state is another network's: only "model" must fit
    donor.load_state_dict(filled_state())
    optimizer = optimizer_state(donor)
    counters = {"cur_epoch": 150, "cur_iter": 82350}
    return {
        "2021": {"epoch": 130, "model": weights, "optimizer": optimizer},
        "2022": {**counters, "optimizer": optimizer, "model": weights},
        "model-only": {"model": weights},
        "no-optimizer": {**counters, "model": weights},
        "with-ema": {**counters, "optimizer": optimizer, "model": weights, "model_ema": filled_state("ema.")},
        "with-grad-scaler": {**counters, "optimizer": optimizer, "model": weights,
                             "grad_scaler": torch.amp.GradScaler("cpu").state_dict()},
        "bare": weights,
        "module-prefix": {**counters, "model": {f"module.{k}": v for k, v in weights.items()}},
    }[kind]


KINDS = ["2021", "2022", "model-only", "no-optimizer", "with-ema", "with-grad-scaler", "bare", "module-prefix"]
FORMATS = {"zip": True, "legacy": False}


def saved(tmp_path, kind: str, file_format: str, weights: dict[str, torch.Tensor] | None = None):
    path = tmp_path / "downloads" / f"{kind}-{file_format}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(container(kind, weights), path, _use_new_zipfile_serialization=FORMATS[file_format])
    return path


def assert_holds_the_model_weights(model: nn.Module) -> None:
    for key, value in filled_state().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("file_format", list(FORMATS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_container_loads_weights_only(tmp_path, kind, file_format):
    path = saved(tmp_path, kind, file_format)
    loaded = torch.load(path, weights_only=True)  # optimizer and scaler state pass weights_only
    if "optimizer" in loaded:
        assert loaded["optimizer"]["param_groups"][0]["momentum"] == 0.9
        assert all("momentum_buffer" in s for s in loaded["optimizer"]["state"].values())
    model = SmallSegmentor()
    report = load_checkpoint(model, path)
    assert report.missing == [] and report.unexpected == [] and report.skipped == []
    assert_holds_the_model_weights(model)


def test_ema_weights_on_request(tmp_path):
    path = saved(tmp_path, "with-ema", "zip")
    model = SmallSegmentor()
    load_checkpoint(model, path, ema=True)
    assert torch.equal(model.memory_module.memory, filled_state("ema.")["memory_module.memory"])
    with pytest.raises(CheckpointError, match="holds no 'model_ema' weights"):
        load_checkpoint(SmallSegmentor(), saved(tmp_path, "2022", "zip"), ema=True)


def test_ema_only_file_is_named_as_such(tmp_path):
    path = tmp_path / "ema_only.pth"
    torch.save({"cur_epoch": 150, "model_ema": filled_state("ema.")}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(SmallSegmentor(), path)
    message = str(info.value)
    assert "\n" not in message and "holds only 'model_ema'" in message and "ema=True" in message
    model = SmallSegmentor()
    load_checkpoint(model, path, ema=True)  # usable when asked for
    assert torch.equal(model.memory_module.memory, filled_state("ema.")["memory_module.memory"])


def lip_plusplus_row() -> str:
    return next(e.id for e in load_manifest().entries
                if e.method == "memorynetv2" and e.dataset == "lip" and e.num_classes == NUM_CLASSES)


def row_weights(model_id: str) -> dict[str, torch.Tensor]:
    """Every key and shape of the row's network (fetch --from checks them strictly), each tensor one
    number of its own broadcast to its shape: a file of a few hundred kB whose load is checkable."""
    with torch.device("meta"):
        shapes = build_segmentor(model_id).state_dict()
    return {key: torch.full((), (i % 997) / 997, dtype=t.dtype).expand(t.shape) for i, (key, t) in enumerate(shapes.items())}


@pytest.mark.parametrize("file_format", list(FORMATS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_container_imports_with_fetch_from(fetch_env, kind, file_format):  # noqa: F811
    model_id = lip_plusplus_row()
    weights = row_weights(model_id)
    path = saved(fetch_env, kind, file_format, weights)
    result = runner.invoke(app, ["fetch", model_id, "--weights-only", "--from", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    cached = list((fetch_env / "cache" / "checkpoints" / model_id).glob("*.pth"))
    assert [p.read_bytes() for p in cached] == [path.read_bytes()]  # imported as it is
    model = build_segmentor(model_id)
    load_checkpoint(model, cached[0])
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in weights.items())


# ---- files that do not fit: one line saying what they look like ----

def meta_model(config: str) -> nn.Module:
    with torch.device("meta"):  # names and shapes only
        return build_architecture(config)


def load_error(model: nn.Module, source) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, source)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_another_backbones_checkpoint_is_named():
    model = meta_model("mcibi_deeplabv3_resnet101os8_cocostuff10k")
    vit_state = meta_model("mcibi_deeplabv3_vitlarge_cocostuff10k").state_dict()
    message = load_error(model, {"model": vit_state})
    assert "does not fit model mcibi_deeplabv3_resnet101os8_cocostuff10k" in message
    assert "lacks" in message and "backbone_net.stem.0.weight" in message
    assert "weights it does not know" in message and "backbone_net.cls_token" in message
    assert "look like a ViT-L backbone but the model has ResNet-101" in message


@pytest.mark.parametrize(("donor", "name"), [
    ("mcibiplusplus_upernet_swinlarge_ade20k", "Swin-L"),
    ("mcibi_deeplabv3_hrnetv2w48_ade20k", "HRNetV2-W48"),
    ("mcibi_deeplabv3_resnest101os8_ade20k", "ResNeSt-101"),
    ("mcibi_deeplabv3_resnet50os8_ade20k", "ResNet-50"),
])
def test_each_backbone_is_recognised(donor, name):
    model = meta_model("mcibi_deeplabv3_resnet101os8_ade20k")
    message = load_error(model, meta_model(donor).state_dict())
    assert f"look like a {name} backbone but the model has ResNet-101" in message


def test_misshaped_keys_are_named_with_both_shapes():
    model = meta_model("mcibi_deeplabv3_resnet50os8_ade20k")
    state = meta_model("mcibi_deeplabv3_resnet50os8_ade20k").state_dict()
    state["bottleneck.0.weight"] = torch.zeros(512, 2048, 1, 1, device="meta")
    message = load_error(model, state)
    assert "1 weights of the wrong shape (bottleneck.0.weight is (512, 2048, 1, 1) in the checkpoint" in message


def test_another_datasets_class_count_is_named():
    model = meta_model("mcibi_deeplabv3_hrnetv2w48_lip")
    message = load_error(model, meta_model("mcibi_deeplabv3_hrnetv2w48_ade20k").state_dict())
    assert message.startswith("this checkpoint has 150 classes (ADE20k?), model mcibi_deeplabv3_hrnetv2w48_lip "
                              "expects 20 (LIP?)")


def test_fetch_from_names_an_ema_only_file(fetch_env):  # noqa: F811
    model_id = lip_plusplus_row()
    path = fetch_env / "ema_only.pth"
    torch.save({"cur_epoch": 150, "model_ema": filled_state("ema.")}, path)
    result = runner.invoke(app, ["fetch", model_id, "--weights-only", "--from", str(path), "--no-progress"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "holds only 'model_ema'" in result.output and len(result.output.strip().splitlines()) == 1
