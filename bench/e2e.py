"""End to end: a 30 s script -> MP4 on the default avatar at 512x512, wall time by stage.

    python -m bench.e2e [--json] [--size 512] [--home DIR]

Target on the 2-core machine: <= 30 s in all (real-time factor 1.0), goal 0.5. The default avatar is built
first if the data folder lacks it (not timed: it happens once per machine). One warm-up video (a sentence)
loads the voice and compiles the rasterizer first, as the long-running studio process would have done.
`--json` last line: {"audio_seconds", "wall_seconds", "rtf", "stages"}.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP pools must not spin

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.common import emit, format_table, json_flag_parser  # noqa: E402

SCRIPT = ("Welcome to the studio. This short video was made entirely on a small computer, without a graphics card. "
          "You type a script, pick an avatar and a voice, and a few seconds later the avatar says it, with lips that "
          "follow every sound. The mouth closes on the letters p, b and m, it rounds for words like blue and you, "
          "and it rests when the speaker pauses. The head moves a little, the way people move when they talk, and "
          "the eyes blink now and then. Thank you for watching, and have a wonderful day.")


def main() -> None:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--home", type=Path, default=None, help="data folder (default: $TALKING_AVATAR_HOME)")
    args = parser.parse_args()
    from avatar.default_avatar import ensure_default_avatar
    from avatar.library import data_home
    from render.generate import GenerateRequest, Generator
    from render.pipeline import RenderOptions

    home = args.home or data_home()
    ensure_default_avatar(home)
    generator = Generator(home)
    with tempfile.TemporaryDirectory() as scratch:
        generator.generate(GenerateRequest(text="Warming up.", render=RenderOptions(size=args.size)),
                           Path(scratch) / "warm.mp4")
        start = time.perf_counter()
        result = generator.generate(GenerateRequest(text=SCRIPT, render=RenderOptions(size=args.size)),
                                    Path(scratch) / "e2e.mp4")
        wall = time.perf_counter() - start
    stages = {k: round(v, 2) for k, v in result.stages.items()}
    rtf = wall / result.audio_seconds
    rows = [{"stage": k, "seconds": float(v)} for k, v in stages.items()]
    rows.append({"stage": "total", "seconds": float(wall)})
    table = format_table(rows, ["stage", "seconds"]) + (
        f"\n{result.audio_seconds:.1f} s of speech, {result.num_frames} frames at {args.size}x{args.size}: "
        f"real-time factor {rtf:.2f} (target 1.0, goal 0.5)")
    emit({"audio_seconds": round(result.audio_seconds, 2), "wall_seconds": round(wall, 2), "rtf": round(rtf, 3),
          "stages": stages}, table, args.json)


if __name__ == "__main__":
    main()
