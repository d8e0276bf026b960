"""Closed eyelids show the lid's skin, not the eye patch behind them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar.eyelids import FADE_FROM, colors_for_blink, lid_colors
from avatar.mesh import PARTS
from tests.talking_fixtures import tiny_avatar


@pytest.fixture(scope="module")
def avatar():
    return tiny_avatar(size=48)


def test_lid_colors_find_the_eye_patches_and_the_lid_skin(avatar):
    lids = lid_colors(avatar)
    part = avatar.face_part[avatar.gaussians["parent"]]
    assert torch.equal(lids.eye_rows, part == PARTS.index("eyes")) and int(lids.eye_rows.sum()) > 0
    # the tiny avatar's face is (0.85, 0.65, 0.5) plus up to 0.05 of noise, its eyes (0.2, 0.3, 0.6)
    torch.testing.assert_close(lids.skin, torch.tensor([0.875, 0.675, 0.525]), rtol=0, atol=0.026)
    no_eyes = dict(avatar.gaussians)
    keep = part != PARTS.index("eyes")
    no_eyes = {key: value[keep] for key, value in avatar.gaussians.items()}
    original = avatar.gaussians
    try:
        avatar.gaussians = no_eyes
        assert lid_colors(avatar) is None
    finally:
        avatar.gaussians = original


def test_colors_for_blink_fade_the_eye_patches_into_skin_as_the_lid_shuts(avatar):
    lids = lid_colors(avatar)
    colors = avatar.gaussians["colors"]
    assert colors_for_blink(colors, lids, 0.0) is colors and colors_for_blink(colors, lids, FADE_FROM) is colors
    shut = colors_for_blink(colors, lids, 1.0)
    torch.testing.assert_close(shut[lids.eye_rows], lids.skin.expand(int(lids.eye_rows.sum()), 3), rtol=0, atol=0)
    torch.testing.assert_close(shut[~lids.eye_rows], colors[~lids.eye_rows], rtol=0, atol=0)
    half = colors_for_blink(colors, lids, 0.5 * (FADE_FROM + 1.0))
    torch.testing.assert_close(half[lids.eye_rows], 0.5 * (colors[lids.eye_rows] + lids.skin), rtol=0, atol=1e-6)
    assert torch.equal(colors, avatar.gaussians["colors"])  # not modified in place
    with pytest.raises(ValueError, match="colors must be"):
        colors_for_blink(colors[:-1], lids, 1.0)


def test_rendered_blinks_use_the_lid_colours(avatar):
    """render_frames draws a shut-eye frame with the eye patches in skin colour and an open one as it is."""
    from animation.motion import Motion
    from animation.viseme_shapes import GENERIC, GENERIC_INDEX
    from render.pipeline import BackgroundSpec, RenderOptions, render_frames

    generic = np.zeros((2, len(GENERIC)))
    generic[1, GENERIC_INDEX["blink"]] = 1.0
    rotations = np.zeros((2, 3))
    translations = np.tile([0.0, 0.0, 0.5], (2, 1))
    motion = Motion(avatar.fps, rotations, translations, np.zeros((2, avatar.num_expressions)), generic,
                    generic[:, GENERIC_INDEX["blink"]], np.zeros(2), 2 / avatar.fps)
    frames = np.concatenate(list(render_frames(avatar, motion, BackgroundSpec("color", color="#000000"),
                                               RenderOptions())))
    vertices = motion.vertices(avatar)
    recoloured = colors_for_blink(avatar.gaussians["colors"], lid_colors(avatar), 1.0)
    for index, colors in ((0, None), (1, recoloured)):
        expected = avatar.render(vertices[index], torch.zeros(3), colors=colors).color
        expected = (expected.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        assert np.abs(frames[index].astype(int) - expected.astype(int)).max() <= 1
