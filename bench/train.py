"""Avatar training benchmark: minutes, held-out PSNR/SSIM (head region) and render FPS per video and preset.

    python -m bench.train [--preset fast standard] [--video PATH ...] [--json]

Holds out the last 4 s and every 10th frame of each clip (never trained on), trains with the preset, scores
the held-out frames (see `avatar.evaluate`: matte > 0.5 inside the widened face-landmark box), and writes a
side-by-side PNG of held-out frames (real | rendered | difference) to bench/train_<video>_<preset>.png.
`minutes` is the whole build (tracking + training + evaluation); `train_minutes` training alone. `psnr` pools
all held-out frames; `psnr_interleaved` the every-10th frames (between training frames: interpolation),
`psnr_tail` the last 4 s (poses and expressions after the training part: extrapolation).
Held-out frames are posed as training frames are: FaceMesh tracking, then (presets with `pose_refine_at`) their
rigid head pose refined against the finished avatar (`avatar.pose_refine`); `psnr_facemesh_poses` /
`ssim_facemesh_poses` score the same avatar with the FaceMesh poses alone.
Timings depend on the machine's load: the CPU here is shared.
"""
from __future__ import annotations

import os

# Under a busy CPU, OpenMP threads that spin while waiting starve numba's rasterizer threads (torch and numba
# share libgomp here); passive waiting measured 2-2.5x faster training under load. Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.common import emit, format_table, json_flag_parser

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "video"
DEFAULT_VIDEOS = (DATA / "obama_weekly_address_20s.mp4", DATA / "german_news_anchor_20s.mp4")
HOLDOUT_SECONDS = 4.0
HOLDOUT_EVERY = 10


def bench_one(video: Path, preset_name: str) -> dict:
    import shutil

    from avatar.build import prepare_clip, train_and_evaluate
    from avatar.preprocess import Holdout, preprocess_video
    from avatar.train import preset

    start = time.monotonic()
    # the rig (neutral, expression basis) and the background plate are fitted without the held-out frames
    clip = preprocess_video(video, show_bar=False, holdout=Holdout(HOLDOUT_SECONDS, HOLDOUT_EVERY))
    config = preset(preset_name, holdout_seconds=HOLDOUT_SECONDS, holdout_every=HOLDOUT_EVERY)
    prepared = prepare_clip(clip, config)
    if not prepared.rig_excludes_held_out:
        raise RuntimeError("the rig was fitted with held-out frames; the score would not be held out")
    with tempfile.TemporaryDirectory() as scratch:
        result, metrics, files = train_and_evaluate(prepared, config, Path(scratch))
        picture = REPO / "bench" / f"train_{video.stem}_{preset_name}.png"
        shutil.copyfile(files["preview.png"], picture)
    return {"video": video.name, "preset": preset_name, "minutes": round((time.monotonic() - start) / 60, 2),
            "train_minutes": round(result.seconds / 60, 2), "iterations": result.iterations,
            "gaussians": int(result.parent.shape[0]), "resolution": config.resolution,
            "psnr": round(metrics["psnr"], 2), "ssim": round(metrics["ssim"], 4),
            "psnr_interleaved": round(metrics["psnr_interleaved"], 2), "psnr_tail": round(metrics["psnr_tail"], 2),
            "psnr_facemesh_poses": round(metrics["psnr_facemesh_poses"], 2) if "psnr_facemesh_poses" in metrics else "-",
            "ssim_facemesh_poses": round(metrics["ssim_facemesh_poses"], 4) if "ssim_facemesh_poses" in metrics else "-",
            "render_fps": round(metrics["render_fps"], 1), "held_out_frames": metrics["held_out_frames"],
            "picture": str(picture.relative_to(REPO))}


def main(argv: list[str] | None = None) -> int:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["fast", "standard"], choices=["fast", "standard", "tiny"])
    parser.add_argument("--video", nargs="+", type=Path, default=list(DEFAULT_VIDEOS))
    args = parser.parse_args(argv)
    runs = []
    for video in args.video:
        if not video.is_file():
            raise SystemExit(f"error: benchmark video not found: {video}")
        for preset_name in args.preset:
            runs.append(bench_one(video, preset_name))
            print(f"done: {runs[-1]}", flush=True)
    columns = ["video", "preset", "minutes", "train_minutes", "iterations", "gaussians", "resolution", "psnr", "ssim",
               "psnr_interleaved", "psnr_tail", "psnr_facemesh_poses", "ssim_facemesh_poses", "render_fps"]
    emit({"runs": [{k: r[k] for k in ("video", "preset", "minutes", "psnr", "ssim", "render_fps")} for r in runs]},
         format_table(runs, columns), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
