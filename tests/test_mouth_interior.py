"""The mouth's inside where the footage does not show it: blend weights from the rasterizer, generic colours back."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from avatar.mesh import PARTS
from avatar.mouth_interior import GENERIC_PART_COLORS, blend_weights, generic_mouth_colors, reset_unseen_mouth
from avatar.train import initial_gaussians_for, preset, render_frame
from tests.test_train import make_synthetic_data


def _red_sum(params, parent, data, index: int) -> float:
    out, _ = render_frame(params, parent, data.vertices[index], data.faces, data.camera,
                          torch.zeros(data.camera.height, data.camera.width, 3))
    return float(out.color[..., 0].double().sum())


def test_blend_weights_are_each_gaussians_share_of_the_pixels():
    """Colour enters the image linearly (sum_i w_i c_i), so raising one Gaussian's red by 1 raises the red channel's
    sum by exactly its weight: the slow twin. The weights of a frame also sum to its alpha."""
    data = make_synthetic_data(frames=4)
    params, parent = initial_gaussians_for(data, preset("tiny", resolution=32))
    params["opacity_logits"] = torch.randn(parent.shape[0], generator=torch.Generator().manual_seed(3))
    frames = data.train_indices[:2]
    weights = blend_weights(params, parent, data, frames)
    assert weights.shape == (parent.shape[0],) and float(weights.min()) >= 0.0
    alpha = 0.0
    for index in frames:
        out, _ = render_frame(params, parent, data.vertices[index], data.faces, data.camera, torch.zeros(32, 32, 3))
        alpha += float(out.alpha.double().sum())
    assert float(weights.sum()) == pytest.approx(alpha, rel=1e-4)
    picks = torch.randperm(parent.shape[0], generator=torch.Generator().manual_seed(5))[:6].tolist()
    picks.append(int(weights.argmax()))
    base = sum(_red_sum(params, parent, data, i) for i in frames)
    for g in picks:
        bumped = {**params, "colors": params["colors"].clone()}
        bumped["colors"][g, 0] += 1.0
        direct = sum(_red_sum(bumped, parent, data, i) for i in frames) - base
        assert float(weights[g]) == pytest.approx(direct, abs=2e-3, rel=1e-3), g
    assert float(weights.max()) > 1.0  # a Gaussian that really shows: the comparison above is not all zeros
    with pytest.raises(ValueError, match="at least one frame"):
        blend_weights(params, parent, data, [])


def test_unseen_mouth_gaussians_and_only_they_get_their_generic_colours_back():
    parts = ["face", "upper_teeth", "lower_teeth", "tongue", "mouth_cavity", "neck"]
    topology = SimpleNamespace(face_part=torch.tensor([PARTS.index(p) for p in parts]))
    parent = torch.arange(6).repeat(2)  # two Gaussians per triangle
    colors = torch.rand(12, 3, generator=torch.Generator().manual_seed(0)) * 3 - 1  # out of gamut, as trained ones are
    params = {"colors": colors.clone(), "opacity_logits": torch.zeros(12)}
    weights = torch.tensor([0.0, 0.5, 0.2, 2.0, 0.9, 1.5] + [3.0, 0.1, 5.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    new, count = reset_unseen_mouth(params, parent, topology, weights, min_weight=1.0)
    expected = colors.clone()
    for g in range(12):
        part = parts[int(parent[g])]
        if part in GENERIC_PART_COLORS and weights[g] < 1.0:
            expected[g] = torch.tensor(GENERIC_PART_COLORS[part])
    torch.testing.assert_close(new["colors"], expected, rtol=0, atol=0)
    assert count == 5  # upper teeth 0.5 and 0.1, lower teeth 0.2, cavity 0.9 (1.0 is not below), tongue 0.0
    assert new["opacity_logits"] is params["opacity_logits"] and torch.equal(params["colors"], colors)  # no mutation
    generic_mouth_colors(params, parent, topology)
    for g in range(12):
        part = parts[int(parent[g])]
        want = torch.tensor(GENERIC_PART_COLORS[part]) if part in GENERIC_PART_COLORS else colors[g]
        torch.testing.assert_close(params["colors"][g], want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="weights must be"):
        reset_unseen_mouth(params, parent, topology, weights[:-1], 1.0)
