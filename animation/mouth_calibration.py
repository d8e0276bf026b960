"""How wide a trained avatar draws an open mouth, and the gain that makes up for it.

The driven mouth (`animation.mouth_model`) is calibrated on expression coefficients: its motion is scaled by the
least-squares slope of the real opening on the cross-validated one. But what a viewer (and FaceMesh) sees is the
avatar's render of those coefficients, and an avatar can draw a mesh's lip gap narrower than the mesh has it:
blurred lip edges, teeth and mouth interior learned from few open-mouth frames. Rendered and re-tracked, the
ninth session's German `fast` avatar opened its mouth about 0.82 as wide as its mesh did, a retrained one 1.02,
the Obama avatars 1.07-1.08. The render and the tracker also add a noise of their own to the opening (about
0.006 of the eye distance on that German avatar, as much for driven as for real expressions), so a mouth drawn
narrower loses more of its motion to that noise: that German avatar's driven opening kept r 0.508 of its
coefficients' 0.594 on the training windows, the Obama one 0.597 of 0.591.

`measure_opening_response` renders the avatar on a stretch of its own training track (tracked poses and
expressions, never a held-out tail), re-tracks the frames with FaceMesh and returns the least-squares slope of the
rendered opening on the mesh's. `response_gain` turns it into the factor the driven mouth's motion is scaled by
on top of its own calibration: 1 / slope, at least 1 (an avatar that draws openings full size is left alone;
shrinking would only lose more motion to the noise), at most `max_gain`.

Measured on 4-s windows of the two shared clips' training parts (`bench.lipsync_windows --render`, the mouth
model refitted and the response measured without each window; 2026-12-05), rendered opening r / LMD:
- no render gain: 0.597 / 2.354 % (Obama), 0.508 / 1.669 % (German);
- this slope (kept): 0.597 / 2.354 % (slopes 1.05-1.08, gain 1), 0.543 / 1.675 % (gains 1.16-1.22);
- the slope of the audio-driven mouth instead (the training stretch driven by its own audio, as a tail is):
  0.597 / 2.354 % (gain 1), 0.549 / 1.698 % (gains 1.15-1.37). As good, but it needs the audio model, its phone
  recognition and audio the model has already seen, to measure much the same thing.

The driven mouth is also drawn narrower on average than the real one: on those windows the rendered driven
opening's mean fell short of the real opening's in all 8 (by 0.008-0.028 of the eye distance), at the same mean
mesh opening. (A driven expression is an average: lips that part without the rest of the face moving as it does
when this person opens their mouth.) So, given the clip's audio, `calibrate_mouth_model` also drives the same
training stretch by its own audio (`driven_motion`, with the gain applied), renders and re-tracks it, and sets
`render_offset`: the shortfall of its mean rendered opening against the tracked expressions' render, over the
slope (`response_offset`, 0-0.05). The driven mouth is widened by it along the person's own opening direction
(`MouthModelFacts.opening_direction`), except where the phones close the lips for p/b/m. The model has heard that
stretch, so its mouth there is less shrunk than on new audio and the offset is if anything too small. Windows
(`bench.lipsync_windows --render`, avatars of `/tmp/ls11`, 2026-12-05), rendered opening r / LMD: without the
offset 0.588 / 2.280 % (Obama) and 0.541 / 1.635 % (German); with it 0.623 / 2.269 % (offsets 0.010-0.017) and
0.546 / 1.626 % (offsets 0.001-0.005); widening the p/b/m closures too scored 0.622 / 0.543. (A fixed offset of
0.01 for both gave 0.617 / 2.256 % and 0.558 / 1.643 %; 0.02 gave 0.623 / 2.285 % and 0.562 / 1.746 %.) It
costs a second render of the stretch: about 6 s more per `fast` avatar.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from animation.mouth_model import MouthModel
from animation.mouth_opening import opening_curve

DEFAULT_MAX_FRAMES = 250  # 10 s at 25 fps: about 4 s of rendering and tracking on 2 cores at 256 px
DEFAULT_MAX_GAIN = 2.0
DEFAULT_MAX_OFFSET = 0.05  # of the eye distance; a shortfall measured larger than this is a bad render


def response_slope(mesh_opening: np.ndarray, rendered_opening: np.ndarray) -> float:
    """Least-squares slope of the rendered (re-tracked) opening [T] on the mesh's [T], over frames where both are
    finite -> slope. Raises ValueError when fewer than 10 frames were tracked or the mesh barely moves."""
    mesh, rendered = np.asarray(mesh_opening, np.float64), np.asarray(rendered_opening, np.float64)
    if mesh.ndim != 1 or mesh.shape != rendered.shape:
        raise ValueError(f"need two opening curves [T] of one length, got {mesh.shape} and {rendered.shape}")
    ok = np.isfinite(mesh) & np.isfinite(rendered)
    if ok.sum() < 10:
        raise ValueError(f"only {int(ok.sum())} frames were tracked; need 10 to measure the mouth's response")
    mesh, rendered = mesh[ok], rendered[ok]
    spread = mesh.var()
    if spread < 1e-8:
        raise ValueError("the mouth barely moves in these frames; its response cannot be measured")
    return float(np.mean((mesh - mesh.mean()) * (rendered - rendered.mean())) / spread)


def response_gain(slope: float, max_gain: float = DEFAULT_MAX_GAIN) -> float:
    """The driven mouth's extra gain for an avatar that draws openings `slope` times the mesh's -> [1, max_gain]."""
    if not max_gain >= 1.0:
        raise ValueError(f"max_gain must be >= 1, got {max_gain}")
    if not slope > 0:
        return float(max_gain)  # a mouth that does not open in the render: as much as allowed
    return float(np.clip(1.0 / slope, 1.0, max_gain))


def calibration_frames(valid: np.ndarray, stop: int | None = None, max_frames: int = DEFAULT_MAX_FRAMES) -> np.ndarray:
    """The longest run of consecutive valid frames before `stop` (a held-out tail's first frame), at most
    `max_frames` of it -> frame indices [n]. valid: [T] bool. FaceMesh tracks a video better than jumps."""
    valid = np.asarray(valid, bool).copy()
    if valid.ndim != 1 or max_frames < 1:
        raise ValueError(f"need valid [T] and max_frames >= 1, got {valid.shape} and {max_frames}")
    if stop is not None:
        valid[int(stop):] = False
    frames = np.flatnonzero(valid)
    if len(frames) == 0:
        return frames
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
    return max(runs, key=len)[:max_frames]


def _render_opening(avatar, motion) -> tuple[np.ndarray, np.ndarray]:
    """Render `motion` with `avatar` over its plate and re-track it -> (mesh opening [T], rendered opening [T])."""
    from animation.lipsync_metrics import mouth_open_curve, track_landmarks
    from render.pipeline import BackgroundSpec, RenderOptions, render_frames

    rendered = np.concatenate(list(render_frames(avatar, motion, BackgroundSpec("plate"), RenderOptions())))
    mesh = opening_curve(motion.coeffs, avatar.neutral.double().numpy(), avatar.expression_basis.double().numpy())
    return mesh, mouth_open_curve(track_landmarks(list(rendered)))


def _check_frames(avatar, frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, np.int64)
    if frames.ndim != 1 or len(frames) == 0 or frames.min() < 0 or frames.max() >= len(avatar.expression_coeffs):
        raise ValueError(f"frames must index the avatar's {len(avatar.expression_coeffs)} tracked frames")
    return frames


def tracked_motion(avatar, frames: np.ndarray):
    """The avatar's own training track at `frames` [n] (tracked poses and expressions) -> Motion."""
    from animation import idle
    from animation.motion import Motion

    frames = _check_frames(avatar, frames)
    return Motion.from_expressions(avatar.fps, idle.rotation_to_axis_angle(avatar.rotations[frames].double().numpy()),
                                   avatar.translations[frames].double().numpy(),
                                   avatar.expression_coeffs[frames].double().numpy())


def driven_motion(avatar, audio: np.ndarray, sample_rate: int, frames: np.ndarray, shapes, model: MouthModel):
    """The avatar's training poses at consecutive `frames` [n], its mouth driven by those frames' audio alone with
    `model` (as `animation.lipsync_metrics.lipsync_tail_motion` drives a held-out tail) -> Motion.
    audio: [S] the clip's audio from frame 0."""
    from animation.audio_features import frames_audio
    from animation.lipsync_metrics import lipsync_tail_motion

    frames = _check_frames(avatar, frames)
    if np.any(np.diff(frames) != 1):
        raise ValueError("frames must be consecutive")
    segment = frames_audio(audio, sample_rate, avatar.fps, frames)
    poses = (avatar.rotations[frames].double().numpy(), avatar.translations[frames].double().numpy())
    return lipsync_tail_motion(avatar, segment, sample_rate, poses, shapes, mouth=model)[0]


def measure_opening_response(avatar, frames: np.ndarray) -> tuple[float, float]:
    """Render `avatar` on its own training track at `frames` [n] (tracked poses and expressions, over its plate),
    re-track with FaceMesh -> (`response_slope` of the rendered opening on the mesh's, mean rendered opening)."""
    mesh, rendered = _render_opening(avatar, tracked_motion(avatar, frames))
    return response_slope(mesh, rendered), float(np.nanmean(rendered))


def response_offset(tracked_mean: float, driven_mean: float, slope: float,
                    max_offset: float = DEFAULT_MAX_OFFSET) -> float:
    """How far to widen the driven mouth (mesh opening units) so that the avatar draws it as wide on average as it
    draws the person's tracked mouth -> offset in [0, max_offset]: the rendered shortfall over the slope (taken as
    at least 0.5, so that a mouth that hardly follows its mesh, or follows it backwards, gets no huge or negative
    offset)."""
    if not np.isfinite(driven_mean) or not np.isfinite(tracked_mean):
        return 0.0
    return float(np.clip((tracked_mean - driven_mean) / max(slope, 0.5), 0.0, max_offset))


def calibrate_mouth_model(model: MouthModel, avatar, frames: np.ndarray, audio: np.ndarray | None = None,
                          sample_rate: int | None = None, shapes=None,
                          max_gain: float = DEFAULT_MAX_GAIN) -> MouthModel:
    """Set the model's `render_gain` (and `render_slope`) for `avatar`, measured on `frames`, and, given the clip's
    `audio` (and the viseme shapes), its `render_offset`: the same frames driven by their own audio with the
    gain applied, rendered and compared with the tracked render's mean opening -> the same model."""
    slope, tracked_mean = measure_opening_response(avatar, frames)
    model.facts.render_slope = round(slope, 4)
    model.facts.render_gain = response_gain(slope, max_gain)
    model.facts.render_offset = 0.0
    if audio is not None and model.facts.opening_direction is not None:
        _, driven = _render_opening(avatar, driven_motion(avatar, audio, sample_rate, frames, shapes, model))
        model.facts.render_offset = round(response_offset(tracked_mean, float(np.nanmean(driven)), slope), 5)
    return model


def calibrate_saved_mouth(avatar, folder: str | Path, clip, shapes=None, stop: int | None = None) -> float | None:
    """Calibrate the mouth model saved in `folder` (beside `avatar`) on the clip's training frames before `stop`
    (clip: `avatar.preprocess.TrackedClip`, its audio drives the offset's measurement with `shapes`) and save it
    again -> the render gain, or None when there is no model or no measurable stretch (the model is then left as
    it was: gain 1 and no offset on top of its own calibration)."""
    from animation.mouth_model import load_mouth_model

    model = load_mouth_model(folder, avatar.num_expressions, avatar.fps)
    frames = calibration_frames(np.asarray(clip.valid), stop)
    if model is None or len(frames) < 10:
        return None
    audio = clip.audio if np.asarray(clip.audio).size else None
    try:
        calibrate_mouth_model(model, avatar, frames, audio, clip.audio_sample_rate, shapes)
    except ValueError:
        return None
    model.save(folder)
    return model.facts.render_gain


def learn_avatar_mouth(clip, avatar, folder: str | Path, holdout_from_frame: int | None = None):
    """A trained avatar's mouth from its video: the viseme shapes and the audio -> mouth model learned from the
    clip (`animation.viseme_shapes.learn_shapes_from_clip`, never frames from `holdout_from_frame` on), then the
    model calibrated to how this avatar draws an open mouth (`calibrate_saved_mouth`) -> the viseme shapes, or
    None when the clip's speech cannot be timed (nothing saved)."""
    from animation.viseme_shapes import learn_shapes_from_clip

    shapes = learn_shapes_from_clip(clip, folder, holdout_from_frame=holdout_from_frame)
    if shapes is not None:
        calibrate_saved_mouth(avatar, folder, clip, shapes, holdout_from_frame)
    return shapes
