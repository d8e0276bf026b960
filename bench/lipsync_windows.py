"""Lip sync scored on windows of the training part, so mouth-model designs are chosen without the held-out tails.

    python -m bench.lipsync_windows [--json] [--windows 4] [--render DIR] [--option NAME=VALUE ...]

`bench.lipsync` scores one 4 s tail per clip: about 100 frames, whose opening r moves by +-0.05-0.1 between
equally good models, and which must stay unseen while a design is chosen. This bench splits each clip's
training part (all but the last 4 s) into `--windows` windows; for each window it refits the audio -> mouth
model and the viseme shapes on the rest of the training part (the rest must still hold `min_training_s`),
drives the window by its audio alone (phones recognised on that audio, the recording's delay, as
`bench.lipsync` replays its tail) and compares the driven mouth with the real one, tracked by FaceMesh on the
training-resolution crops. The held-out tail is never read.

- coef_r: opening r of the driven expression coefficients (before rendering) against the real tracked mouth;
- with `--render DIR` (a `bench.lipsync --out DIR` folder holding each clip's avatar): the window rendered with
  that avatar and re-tracked, open_r and lmd_pct as in `bench.lipsync`. The avatar was trained on these
  frames, so its pixels are not held out, but the mouth model never saw the window; this measures what the
  render and the tracker make of a driven mouth (e.g. small motions lost as closed lips). The mouth model is
  calibrated to the avatar (`animation.mouth_calibration`) on the longest stretch of training frames outside
  the window, as the studio calibrates it on its training frames.
- `--no-offset` (with `--render`): calibrate the render gain only, leaving the driven mouth's render offset at 0.
- `--option NAME=VALUE` overrides a `MouthFitOptions` field (tuples as comma lists), e.g. `num_bands=40`.
- `--train-seconds S`: each window's model learns from only the S seconds of training frames nearest the window
  (a learning curve; below 12 s pass `--option min_training_s=4` too).

Measured with its prototype (2026-12-04, real opening from the tracker's own crops): 8 mel bands 0.577 mean
coef_r over the 8 windows against 0.557-0.562 for 16-64 bands, though 40 bands scored +0.09 on Obama's tail
alone; ridge, delay, component and mix grids and random-Fourier (RBF-like) features all within 0.555-0.583.
The amplitude gain and the 20-member ensemble of `animation.mouth_model` were chosen on it (bench/RESULTS.md).
`--json` last line: {"runs": [{"video", "coef_r", "open_r", "lmd_pct", "windows": [...]}], "options": {...}}.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP pools must not spin

import dataclasses  # noqa: E402
from functools import partial  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import emit, format_table, json_flag_parser  # noqa: E402
from bench.lipsync import DATA, HOLDOUT_S, VIDEOS  # noqa: E402


def parse_options(pairs: list[str]):
    """`NAME=VALUE` strings -> MouthFitOptions, each value converted to its field's type."""
    from animation.mouth_model import MouthFitOptions

    fields = {f.name: f for f in dataclasses.fields(MouthFitOptions)}
    values = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in fields or not text:
            raise SystemExit(f"error: --option wants NAME=VALUE with NAME one of {', '.join(sorted(fields))}")
        default = getattr(MouthFitOptions(), name)
        if isinstance(default, bool):
            values[name] = text.lower() in ("1", "true", "yes")
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else float
            values[name] = tuple(kind(v) for v in text.split(",") if v)
        else:
            values[name] = type(default)(text)
    return MouthFitOptions(**values)


def nearest_frames(valid: np.ndarray, window: np.ndarray, count: int) -> np.ndarray:
    """valid [T] with only the `count` valid frames nearest the window's centre kept -> [T] bool."""
    frames = np.flatnonzero(valid)
    kept = np.zeros_like(np.asarray(valid, bool))
    kept[frames[np.argsort(np.abs(frames - window.mean()), kind="stable")[:max(0, int(count))]]] = True
    return kept


