"""`python app.py say`: a script or a recording -> lip-synced MP4, from the command line.

    python app.py say --text "Hello!" --out hello.mp4
    python app.py say --avatar alice --audio talk.m4a --out talk.mp4 --background blur --emotion smile
    python app.py say --text "Hello!" --size 1024 --enhance face+upscale --out hello.mp4   (weights in models/)
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from animation.motion import EMOTIONS
    from render.pipeline import BACKGROUND_KINDS

    say = subparsers.add_parser("say", help="make a talking video from a script or an audio file",
                                description="Text or audio to a lip-synced MP4 (H.264 + AAC) of an avatar.")
    source = say.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="what the avatar says (up to 5,000 characters)")
    source.add_argument("--audio", type=Path, help="a speech recording (wav, mp3, m4a, ogg, flac, webm)")
    say.add_argument("--transcript", default="", help="with --audio: its transcript (better timing)")
    say.add_argument("--avatar", default=None, help="avatar name (default: the built-in 'astronaut')")
    say.add_argument("--voice", default="joe", help="voice for --text (default: joe, the built-in Piper voice)")
    say.add_argument("--out", type=Path, required=True, help="output MP4 path")
    say.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.5..2 (default 1)")
    say.add_argument("--size", type=int, default=None, help="video width = height in pixels (default: the avatar's)")
    say.add_argument("--fps", type=float, default=None, help="frame rate (default: the avatar's)")
    say.add_argument("--background", choices=BACKGROUND_KINDS, default="plate")
    say.add_argument("--color", default="#30343c", help="with --background color: #rrggbb")
    say.add_argument("--image", default=None, help="with --background image: a picture file")
    say.add_argument("--head-motion", type=float, default=1.0, help="scale of idle head motion, 0..3")
    say.add_argument("--expression", type=float, default=1.0, help="expression intensity, 0..2")
    say.add_argument("--still", action="store_true", help="no head motion")
    say.add_argument("--emotion", choices=sorted(EMOTIONS), default="neutral")
    say.add_argument("--seed", type=int, default=0)
    say.add_argument("--backend", default="auto", help="rasterizer backend (auto, cpu, gsplat)")
    say.add_argument("--enhance", type=_enhance_parts, default="none", metavar="PARTS",
                     help="none, or any of upscale (Real-ESRGAN), lips (Wav2Lip), face (GFPGAN) joined by '+', "
                          "e.g. lips+face; needs their weights in models/ (see `python app.py models`); slow on a "
                          "CPU: about 2.5 s per frame for face, 0.5-0.9 s for upscale (realesr-general-x4v3), so a "
                          "30 s video takes 7-50 minutes")
    say.add_argument("--face-strength", type=float, default=0.7, help="with --enhance face: GFPGAN's share, 0..1")
    say.add_argument("--motion-out", type=Path, default=None, help="also save the Motion as JSON here")
    say.set_defaults(handler=run_say)


def _enhance_parts(text: str) -> str:
    from render.enhance import check_enhance_kind

    try:
        return check_enhance_kind(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_say(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from animation.motion import MotionOptions
    from render.generate import Generator, GenerateRequest
    from render.pipeline import BackgroundSpec, RenderOptions

    if args.out.suffix.lower() != ".mp4":
        raise ValueError(f"--out must end in .mp4, got {args.out.name}")
    for path in (args.out, args.motion_out):  # before the seconds of speech and frames, not after
        if path is not None and not path.parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    request = GenerateRequest(
        text=args.transcript if args.audio else (args.text or ""), audio=str(args.audio) if args.audio else None,
        avatar=args.avatar, voice=args.voice, speed=args.speed,
        motion=MotionOptions(fps=args.fps, head_motion=args.head_motion, expression=args.expression,
                             still=args.still, emotion=args.emotion, seed=args.seed),
        background=BackgroundSpec(kind=args.background, color=args.color, image=args.image),
        render=RenderOptions(size=args.size, backend=args.backend, enhance=args.enhance,
                             face_strength=args.face_strength))
    request.validate()  # bad input: one clear line before any progress bar
    bar = tqdm(total=1000, unit="‰", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")

    def progress(stage: str, fraction: float, info: dict) -> None:
        bar.set_description(stage)
        bar.n = int(1000 * fraction)
        bar.refresh()

    try:
        result = Generator().generate(request, args.out, progress)
    finally:
        bar.close()
    if args.motion_out:
        args.out.with_suffix(".motion.json").replace(args.motion_out)
    else:
        args.out.with_suffix(".motion.json").unlink(missing_ok=True)
    for note in result.notes:
        print(f"note: {note}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.stages.items())
    print(f"wrote {result.path}: {result.num_frames} frames, {result.audio_seconds:.2f} s of audio ({stages})")
    return 0
