"""repro.numerics: precision names, the TF32 refusal, and the switches set for a run and restored."""

import contextlib
from types import SimpleNamespace

import pytest
import torch

from repro import numerics
from repro.errors import ReproError
from repro.numerics import TF32, arithmetic, check_precision, current_tf32


def test_precision_names_and_comparable_subset():
    assert numerics.PRECISIONS == ("fp32", "tf32", "tf32-all", "bf16", "fp16")
    assert numerics.COMPARABLE == ("fp32", "tf32", "tf32-all")
    assert set(numerics.TF32_BY_PRECISION) == set(numerics.PRECISIONS)


def test_unknown_precision_is_refused_listing_the_known_ones():
    with pytest.raises(ReproError) as caught:
        numerics.Precision.parse("tf16")
    assert caught.value.exit_code == 2
    assert "tf16" in str(caught.value) and "fp32, tf32, tf32-all, bf16, fp16" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_precision_is_one_typed_value_that_reads_as_its_name():
    import json
    import pickle

    precision = numerics.Precision.parse(" TF32-All ")
    assert precision is numerics.Precision.TF32_ALL
    assert precision == "tf32-all" and f"{precision}" == str(precision) == "tf32-all"
    assert json.dumps({"precision": precision}) == '{"precision": "tf32-all"}'
    assert pickle.loads(pickle.dumps(precision)) is precision  # the launcher pickles EngineOptions
    assert numerics.parse_precisions("fp32, TF32,fp32") == [numerics.Precision.FP32, numerics.Precision.TF32]


def test_engine_options_carry_the_precision_typed_and_check_it_once():
    from repro.engine.options import EngineOptions

    assert EngineOptions().precision is numerics.Precision.FP32
    assert EngineOptions(precision="tf32").precision is numerics.Precision.TF32  # a Python caller's string
    with pytest.raises(ReproError) as caught:
        EngineOptions(precision="fp8")
    assert caught.value.exit_code == 2 and "unknown precision 'fp8'" in str(caught.value)


@pytest.mark.parametrize("precision", ["tf32", "tf32-all"])
def test_tf32_refused_on_cpu_with_one_line_exit_2(precision):
    with pytest.raises(ReproError) as caught:
        check_precision(precision, "cpu")
    assert caught.value.exit_code == 2
    assert precision in str(caught.value) and "cpu" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_non_tf32_precisions_pass_on_cpu(precision):
    check_precision(precision, "cpu")
    check_precision(precision, torch.device("cpu"))


def _fake_gpu(monkeypatch, capability, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_tf32_refused_on_a_pre_ampere_gpu_naming_it(monkeypatch):
    _fake_gpu(monkeypatch, (7, 0), "Tesla V100-SXM2-32GB")
    with pytest.raises(ReproError) as caught:
        check_precision("tf32", "cuda")
    assert caught.value.exit_code == 2
    assert "Tesla V100" in str(caught.value) and "7.0" in str(caught.value)


def test_tf32_accepted_on_ampere_and_newer(monkeypatch):
    for capability in [(8, 0), (8, 6), (9, 0), (10, 0)]:
        _fake_gpu(monkeypatch, capability, "some GPU")
        check_precision("tf32", "cuda:0")
        check_precision("tf32-all", torch.device("cuda", 0))


def test_tf32_refused_when_cuda_is_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ReproError, match="no CUDA device"):
        check_precision("tf32-all", "cuda")


# -- the switches, on the installed torch (they are settable on a CPU build too) ----------------


@pytest.mark.parametrize(
    "precision, expected",
    [("fp32", TF32(False, False)), ("bf16", TF32(False, False)), ("fp16", TF32(False, False)),
     ("tf32", TF32(True, False)), ("tf32-all", TF32(True, True))],
)
def test_arithmetic_sets_the_switches_for_the_block_and_restores_them(monkeypatch, precision, expected):
    monkeypatch.setattr(numerics, "check_precision", lambda precision, device: None)  # a "GPU"
    before = numerics.switches().saved()
    with arithmetic(precision, "cuda"):
        assert current_tf32() == expected
    assert numerics.switches().saved() == before


