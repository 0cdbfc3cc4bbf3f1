"""Parity of the bundled segmentors with upstream's, on the fixtures of tests/fixtures/parity.

Each fixture was made by upstream's segmentor (TEST mode, float32, CPU) with every weight set by
the deterministic fill of FILL.md. We fill a checkpoint keyed by upstream's own state-dict names
(training-only keys included), load it through `load_checkpoint`, run the same input and require
max |ours - ref| <= 1e-4 * max |ref|. On failure the message names the first top-level module
(in upstream's execution order) whose per-channel output statistics disagree.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from parity_support import PARITY_DIR, upstream_filled_checkpoint, upstream_keys

from repro.models import TRAINING_ONLY_PREFIXES, build_architecture, load_checkpoint
from repro.models.backbones import BackboneUnavailableError

# Relative tolerance of FILL.md, used for the logits and for the per-module statistics.
RELATIVE_TOLERANCE = 1e-4
FIXTURE_CONFIGS = sorted(p.stem for p in PARITY_DIR.glob("*.npz"))


def channel_stats(output: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (dim 1) mean and std (torch's default, unbiased) over every other dimension."""
    values = output.detach().to(torch.float64)
    dims = [d for d in range(values.dim()) if d != 1]
    return values.mean(dims).numpy(), values.std(dims).numpy()


def capture_module_stats(model: torch.nn.Module) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list]:
    """Forward hooks on the top-level children recording `<module>.out<i>` channel statistics."""
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    handles = []
    for name, child in model.named_children():
        def hook(_module, _inputs, output, name=name):
            outputs = output if isinstance(output, (tuple, list)) else (output,)
            for index, tensor in enumerate(outputs):
                stats[f"{name}.out{index}"] = channel_stats(tensor)
        handles.append(child.register_forward_hook(hook))
    return stats, handles


def first_divergent_module(ours: dict[str, tuple[np.ndarray, np.ndarray]], reference, order: list[str]) -> str:
    """Describe the first output (in `order`) whose channel statistics differ from `reference`.

    `reference` maps `<module>.out<i>.channel_mean/std` to arrays. Outputs that our model never
    produced (e.g. a decoder whose result upstream computes but does not use) are skipped.
    """
    for output_name in order:
        if output_name not in ours:
            continue
        mean, std = ours[output_name]
        ref_mean = np.asarray(reference[f"{output_name}.channel_mean"])
        ref_std = np.asarray(reference[f"{output_name}.channel_std"])
        module = output_name.split(".out")[0]
        if mean.shape != ref_mean.shape:
            return f"{module} ({output_name} has {mean.shape[0]} channels, upstream {ref_mean.shape[0]})"
        scale = max(float(np.abs(ref_mean).max()), float(np.abs(ref_std).max()), 1e-12)
        mean_err = float(np.abs(mean - ref_mean).max()) / scale
        std_err = float(np.abs(std - ref_std).max()) / scale
        if mean_err > RELATIVE_TOLERANCE or std_err > RELATIVE_TOLERANCE:
            return (f"{module} ({output_name}: channel mean off by {mean_err:.1e}, std off by {std_err:.1e}, "
                    f"relative to {scale:.3g})")
    return "none of the hooked modules (the difference arises after the last one, or in an unhooked step)"


def test_fixture_set_is_complete():
    # One fixture per distinct (method, head, backbone) family of the zoo.
    assert len(FIXTURE_CONFIGS) == 15
    assert all(c in upstream_keys() for c in FIXTURE_CONFIGS)


# ViT-L and Swin-L (200-300M parameters) take about 10 s each to fill and run on 2 CPU cores;
# they stay in the default run as the only coverage of their heads.
@pytest.mark.parametrize("config", FIXTURE_CONFIGS)
def test_logits_match_upstream(config: str):
    fixture = np.load(PARITY_DIR / f"{config}.npz")
    meta = json.loads((PARITY_DIR / f"{config}.json").read_text())
    try:
        model = build_architecture(config)
    except BackboneUnavailableError as err:
        pytest.fail(f"{config}: cannot build the architecture: {err}")

    report = load_checkpoint(model, upstream_filled_checkpoint(model, config))
    expected_skipped = {k for k, _, _ in upstream_keys()[config] if k.startswith(TRAINING_ONLY_PREFIXES)}
    assert set(report.skipped) == expected_skipped

    stats, handles = capture_module_stats(model)
    with torch.no_grad():
        logits = model(torch.from_numpy(fixture["input"]))
    for handle in handles:
        handle.remove()

    reference = fixture["logits"]
    assert tuple(logits.shape) == tuple(reference.shape) == tuple(meta["logits_shape"])
    error = float(np.abs(logits.numpy() - reference).max())
    tolerance = RELATIVE_TOLERANCE * float(np.abs(reference).max())
    if not error <= tolerance:
        culprit = first_divergent_module(stats, fixture, list(meta["module_output_shapes"]))
        pytest.fail(f"{config}: logits differ from upstream by {error:.3g} (tolerance {tolerance:.3g}); "
                    f"first diverging module: {culprit}")


def test_divergence_report_names_first_bad_module():
    # The locator itself: a clean module, then one whose channel mean is 1% off.
    reference = {
        "backbone_net.out0.channel_mean": np.array([1.0, -2.0]), "backbone_net.out0.channel_std": np.array([0.5, 0.5]),
        "bottleneck.out0.channel_mean": np.array([3.0, 1.0]), "bottleneck.out0.channel_std": np.array([1.0, 2.0]),
        "decoder_cls.out0.channel_mean": np.array([0.0]), "decoder_cls.out0.channel_std": np.array([1.0]),
    }
    ours = {
        "backbone_net.out0": (np.array([1.0, -2.0]), np.array([0.5, 0.5])),
        "bottleneck.out0": (np.array([3.03, 1.0]), np.array([1.0, 2.0])),
        "decoder_cls.out0": (np.array([5.0]), np.array([1.0])),
    }
    order = ["backbone_net.out0", "decoder_cwi.out0", "bottleneck.out0", "decoder_cls.out0"]
    assert first_divergent_module(ours, reference, order).startswith("bottleneck (bottleneck.out0: channel mean off")
    ours["bottleneck.out0"] = (np.array([3.0, 1.0]), np.array([1.0, 2.0]))
    assert first_divergent_module(ours, reference, order).startswith("decoder_cls")
    ours["decoder_cls.out0"] = (np.array([0.0]), np.array([1.0]))
    assert first_divergent_module(ours, reference, order).startswith("none of the hooked modules")
