"""A user's upload -> a saved avatar with its own mouth: the one path behind `app.py train` and the studio.

`preprocess` decides photo or video by content. A video is preprocessed with the preset's holdout (every
`holdout_every`-th frame and the last `holdout_seconds`), so the neutral shape, expression basis and background
plate never see the frames the reported held-out score is measured on; a photo takes the photo preset. Then the
avatar is trained and saved atomically, and a video's speech teaches the avatar its viseme shapes and its audio ->
mouth model (`animation.mouth_calibration.learn_avatar_mouth`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

ProgressCallback = Callable[[str, float, dict], None]


def build_from_source(source: str | Path, name: str, preset_name: str, destination: Path,
                      checkpoint: Path | None, progress: ProgressCallback | None = None,
                      resume: bool = True) -> tuple[object, list[str]]:
    """-> (the saved `avatar.model.Avatar`, notes for the user: what preprocessing noticed (a short or long
    video, no audio, ...) and a video whose speech could not be timed, which then talks with generic mouth
    shapes)."""
    from animation.mouth_calibration import learn_avatar_mouth
    from avatar.build import build_avatar_from_clip
    from avatar.photo import build_photo_avatar, photo_config
    from avatar.preprocess import Holdout, preprocess
    from avatar.train import preset

    report = progress or (lambda stage, fraction, info: None)
    config = preset(preset_name)
    clip = preprocess(source, progress=lambda stage, fraction: report(stage, fraction, {}), show_bar=False,
                      holdout=Holdout(config.holdout_seconds, config.holdout_every))
    notes = list(clip.meta.get("notes", []))
    if clip.num_frames == 1:
        return build_photo_avatar(clip, name, destination, checkpoint, report, photo_config()), notes
    avatar, _ = build_avatar_from_clip(clip, name, config, destination, checkpoint, report, resume=resume)
    report("mouth from audio", 0.0, {})  # viseme shapes, the audio -> mouth model, its gain for this avatar
    if learn_avatar_mouth(clip, avatar, destination) is None:
        heard = clip.audio is not None and clip.audio.size > 0
        notes.append(("the video's speech could not be timed" if heard else "with no speech to learn from") +
                     "; this avatar talks with generic mouth shapes")
    return avatar, notes


def avatar_summary(avatar) -> str:
    """'N Gaussians, held-out PSNR .. dB, SSIM .., render .. FPS' (a photo: its fit PSNR, no held-out frames)."""
    metrics = avatar.metrics
    fit = metrics.get("fit_psnr_training_frame", float("nan"))
    quality = (f"held-out PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}" if "psnr" in metrics
               else f"photo fit PSNR {fit:.2f} dB (no held-out frames)")
    return f"{avatar.num_gaussians} Gaussians, {quality}, render {metrics.get('render_fps', 0):.1f} FPS"