def evaluate_video(path: Path, windows: int, options, render_dir: Path | None,
                   train_seconds: float | None = None, offset: bool = True) -> dict:
    from animation.audio_features import frames_audio
    from animation.lipsync_metrics import (lip_landmark_distance, lipsync_tail_motion, mouth_open_curve,
                                           open_correlation, render_lipsync_tail, track_landmarks)
    from animation.mouth_calibration import calibrate_mouth_model, calibration_frames
    from animation.mouth_model import fit_mouth_model
    from animation.mouth_opening import opening_curve
    from animation.viseme_shapes import learn_viseme_shapes, recognised_viseme_weights
    from audio.align import time_speech
    from avatar.build import prepare_clip
    from avatar.model import Avatar
    from avatar.preprocess import Holdout, preprocess_video
    from avatar.train import preset

    if render_dir is not None and not (render_dir / path.stem / "avatar" / "avatar.json").is_file():
        raise SystemExit(f"error: no avatar in {render_dir / path.stem / 'avatar'}; run "
                         f"`python -m bench.lipsync --out {render_dir}` first")
    clip = preprocess_video(path, show_bar=False, holdout=Holdout(HOLDOUT_S, 0))
    first = clip.num_frames - int(round(HOLDOUT_S * clip.fps))  # the tail starts here and is never read
    samples_per_frame = clip.audio_sample_rate / clip.fps
    audio = np.asarray(clip.audio[:int(round(first * samples_per_frame))], np.float32)
    speech = time_speech(audio, None, sample_rate=clip.audio_sample_rate)
    wave, rate = speech.waveform, speech.sample_rate
    coeffs = np.asarray(clip.coeffs[:first], np.float64)
    valid_all = np.asarray(clip.valid[:first], bool)
    avatar = None
    if render_dir is not None:
        avatar = Avatar.load(render_dir / path.stem / "avatar")
    prepared = prepare_clip(clip, preset("fast" if avatar is None else avatar.config.get("preset", "fast")),
                            holdout_seconds=HOLDOUT_S, holdout_every=0)

    rows = []
    for window in np.array_split(np.arange(first), windows):
        valid = valid_all.copy()
        valid[window] = False
        if train_seconds is not None:
            valid = nearest_frames(valid, window, int(round(train_seconds * clip.fps)))
        model = fit_mouth_model(coeffs, clip.neutral, clip.basis, wave, rate, clip.fps, speech.phones,
                                speech.phone_set, valid, options, partial(recognised_viseme_weights, fps=clip.fps))
        shapes = learn_viseme_shapes(coeffs, clip.fps, speech.phones, speech.phone_set, valid,
                                     phone_shift_frames=model.facts.phone_shift(model.facts.recording_delay_frames))
        if avatar is not None:  # the avatar's opening response, measured without the window too
            calibrate_mouth_model(model, avatar, calibration_frames(valid), wave if offset else None, rate, shapes)
        segment = frames_audio(wave, rate, clip.fps, window)
        poses = (clip.rotation[window], clip.translation[window])
        real_landmarks = track_landmarks(list(prepared.data.frames[window].numpy()))
        real_open = mouth_open_curve(real_landmarks)
        driver = avatar if avatar is not None else _StandIn(clip.fps, coeffs.shape[1])
        motion, _ = lipsync_tail_motion(driver, segment, rate, poses, shapes, mouth=model)
        row = {"frames": [int(window[0]), int(window[-1]) + 1], "gain": round(model.facts.gain, 3),
               "render_gain": round(model.facts.render_gain, 3), "render_offset": model.facts.render_offset,
               "coef_r": round(open_correlation(opening_curve(motion.coeffs, clip.neutral, clip.basis), real_open), 3)}
        if avatar is not None:
            _, frames = render_lipsync_tail(avatar, segment, rate, poses, render_dir / "window.mp4", motion=motion)
            landmarks = track_landmarks(list(frames))
            row["open_r"] = round(open_correlation(mouth_open_curve(landmarks), real_open), 3)
            row["lmd_pct"] = round(lip_landmark_distance(landmarks, real_landmarks), 3)
        rows.append(row)
    result = {"video": path.name, "coef_r": round(float(np.mean([r["coef_r"] for r in rows])), 3), "windows": rows}
    for key in ("open_r", "lmd_pct"):
        result[key] = round(float(np.mean([r[key] for r in rows])), 3) if avatar is not None else None
    return result


@dataclasses.dataclass
class _StandIn:
    """What `lipsync_tail_motion` reads of an avatar when nothing is rendered (the poses are given)."""

    fps: float
    num_expressions: int


def main() -> None:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--render", type=Path, default=None, help="a bench.lipsync --out folder with the avatars")
    parser.add_argument("--option", action="append", default=[], help="MouthFitOptions override NAME=VALUE")
    parser.add_argument("--videos", nargs="*", type=Path, default=[DATA / v for v in VIDEOS])
    parser.add_argument("--no-offset", action="store_true",
                        help="with --render: leave the driven mouth's render offset at 0 (A/B of the calibration)")
    parser.add_argument("--train-seconds", type=float, default=None,
                        help="learn each window's model from only this many seconds of training frames")
    args = parser.parse_args()
    options = parse_options(args.option)
    runs = []
    for video in args.videos:
        if not video.is_file():
            print(f"skipping {video}: not found")
            continue
        runs.append(evaluate_video(video, args.windows, options, args.render, args.train_seconds,
                                    not args.no_offset))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "windows"}), flush=True)
    shown = [{k: ("-" if v is None else f"{v:.3f}" if isinstance(v, float) else v) for k, v in run.items()
              if k != "windows"} for run in runs]
    table = format_table(shown, ["video", "coef_r", "open_r", "lmd_pct"])
    if runs:
        table += f"\nmean coef_r over all windows: {np.mean([w['coef_r'] for r in runs for w in r['windows']]):.3f}"
    emit({"runs": runs, "options": dataclasses.asdict(options), "train_seconds": args.train_seconds}, table, args.json)


if __name__ == "__main__":
    main()