def test_arithmetic_restores_after_an_exception():
    before = numerics.switches().saved()
    with pytest.raises(RuntimeError):
        with arithmetic("fp32", "cpu"):
            assert current_tf32() == TF32(False, False)
            raise RuntimeError("boom")
    assert numerics.switches().saved() == before


def test_arithmetic_refuses_before_touching_the_switches():
    before = numerics.switches().saved()
    with pytest.raises(ReproError):
        with arithmetic("tf32", "cpu"):
            pytest.fail("the block must not run")
    assert numerics.switches().saved() == before


def test_installed_torch_uses_one_api_only():
    active = numerics.switches()
    if numerics._major_minor(torch.__version__) >= (2, 9):
        assert isinstance(active, numerics._PrecisionSwitches)
    else:
        assert isinstance(active, numerics._AllowTF32Switches)


def test_precision_api_reads_inherited_none_as_the_parent_setting():
    fake = SimpleNamespace(
        __version__="2.9.1+cu128",
        backends=SimpleNamespace(
            fp32_precision="none",
            cudnn=SimpleNamespace(fp32_precision="none", conv=SimpleNamespace(fp32_precision="tf32")),
            cuda=SimpleNamespace(matmul=SimpleNamespace(fp32_precision="none")),
        ),
    )
    active = numerics.switches(fake)
    assert isinstance(active, numerics._PrecisionSwitches)
    assert active.read() == TF32(conv=True, matmul=False)  # PyTorch >= 1.12's defaults
    fake.backends.cudnn.fp32_precision = "tf32"
    assert active.read() == TF32(conv=True, matmul=True)
    active.set(TF32(False, False))
    assert (fake.backends.cudnn.conv.fp32_precision, fake.backends.cuda.matmul.fp32_precision) == ("ieee", "ieee")


def _legacy_torch(version="2.3.0"):
    calls = []
    fake = SimpleNamespace(__version__=version, matmul_precision="highest")
    fake.backends = SimpleNamespace(cudnn=SimpleNamespace(allow_tf32=True), cuda=SimpleNamespace())
    fake.get_float32_matmul_precision = lambda: fake.matmul_precision

    def set_precision(value):
        calls.append(value)
        fake.matmul_precision = value

    fake.set_float32_matmul_precision = set_precision
    return fake, calls


def test_legacy_api_on_older_torch_sets_and_restores(monkeypatch):
    fake, calls = _legacy_torch()
    fake.matmul_precision = "medium"  # a caller's bf16 matmuls: restored exactly afterwards
    active = numerics.switches(fake)
    assert isinstance(active, numerics._AllowTF32Switches)
    saved = active.saved()
    active.set(numerics.TF32_BY_PRECISION["tf32-all"])
    assert active.read() == TF32(True, True) and fake.matmul_precision == "high"
    active.set(numerics.TF32_BY_PRECISION["fp32"])
    assert fake.backends.cudnn.allow_tf32 is False and fake.matmul_precision == "highest"
    active.restore(saved)
    assert fake.backends.cudnn.allow_tf32 is True and fake.matmul_precision == "medium"
    assert not hasattr(fake.backends.cudnn, "conv")  # never touched the new API


def test_torch_2_8_with_new_attributes_still_uses_the_legacy_api():
    fake, _ = _legacy_torch("2.8.0")
    fake.backends.cudnn.conv = SimpleNamespace(fp32_precision="tf32")
    assert isinstance(numerics.switches(fake), numerics._AllowTF32Switches)


def test_predictor_runs_tf32_precisions_without_autocast():
    from repro.numerics import PRECISIONS
    from repro.inference.predictor import Predictor

    assert PRECISIONS == numerics.PRECISIONS
    model = torch.nn.Conv2d(3, 2, 1)
    protocol = SimpleNamespace(mode="whole", crop_size=None, stride=None, scales=[1.0], flip=False,
                               flip_pairs=[], probs_before_resize=False,
                               resize=SimpleNamespace(output_size=[8, 8], keep_ratio=True))
    for precision in ("tf32", "tf32-all"):
        predictor = Predictor(model, protocol, 2, device="cpu", precision=precision)
        assert isinstance(predictor._autocast(), contextlib.nullcontext)
    autocast = Predictor(model, protocol, 2, device="cpu", precision="bf16")._autocast()
    assert not isinstance(autocast, contextlib.nullcontext)
