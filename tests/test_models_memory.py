"""MCIBI++'s test-time class memory: upstream's seeded draws, cached, without touching the global RNG."""

from __future__ import annotations

import torch

from repro.models import memory as memory_module_impl
from repro.models.memory import GaussianClassMemory

NUM_CLASSES = 5
CHANNELS = 512


def upstream_style_draw(mean_std: torch.Tensor) -> torch.Tensor:
    """FILL.md's description of upstream: torch.manual_seed(c) then torch.normal on (1, C) tensors."""
    rows = []
    with torch.random.fork_rng(devices=[]):
        for c in range(mean_std.shape[0]):
            torch.manual_seed(c)
            rows.append(torch.normal(mean=torch.full((1, CHANNELS), float(mean_std[c, 0])),
                                     std=torch.full((1, CHANNELS), float(mean_std[c, 1]))))
    return torch.cat(rows)


def make_memory() -> GaussianClassMemory:
    module = GaussianClassMemory(NUM_CLASSES, CHANNELS).eval()
    with torch.no_grad():
        module.memory.copy_(torch.tensor([[0.1 * c - 0.2, 0.5 + 0.25 * c] for c in range(NUM_CLASSES)]))
    return module


def test_draws_equal_upstreams_global_seed_procedure():
    module = make_memory()
    expected = upstream_style_draw(module.memory.detach())
    assert torch.equal(module.class_vectors(), expected)


def test_forward_leaves_the_global_rng_alone():
    module = make_memory()
    feats, logits = torch.randn(1, CHANNELS, 3, 4), torch.randn(1, NUM_CLASSES, 3, 4)
    state = torch.get_rng_state()
    with torch.no_grad():
        module(feats, logits)
    assert torch.equal(torch.get_rng_state(), state)


def test_draws_are_cached_until_the_memory_changes(monkeypatch):
    module = make_memory()
    calls = []
    real_draw = memory_module_impl.draw_class_vectors
    monkeypatch.setattr(memory_module_impl, "draw_class_vectors", lambda *a, **k: calls.append(1) or real_draw(*a, **k))

    feats, logits = torch.randn(1, CHANNELS, 3, 4), torch.randn(1, NUM_CLASSES, 3, 4)
    with torch.no_grad():
        first, _ = module(feats, logits)
        second, _ = module(feats, logits)
    assert len(calls) == 1 and torch.equal(first, second)

    # Loading a checkpoint with other statistics invalidates the cache.
    state = module.state_dict()
    state["memory"] = torch.tensor([[1.0, 0.1]] * NUM_CLASSES)
    module.load_state_dict(state)
    with torch.no_grad():
        third, _ = module(feats, logits)
    assert len(calls) == 2
    assert torch.equal(third, upstream_style_draw(state["memory"]))

    # So does an in-place update of the parameter.
    with torch.no_grad():
        module.memory[:, 1] = 2.0
    module.class_vectors()
    assert len(calls) == 3


def test_vectors_follow_the_requested_dtype():
    module = make_memory()
    half = module.class_vectors(dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), module.class_vectors(), rtol=1e-2, atol=1e-2)
