"""Optional enhancers: seconds per frame of the real-size GFPGAN / Real-ESRGAN / Wav2Lip in the render pipeline.

    python -m bench.enhance [--json] [--frames 6] [--sizes 512 1024] [--home DIR]

No real weights can be downloaded here, so each upstream layout (GFPGANv1.4; realesr-general-x4v3, the one
fast enough for video; Wav2Lip) is written with seeded random weights to a scratch folder and loaded by the
product's own loaders; the pictures are meaningless, the time is what the real weights cost (same shapes, same
operations).
Frames of a Piper sentence on the default avatar go through `render.pipeline.render_frames` with each
`RenderOptions.enhance` kind; per frame = that run's wall time / frames (rendering included), and the
"enhance" column is the enhancers' share. The last column projects the 30 s script of `bench.e2e` (750 frames).
`--json` last line: {"frames", "rows": [{"size", "enhance", "seconds_per_frame", "enhance_per_frame",
"minutes_for_30s"}]}.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP pools must not spin

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.common import emit, format_table, json_flag_parser  # noqa: E402

KINDS = ("none", "upscale", "lips", "face", "lips+face+upscale")
FRAMES_FOR_30S = 750  # 30 s at 25 fps


def random_weight_folders(scratch: Path) -> tuple[Path, Path, Path]:
    """Seeded random weights in GFPGANv1.4's, realesr-general-x4v3's and Wav2Lip's upstream layouts, as
    safetensors."""
    import torch
    from safetensors.torch import save_file

    from render.gfpgan_arch import GFPGANConfig, GFPGANv1Clean
    from render.realesrgan import UPSTREAM_CONFIGS, build_network
    from render.wav2lip_arch import Wav2LipConfig, Wav2LipNet

    torch.manual_seed(0)
    folders = scratch / "gfpgan", scratch / "realesrgan", scratch / "wav2lip"
    for folder, network, name in ((folders[0], GFPGANv1Clean(GFPGANConfig()), "GFPGANv1.4.safetensors"),
                                  (folders[1], build_network(UPSTREAM_CONFIGS["realesr-general-x4v3"]),
                                   "realesr-general-x4v3.safetensors"),
                                  (folders[2], Wav2LipNet(Wav2LipConfig()), "wav2lip_gan.safetensors")):
        folder.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(folder / name))
    return folders


def main() -> None:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--home", type=Path, default=None, help="data folder (default: $TALKING_AVATAR_HOME)")
    args = parser.parse_args()
    from animation.motion import MotionOptions, motion_from_speech
    from audio.tts import PiperEngine
    from avatar.default_avatar import ensure_default_avatar
    from avatar.library import data_home
    from render.enhance import Enhancers
    from render.generate import Generator
    from render.gfpgan import GFPGAN
    from render.pipeline import BackgroundSpec, RenderOptions, render_frames
    from render.realesrgan import RealESRGAN
    from render.wav2lip import Wav2Lip

    home = args.home or data_home()
    ensure_default_avatar(home)
    avatar, shapes, mouth = Generator(home).avatar(None)
    speech = PiperEngine().synthesize("Welcome to the studio. This video was made on a small computer.")
    motion = motion_from_speech(speech, avatar, MotionOptions(fps=avatar.fps), shapes, mouth=mouth)
    with tempfile.TemporaryDirectory() as scratch:
        gfpgan_dir, esrgan_dir, wav2lip_dir = random_weight_folders(Path(scratch))
        enhancers = Enhancers(face=GFPGAN.load(gfpgan_dir), upscaler=RealESRGAN.load(esrgan_dir),
                              lips=Wav2Lip.load(wav2lip_dir))
    audio = (speech.waveform, speech.sample_rate)
    rows = []
    for size in args.sizes:
        for kind in KINDS:
            options = RenderOptions(size=size, enhance=kind, batch=args.frames)  # one batch is the timed run
            frames = iter(render_frames(avatar, motion, BackgroundSpec("plate"), RenderOptions(size=size, batch=1),
                                        enhancers=enhancers))
            next(frames)  # warm-up: the rasterizer's compiled kernels
            timings: dict = {}
            start = time.perf_counter()
            count = 0
            for batch in render_frames(avatar, motion, BackgroundSpec("plate"), options, enhancers=enhancers,
                                       timings=timings, audio=audio):
                count += len(batch)
                if count >= args.frames:
                    break
            per_frame = (time.perf_counter() - start) / count
            rows.append({"size": size, "enhance": kind, "seconds_per_frame": round(per_frame, 3),
                         "enhance_per_frame": round(timings.get("enhance", 0.0) / count, 3),
                         "minutes_for_30s": round(per_frame * FRAMES_FOR_30S / 60, 1)})
    table = format_table(rows, ["size", "enhance", "seconds_per_frame", "enhance_per_frame", "minutes_for_30s"]) + (
        f"\n{args.frames} frames of the default avatar ({avatar.camera.width} px) per row; random weights in the "
        f"upstream layouts (GFPGANv1.4, realesr-general-x4v3, Wav2Lip), so only the times mean anything")
    emit({"frames": args.frames, "rows": rows}, table, args.json)


if __name__ == "__main__":
    main()
