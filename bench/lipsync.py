"""Lip sync on real video: train on all but the last 4 s, drive the held-out tail by its audio alone
(head poses from tracking), track rendered and real frames with FaceMesh, compare the mouths.

    python -m bench.lipsync [--json] [--preset fast] [--out DIR] [--reuse] [--videos a.mp4 b.mp4]

Metrics (`animation.lipsync_metrics`): open_r = correlation of the mouth-opening curves (13-14 over 33-263),
lmd_pct = lip landmark distance after similarity alignment on stable points, % of inter-ocular distance.
Targets: r >= 0.6, LMD <= 2.5 %. For scale: two different stretches of the same person give r ~ 0.0,
LMD ~ 4.1 %; a re-encoded copy of the truth r 0.99, LMD 0.6 %. The main columns drive the mouth with the
avatar's audio -> expression model (`animation.mouth_model`, fitted on the training part only, hyperparameters
by blocked cross-validation there); "phones" columns use the phone-based viseme shapes learned from the
training part alone, "generic" the generic viseme shapes. cv_r is the model's cross-validated opening r on the
training part, delay its audio delay (frames, chosen by that cross-validation around loudness_delay, the
loudness-opening estimate; the Obama clip's audio trails its video), phone_shift the frames its phone track moves
when replayed (`animation.mouth_delay.measure_phone_shift`). The "phones" columns replay the phone track unmoved.
open_r_interval (open_r_90 in the table) is the 90 % moving-block bootstrap interval of open_r
(`animation.lipsync_metrics.open_r_interval`): how differently the same lip sync could score on another 4 s.
Where r is lost: coef_r* = r of the driven mouth-opening curve computed from the expression coefficients (before
rendering) against the real tracked tail; open_r_ceiling / coef_r_ceiling = the same tail rendered from its own
*tracked* expressions (the ceiling of render + re-tracking, and of the rig's coefficients); render_r /
render_r_ceiling = r of those mesh openings against their own rendered, re-tracked openings (what the render and
FaceMesh keep of a motion: a small driven motion keeps less of itself than the person's own, fixed-size noise).
Each avatar's mouth on a Piper sentence is drawn to OUT/<video>/piper_mouth.png, the tail's real and driven
mouth openings to OUT/<video>/lipsync.png.
TTS, where no real video says how the mouth should move (`piper_closures`): two Piper sentences full of p/b/m
spoken through the avatar as the studio does it, rendered and read by FaceMesh frame by frame. piper_closed_pct =
% of the p/b/m whose smallest opening (+-1 frame) is at most 0.02 (shut lips), piper_bilabial_open their median
smallest opening, piper_shut_frames the mean number of frames read shut over a p/b/m's frames +-1 (how long the
lips stay shut), real_shut_run the median length of the real training frames' shut runs of up to 6 frames,
piper_open_q90 the 90th percentile of the opening over the sentences' frames (how wide the mouth opens on its
open vowels), real_open_q90 the same over the person's real training frames.
`--json` last line: {"runs": [{"video", "open_r", "lmd_pct", ...}]}.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP pools must not spin

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import emit, format_table, json_flag_parser  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
VIDEOS = ("obama_weekly_address_20s.mp4", "german_news_anchor_20s.mp4")
HOLDOUT_S = 4.0
PIPER_SENTENCE = "Maybe we should meet at the park, by the big blue pool. Then, papa bought apples."
PIPER_CLOSURE_SENTENCES = (PIPER_SENTENCE, "My mom baked a plum pie for Bob, but Pam preferred the warm bread.")


def evaluate_video(path: Path, out: Path, preset_name: str, reuse: bool) -> dict:
    from animation.lipsync_metrics import (interval_for_json, lipsync_scores, lipsync_tail_motion, mouth_open_curve,
                                           open_correlation, render_lipsync_tail, track_landmarks)
    from animation.motion import Motion
    from animation.mouth_calibration import learn_avatar_mouth
    from animation.mouth_model import load_mouth_model
    from animation.mouth_opening import opening_curve
    from animation.mouth_plot import plot_lipsync_tail
    from animation.viseme_shapes import generic_viseme_shapes
    from avatar.build import build_avatar_from_clip, prepare_clip
    from avatar.model import Avatar
    from avatar.preprocess import Holdout, preprocess_video
    from avatar.train import preset

    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    clip = preprocess_video(path, show_bar=False, holdout=Holdout(HOLDOUT_S, 0))  # rig never sees the tail
    config = preset(preset_name)
    if reuse and (out / "avatar" / "avatar.json").is_file():
        avatar = Avatar.load(out / "avatar")
        prepared = prepare_clip(clip, config, holdout_seconds=HOLDOUT_S, holdout_every=0)
    else:
        avatar, prepared = build_avatar_from_clip(clip, "lipsync", config, out / "avatar", out / "checkpoint",
                                                  holdout_seconds=HOLDOUT_S, holdout_every=0)
    first = clip.num_frames - int(round(HOLDOUT_S * clip.fps))
    tail = np.arange(first, clip.num_frames)
    first_sample = int(round(first / clip.fps * clip.audio_sample_rate))
    # Both the viseme shapes and the audio -> mouth model from the training part only, never the tail.
    shapes = (learn_avatar_mouth(clip, avatar, out, holdout_from_frame=first)
              or generic_viseme_shapes(avatar.num_expressions))
    mouth = load_mouth_model(out, avatar.num_expressions, avatar.fps)
    real = prepared.data.frames[first:].numpy()
    poses = (avatar.rotations[tail].numpy(), avatar.translations[tail].numpy())  # tracked (and refined) head poses
    row = {"video": path.name}
    real_open = mouth_open_curve(track_landmarks(list(real)))
    neutral, basis = avatar.neutral.numpy(), avatar.expression_basis.numpy()
    tail_audio = clip.audio[first_sample:]
    variants = (("", shapes, mouth), ("_phones", shapes, None),
                ("_generic", generic_viseme_shapes(avatar.num_expressions), None))
    motions = {label: lipsync_tail_motion(avatar, tail_audio, clip.audio_sample_rate, poses, chosen, mouth=model)[0]
               for label, chosen, model in variants}
    # the ceiling: the tail's own tracked expressions, rendered and re-tracked the same way
    motions["_ceiling"] = Motion.from_expressions(avatar.fps, motions[""].rotations, motions[""].translations,
                                                  clip.coeffs[tail])
    for label, motion in motions.items():
        mesh_open = opening_curve(motion.coeffs, neutral, basis)
        if label != "_generic":  # generic shapes move the generic columns, not the avatar's coefficients
            row[f"coef_r{label}"] = round(open_correlation(mesh_open, real_open), 3)
        _, rendered = render_lipsync_tail(avatar, tail_audio, clip.audio_sample_rate, poses,
                                          out / f"lipsync{label}.mp4", motion=motion)
        scores = lipsync_scores(list(rendered), list(real))
        row[f"open_r{label}"] = round(scores["open_r"], 3)
        if label in ("", "_ceiling"):  # how much of the mesh's own opening the render and re-tracking keep
            row[f"render_r{label}"] = round(open_correlation(mesh_open, scores["open_rendered"]), 3)
        if label == "":
            row["open_r_interval"] = interval_for_json(scores["open_r_interval"])
        row[f"lmd_pct{label}"] = round(scores["lmd_pct"], 3)
        row[f"tracked{label}"] = f"{scores['tracked_frames']}/{scores['frames']}"
        if label == "":
            plot_lipsync_tail(tail_audio, clip.audio_sample_rate, avatar.fps, scores, out / "lipsync.png",
                              f"{path.stem} tail")
    row["learned_visemes"] = int(shapes.learned.sum())
    if mouth is not None:
        plot_piper_sentence(avatar, shapes, mouth, out / "piper_mouth.png")
    row.update(piper_closures(avatar, shapes, mouth, prepared.data.frames[:first].numpy()))
    facts = mouth.facts if mouth is not None else None
    row.update({"cv_r": facts and facts.cv_open_r, "delay": facts and facts.recording_delay_frames,
                "phone_shift": facts and facts.phone_shift_frames,
                "loudness_delay": facts and facts.measured_delay_frames, "lambda": facts and facts.ridge_lambda,
                "components": facts and facts.components, "audio_share": facts and facts.audio_share,
                "viseme_features": facts and bool(facts.viseme_offsets),
                "render_gain": facts and facts.render_gain, "render_offset": facts and facts.render_offset})
    row["minutes"] = round((time.monotonic() - start) / 60, 1)
    (out / "lipsync.json").write_text(json.dumps(row, indent=1))
    return row


def plot_piper_sentence(avatar, shapes, mouth, path: Path) -> None:
    """The avatar's mouth opening on a Piper sentence (another speaker), audio model vs phone visemes, as a PNG."""
    from animation.motion import MotionOptions, motion_from_speech
    from animation.mouth_opening import opening_curve
    from animation.mouth_plot import plot_mouth_opening
    from audio.tts import PiperEngine

    speech = PiperEngine().synthesize(PIPER_SENTENCE)
    options = MotionOptions(fps=avatar.fps, still=True, blinks_per_minute=0)
    neutral, basis = avatar.neutral.numpy(), avatar.expression_basis.numpy()
    curves = {"audio model mixed with phones": motion_from_speech(speech, avatar, options, shapes, mouth=mouth).coeffs,
              "phone visemes alone": motion_from_speech(speech, avatar, options, shapes).coeffs}
    plot_mouth_opening(speech, avatar.fps, {k: opening_curve(v, neutral, basis) for k, v in curves.items()}, path,
                       f"{avatar.name}: Piper voice (another speaker)")


