"""Avatar subcommands for `app.py`:

    python app.py train VIDEO_OR_PHOTO --name NAME [--preset fast|standard] [--overwrite] [--restart]
    python app.py eval VIDEO --holdout-seconds S --out DIR [--preset fast|standard]

`train` tracks the video (or photo: decided by content), trains and saves the avatar into the library
(`$TALKING_AVATAR_HOME`, default `~/.talking_avatar`). A killed run resumes from its checkpoint when the same
command is run again (`--restart` discards it). `eval` trains on all but the last S seconds of a video, then
renders that held-out tail from its tracked head poses and expressions to DIR/reconstruction.mp4 (same fps and
frame count as the tail, the tail's audio muxed in) and writes DIR/metrics.json.
Bad input raises ValueError/FileNotFoundError (printed by app.py as `error: ...`, exit 2); an existing avatar
is never lost: the new one is written beside it and renamed into place only when complete.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# OpenMP threads that spin while waiting starve numba's rasterizer threads on a busy CPU (torch and numba share
# libgomp); passive waiting trained 2-2.5x faster under load here. Set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PRESET_CHOICES = ("fast", "standard")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `train` and `eval` on app.py's subparsers."""
    train = subparsers.add_parser("train", help="video or photo -> avatar in the library",
                                  description="Track, train and save a Gaussian head avatar.")
    train.add_argument("source", type=Path, help="selfie video (20-60 s, talking) or one portrait photo")
    train.add_argument("--name", required=True, help="avatar name: letters, digits, '_', '-', '.'")
    train.add_argument("--preset", choices=PRESET_CHOICES, default="fast",
                       help="fast (about 5 min) or standard (about 30 min); default fast")
    train.add_argument("--overwrite", action="store_true", help="replace an existing avatar of that name")
    train.add_argument("--restart", action="store_true", help="ignore a checkpoint left by an interrupted run")
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser("eval", help="train on a video's head, score and render its held-out tail",
                                     description="Hold out the last S seconds, train on the rest, render the tail.")
    evaluate.add_argument("video", type=Path, help="talking-head video")
    evaluate.add_argument("--holdout-seconds", type=float, required=True, help="seconds at the end to hold out")
    evaluate.add_argument("--out", type=Path, required=True,
                          help="output folder (reconstruction.mp4, lipsync.mp4, lipsync.png, metrics.json)")
    evaluate.add_argument("--preset", choices=PRESET_CHOICES, default="fast", help="training preset (default fast)")
    evaluate.set_defaults(handler=run_eval)


