"""Densify/prune plans keep the per-triangle bookkeeping, and the Adam state follows every row."""
from __future__ import annotations

import math

import torch

from avatar.densify import PARAM_KEYS, plan_densify, plan_prune, update_optimizer_state


def random_params(n: int, faces: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    parent = torch.cat([torch.arange(faces), torch.randint(faces, (n - faces,), generator=g)])
    params = {
        "local_means": torch.randn(n, 3, generator=g),
        "local_quats": torch.randn(n, 4, generator=g),
        "local_log_scales": torch.randn(n, 3, generator=g) - 1,
        "opacity_logits": torch.randn(n, generator=g),
        "colors": torch.rand(n, 3, generator=g),
    }
    return {k: v.requires_grad_(True) for k, v in params.items()}, parent


def stepped_adam(params):
    optimizer = torch.optim.Adam([{"params": [params[k]], "lr": 0.01, "name": k} for k in PARAM_KEYS])
    for _ in range(3):
        optimizer.zero_grad()
        sum((v * torch.randn_like(v)).sum() for v in params.values()).backward()
        optimizer.step()
    return optimizer


def test_prune_never_orphans_a_triangle():
    params, parent = random_params(200, 30)
    remove = torch.rand(200, generator=torch.Generator().manual_seed(3)) < 0.8
    remove[parent == 5] = True  # every Gaussian of face 5 asks to go
    plan = plan_prune(params, parent, remove, 30)
    assert set(plan.parent.tolist()) == set(parent.tolist())
    face5 = (parent == 5).nonzero().flatten()
    kept5 = plan.source_index[plan.parent == 5]
    assert kept5.numel() == 1
    assert int(kept5) == int(face5[params["opacity_logits"][face5].argmax()])  # the most opaque one stays
    # everything that was not asked to go stays, in order
    assert torch.equal(plan.source_index[~remove[plan.source_index]], (~remove).nonzero().flatten())
    for key in PARAM_KEYS:
        assert torch.equal(plan.params[key], params[key].detach()[plan.source_index])


def test_densify_clones_small_and_splits_large_and_respects_the_cap():
    params, parent = random_params(40, 10)
    with torch.no_grad():
        params["local_log_scales"][:20] = math.log(0.1)  # small: clone
        params["local_log_scales"][20:] = math.log(2.0)  # large: split
    selected = torch.zeros(40, dtype=torch.bool)
    selected[[1, 2, 25, 30]] = True
    plan = plan_densify(params, parent, selected, math.log(0.5), 1000, 10, generator=torch.Generator().manual_seed(0))
    assert plan.params["colors"].shape[0] == 44  # +2 clones, +2 net from splitting two into four
    assert sorted(plan.source_index.tolist()) == sorted(list(range(40)) + [1, 2, 25, 30])
    assert torch.equal(plan.parent, parent[plan.source_index])
    old = params["local_means"].detach()
    clones = (plan.source_index == 1).nonzero().flatten()
    torch.testing.assert_close(plan.params["local_means"][clones], old[[1, 1]])
    children = (plan.source_index == 25).nonzero().flatten()
    torch.testing.assert_close(plan.params["local_log_scales"][children], torch.full((2, 3), math.log(2.0 / 1.6)))
    assert not torch.allclose(plan.params["local_means"][children[0]], plan.params["local_means"][children[1]])
    capped = plan_densify(params, parent, selected, math.log(0.5), max_gaussians=42, num_faces=10,
                          score=torch.arange(40.0))
    assert capped.params["colors"].shape[0] == 42
    assert sorted(set(capped.source_index.tolist()) - set(range(40))) == []
    assert capped.source_index.tolist().count(30) == 2 and capped.source_index.tolist().count(25) == 2
    assert 1 in capped.source_index.tolist() and capped.source_index.tolist().count(1) == 1


def test_optimizer_state_follows_rows_and_training_continues():
    params, parent = random_params(60, 12)
    optimizer = stepped_adam(params)
    before = {k: {n: v.clone() for n, v in optimizer.state[params[k]].items()} for k in PARAM_KEYS}
    remove = torch.zeros(60, dtype=torch.bool)
    remove[::3] = True
    plan = plan_prune(params, parent, remove, 12)
    new = {k: plan.params[k].clone().requires_grad_(True) for k in PARAM_KEYS}
    update_optimizer_state(optimizer, params, new, plan.source_index)
    for k in PARAM_KEYS:
        state = optimizer.state[new[k]]
        assert torch.equal(state["exp_avg"], before[k]["exp_avg"][plan.source_index])
        assert torch.equal(state["exp_avg_sq"], before[k]["exp_avg_sq"][plan.source_index])
        assert float(state["step"]) == 3
        assert params[k] not in optimizer.state
    middle = {k: optimizer.state[new[k]]["exp_avg"].clone() for k in PARAM_KEYS}
    selected = torch.zeros(new["colors"].shape[0], dtype=torch.bool)
    selected[:5] = True
    plan2 = plan_densify(new, plan.parent, selected, 0.0, 10_000, 12)
    newer = {k: plan2.params[k].clone().requires_grad_(True) for k in PARAM_KEYS}
    update_optimizer_state(optimizer, new, newer, plan2.source_index)
    for k in PARAM_KEYS:
        assert torch.equal(optimizer.state[newer[k]]["exp_avg"], middle[k][plan2.source_index])
    optimizer.zero_grad()
    sum(v.sum() for v in newer.values()).backward()
    optimizer.step()  # shapes agree, no error
    assert all(torch.isfinite(v).all() for v in newer.values())


def test_fresh_rows_start_with_zero_moments():
    params, parent = random_params(20, 5)
    optimizer = stepped_adam(params)
    old_moments = optimizer.state[params["colors"]]["exp_avg_sq"].clone()
    source = torch.tensor([3, -1, 0, -1])
    new = {k: torch.cat([v.detach()[[3, 0, 0, 0]]]).requires_grad_(True) for k, v in params.items()}
    update_optimizer_state(optimizer, params, new, source)
    moments = optimizer.state[new["colors"]]["exp_avg_sq"]
    assert torch.equal(moments[0], old_moments[3]) and torch.equal(moments[2], old_moments[0])
    assert not moments[[1, 3]].any()