def piper_closures(avatar, shapes, mouth, real_frames: np.ndarray) -> dict:
    """Do the lips shut on p, b and m when Piper speaks through this avatar (the studio's own path)?

    Sentences full of p/b/m are spoken by Piper, turned into motion as `app.py say` does (default motion
    options, fixed seed), rendered over the plate and read by FaceMesh frame by frame (static mode: the video
    mode's tracking carries a shut mouth over from frame to frame and misses short openings and closures).
    real_frames: [T, H, W, 3] training frames of the person, read the same way for reference.
    -> {"piper_bilabials", "piper_closed_pct" (bilabials whose smallest opening is <= CLOSED_LIPS),
        "piper_bilabial_open" (their median smallest opening), "piper_shut_frames" (mean frames read shut over a
        p/b/m's frames +-1), "real_shut_run" (median length of the real frames' shut runs of up to 6 frames, the
        closures of speech), "piper_open_q90", "real_open_q90" (the openings' 90th percentiles: the sentences are
        full of closures, so a median would compare unlike speech)}."""
    from animation.lipsync_metrics import (CLOSED_LIPS, bilabial_minima, bilabial_shut_frames, mouth_open_curve,
                                           shut_run_lengths)
    from animation.motion import MotionOptions, motion_from_speech
    from audio.tts import PiperEngine
    from avatar.tracking import track_frames
    from render.pipeline import BackgroundSpec, RenderOptions, render_frames

    engine, minima, shut, openings = PiperEngine(), [], [], []
    for sentence in PIPER_CLOSURE_SENTENCES:
        speech = engine.synthesize(sentence)
        motion = motion_from_speech(speech, avatar, MotionOptions(fps=avatar.fps, seed=0), shapes, mouth=mouth)
        frames = np.concatenate(list(render_frames(avatar, motion, BackgroundSpec("plate"), RenderOptions())))
        opening = mouth_open_curve(track_frames(list(frames), static=True).landmarks)
        minima.append(bilabial_minima(opening, speech.phones, speech.phone_set, avatar.fps))
        shut.append(bilabial_shut_frames(opening, speech.phones, speech.phone_set, avatar.fps))
        openings.append(opening)
    minima, shut, openings = np.concatenate(minima), np.concatenate(shut), np.concatenate(openings)
    real = mouth_open_curve(track_frames(list(real_frames), static=True).landmarks)
    real_runs = shut_run_lengths(real, longest=6)
    return {"piper_bilabials": int(len(minima)),
            "piper_closed_pct": round(100.0 * float(np.mean(minima <= CLOSED_LIPS)), 1),
            "piper_bilabial_open": round(float(np.nanmedian(minima)), 4),
            "piper_shut_frames": round(float(np.mean(shut)), 2),
            "real_shut_run": float(np.median(real_runs)) if real_runs.size else None,
            "piper_open_q90": round(float(np.nanpercentile(openings, 90)), 4),
            "real_open_q90": round(float(np.nanpercentile(real, 90)), 4)}