class _Bar:
    """One tqdm bar per stage (preprocessing stages, training, evaluating)."""

    def __init__(self) -> None:
        self.stage = None
        self.bar = None

    def __call__(self, stage: str, fraction: float, info: dict | None = None) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=1000, desc=stage, unit="‰", leave=True, bar_format="{desc:>12}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self.bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        if info:
            shown = {k: (f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in info.items()
                     if k in ("iteration", "psnr", "gaussians")}
            self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_train(args: argparse.Namespace) -> int:
    from avatar import library
    from avatar.from_source import avatar_summary, build_from_source

    name = library.require_new_name(args.name, overwrite=args.overwrite)
    if not args.source.exists():
        raise FileNotFoundError(f"no such file: {args.source}")
    bar = _Bar()
    start = time.monotonic()
    destination = library.avatar_path(name)
    try:
        avatar, notes = build_from_source(args.source, name, args.preset, destination,
                                          library.checkpoint_path(name), bar, resume=not args.restart)
    finally:
        bar.close()
    for note in notes:
        print(f"note: {note}")
    print(f"saved avatar {name!r} to {destination} in {(time.monotonic() - start) / 60:.1f} min: "
          f"{avatar_summary(avatar)}")
    return 0



def run_eval(args: argparse.Namespace) -> int:
    from animation.lipsync_metrics import interval_for_json, lipsync_scores, render_lipsync_tail
    from animation.mouth_calibration import learn_avatar_mouth
    from animation.mouth_model import load_mouth_model
    from animation.mouth_plot import plot_lipsync_tail
    from animation.viseme_shapes import generic_viseme_shapes
    from avatar import video
    from avatar.build import build_avatar_from_clip
    from avatar.evaluate import render_frames, write_video
    from avatar.preprocess import Holdout, preprocess_video
    from avatar.train import preset

    if not (args.holdout_seconds > 0):
        raise ValueError(f"--holdout-seconds must be positive, got {args.holdout_seconds}")
    info = video.probe_media(args.video)
    video.require_video(info)
    if args.holdout_seconds >= info.duration_s - 1.0:
        raise ValueError(f"holding out {args.holdout_seconds:g} s of a {info.duration_s:.1f} s video leaves too little to train on")
    bar = _Bar()
    start = time.monotonic()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        # the rig (neutral, expression basis, plate) is fitted without the held-out tail
        clip = preprocess_video(args.video, progress=lambda stage, fraction: bar(stage, fraction), show_bar=False,
                                holdout=Holdout(args.holdout_seconds, 0))
        config = preset(args.preset)
        avatar, prepared = build_avatar_from_clip(clip, "eval", config, out / "avatar", out / "checkpoint", bar,
                                                  holdout_seconds=args.holdout_seconds, holdout_every=0)
        data = prepared.data
        tail = list(range(clip.num_frames - int(round(args.holdout_seconds * clip.fps)), clip.num_frames))
        params = {k: v for k, v in avatar.gaussians.items() if k != "parent"}
        plate = prepared.plate.float() / 255.0
        bar("rendering", 0.0)
        frames = render_frames(params, avatar.gaussians["parent"], data, tail, plate, config.backend)
        bar("encoding", 0.0)
        first_sample = int(round(tail[0] / clip.fps * clip.audio_sample_rate))
        audio = clip.audio[first_sample:] if clip.audio.size else None
        write_video(frames, clip.fps, out / "reconstruction.mp4", audio, clip.audio_sample_rate)
        lipsync = None
        if audio is not None:
            # The same tail driven by its audio alone (head poses from tracking); viseme shapes and the audio ->
            # mouth model learned from the training part only, never the tail.
            bar("lip sync", 0.0)
            shapes = (learn_avatar_mouth(clip, avatar, out, holdout_from_frame=tail[0])
                      or generic_viseme_shapes(avatar.num_expressions))
            mouth = load_mouth_model(out, avatar.num_expressions, avatar.fps)  # fitted above, training part only
            poses = (avatar.rotations[tail].numpy(), avatar.translations[tail].numpy())  # tracked (and refined)
            _, driven = render_lipsync_tail(avatar, audio, clip.audio_sample_rate, poses, out / "lipsync.mp4", shapes,
                                            mouth=mouth)
            lipsync = lipsync_scores(list(driven), list(prepared.data.frames[tail[0]:].numpy()))
            plot_lipsync_tail(audio, clip.audio_sample_rate, clip.fps, lipsync, out / "lipsync.png",
                              f"held-out {args.holdout_seconds:g} s")
        bar("encoding", 1.0)
    finally:
        bar.close()
    scored = avatar.metrics  # held-out = exactly the tail here (holdout_every=0)
    metrics = {
        "video": str(args.video), "preset": args.preset, "holdout_seconds": args.holdout_seconds,
        "held_out_frames": scored["held_out_frames"], "psnr": scored["psnr"], "ssim": scored["ssim"],
        "metric_region": "head: matte > 0.5 inside the widened face-landmark box",
        "training_minutes": avatar.stats["train_minutes"], "total_minutes": round((time.monotonic() - start) / 60, 2),
        "iterations": avatar.stats["iterations"], "gaussians": avatar.num_gaussians, "render_fps": scored["render_fps"],
        "resolution": avatar.camera.width, "fps": clip.fps, "tail_frames": len(tail),
        "reconstruction": str(out / "reconstruction.mp4"),
    }
    if "psnr_mouth" in scored:  # inside the tail frames' mouth boxes (lips, teeth)
        metrics["psnr_mouth"] = scored["psnr_mouth"]
    if "psnr_facemesh_poses" in scored:  # the same avatar scored with the tail's FaceMesh poses, unrefined
        metrics.update({"psnr_facemesh_poses": scored["psnr_facemesh_poses"],
                        "ssim_facemesh_poses": scored["ssim_facemesh_poses"]})
    if lipsync is not None:
        metrics.update({"lipsync": str(out / "lipsync.mp4"), "lipsync_plot": str(out / "lipsync.png"),
                        "lipsync_open_r": lipsync["open_r"],
                        "lipsync_open_r_interval": interval_for_json(lipsync["open_r_interval"]),
                        "lipsync_lmd_pct": lipsync["lmd_pct"],
                        "lipsync_tracked_frames": f"{lipsync['tracked_frames']}/{lipsync['frames']}"})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return 0
