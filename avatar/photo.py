"""Photo avatar: the video model fitted to a single portrait (plus the generic mouth interior) in under a minute.

A photo gives one tracked frame: the rig has the photo's landmarks as its neutral shape and no expression
data of its own (the talking path drives it with generic shapes). Training fits the Gaussians to that one
frame under a short time budget; there is nothing to hold out, so the avatar's metrics say so and report the
fit on the photo itself, labelled as a training-frame number.
"""
from __future__ import annotations

from pathlib import Path

from avatar.build import ProgressCallback, build_avatar_from_clip
from avatar.model import Avatar
from avatar.train import TrainConfig, preset

# 60 s in all on a busy 2-core machine: about 5 s to track and crop, the rest to fit and save.
PHOTO_TIME_BUDGET_S = 40.0


def photo_config(**overrides) -> TrainConfig:
    """The photo preset: 256 px, one Gaussian set fitted to one frame within PHOTO_TIME_BUDGET_S."""
    settings = dict(preset="photo", time_budget_s=PHOTO_TIME_BUDGET_S, iterations=400, densify_from=100,
                    densify_every=100, holdout_every=0, holdout_seconds=0.0, preview_every=0,
                    plate_fraction=0.0,  # one photo's plate is inpainted guesswork: alpha from the matte only
                    pose_refine_at=(),  # one picture: the Gaussians fit its pose as it is, nothing to register
                    # a portrait shows no tongue: it keeps the generic one (fitted to the teeth between the
                    # lips, the astronaut's opened as speckles of red, green and blue when the jaw dropped)
                    frozen_parts=("tongue",),
                    # nor most of the teeth and the cavity: what it hides gets generic colours back (cyan and
                    # orange glints at the teeth's ends, green and red in the cavity otherwise)
                    unseen_mouth_pixels=1.0)
    return preset("fast", **{**settings, **overrides})


def build_photo_avatar(clip, name: str, destination: Path, checkpoint_dir: Path | None = None,
                       progress: ProgressCallback | None = None, config: TrainConfig | None = None) -> Avatar:
    """Fit and save an avatar from a one-frame clip (`avatar.preprocess.preprocess_photo`)."""
    if clip.num_frames != 1:
        raise ValueError(f"a photo avatar needs a one-frame clip, got {clip.num_frames} frames")
    avatar, _ = build_avatar_from_clip(clip, name, config or photo_config(), destination, checkpoint_dir, progress,
                                       extra_stats={"kind": "photo"})
    return avatar