def main() -> None:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "talking_avatar_lipsync")
    parser.add_argument("--reuse", action="store_true", help="reuse avatars trained by an earlier run in --out")
    parser.add_argument("--videos", nargs="*", type=Path, default=[DATA / v for v in VIDEOS])
    args = parser.parse_args()
    runs = []
    for video in args.videos:
        if not video.is_file():
            print(f"skipping {video}: not found")
            continue
        runs.append(evaluate_video(video, args.out / video.stem, args.preset, args.reuse))
        print(json.dumps(runs[-1]), flush=True)
    columns = ["video", "open_r", "open_r_90", "lmd_pct", "coef_r", "open_r_phones", "lmd_pct_phones",
               "open_r_generic", "lmd_pct_generic", "open_r_ceiling", "coef_r_ceiling", "render_r", "render_r_ceiling",
               "cv_r", "delay", "phone_shift",
               "piper_closed_pct", "piper_bilabial_open", "piper_shut_frames", "real_shut_run", "piper_open_q90",
               "real_open_q90", "minutes"]
    shown = [{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in run.items()} for run in runs]
    for row, run in zip(shown, runs):  # the interval as "low-high"
        interval = run.get("open_r_interval")
        row["open_r_90"] = "-" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"
    table = format_table(shown, columns) + "\ntargets: open_r >= 0.6, lmd_pct <= 2.5"
    emit({"runs": runs}, table, args.json)


if __name__ == "__main__":
    main()
