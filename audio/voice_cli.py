"""Voice subcommands for `app.py`:

    python app.py voice add CLIP --name NAME [--overwrite]    check a 5-20 s clip, learn the voice, save it
    python app.py voice list                                   the saved voices
    python app.py voice delete NAME                            remove a saved voice
    python app.py voice speak --voice NAME --text T --out speech.wav [--timing timing.json] [--speed 1.0]
    python app.py voice speak --voice NAME --backend f5tts --text T --out speech.wav    (needs models/f5-tts/)
(The lip-synced MP4 in a saved voice is `python app.py say --voice NAME ...`, render/cli.py.)

`say` speaks with Piper and converts the result into the saved voice (`audio.voice_convert`); the timing
JSON follows any change of speaking rate, so lip sync stays exact. With `--backend f5tts` the voice's
reference clip prompts a local F5-TTS-style model instead (`audio.f5tts`); its timing comes from forced
alignment of the output. Bad input raises ValueError/FileNotFoundError (app.py prints `error: ...`, exit 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `voice add`, `voice list` and `voice speak` on app.py's subparsers."""
    voice = subparsers.add_parser("voice", help="voice library: add a voice from a clip, list, delete",
                                  description="Clone voices from short reference clips (offline).")
    actions = voice.add_subparsers(dest="voice_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="learn a voice from a 5-20 s clip of one person speaking")
    add.add_argument("clip", type=Path, help="reference recording (wav, mp3, flac, ogg, m4a, webm, mp4, ...)")
    add.add_argument("--name", required=True, help="voice name (letters, digits, _ - .)")
    add.add_argument("--overwrite", action="store_true", help="replace a voice with the same name")
    add.set_defaults(handler=run_voice_add)
    listing = actions.add_parser("list", help="list the saved voices")
    listing.set_defaults(handler=run_voice_list)
    remove = actions.add_parser("delete", help="delete a saved voice")
    remove.add_argument("name")
    remove.set_defaults(handler=run_voice_delete)

    say = actions.add_parser("speak", help="text -> speech in a saved voice (WAV + timing JSON)",
                                description="Speak a script in a cloned voice.")
    source = say.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the script to speak")
    source.add_argument("--text-file", type=Path, help="UTF-8 text file with the script")
    say.add_argument("--voice", required=True, help="name of a saved voice (see `voice list`)")
    say.add_argument("--out", type=Path, required=True, help="output WAV (16-bit PCM, 16 kHz mono)")
    say.add_argument("--timing", type=Path, help="output timing JSON (words and phones with times)")
    say.add_argument("--speed", type=float, default=1.0, help="speaking rate on top of the voice's, 0.5..2.0")
    say.add_argument("--backend", choices=("convert", "f5tts"), default="convert",
                     help="convert = Piper + offline conversion (default); f5tts = local F5-TTS weights")
    say.add_argument("--model-dir", type=Path, default=None, help="F5-TTS model folder (default models/f5-tts)")
    say.set_defaults(handler=run_say)


def run_voice_add(args: argparse.Namespace) -> int:
    from audio.voice import add_voice, voice_path

    if not args.clip.is_file():
        raise FileNotFoundError(f"reference clip not found: {args.clip}")
    stages = {"decode": "reading the clip", "check": "checking it is one person speaking",
              "calibrate": "speaking the calibration text", "fit": "learning the voice (10-40 s)",
              "save": "saving"}
    profile = add_voice(args.clip, args.name, overwrite=args.overwrite,
                        progress=lambda stage: print(f"[{stage}] {stages[stage]}", file=sys.stderr, flush=True))
    ref = profile.reference
    print(f"saved voice {profile.name!r} in {voice_path(profile.name)}: {ref.speech_s:.1f} s of speech, "
          f"method {profile.fit.chosen} (similarity to the clip {profile.fit.scores[profile.fit.chosen]:.2f}), "
          f"speaking rate x{profile.params.rate:.2f}")
    return 0


def run_voice_list(args: argparse.Namespace) -> int:
    from audio.voice import list_voices, load_profile, voices_dir

    names = list_voices()
    if not names:
        print(f"no voices in {voices_dir()}; add one with `python app.py voice add CLIP --name NAME`")
        return 0
    for name in names:
        profile = load_profile(name)
        print(f"{name}\t{profile.reference.speech_s:.1f} s reference\t{profile.fit.chosen}\t"
              f"rate x{profile.params.rate:.2f}")
    return 0


def run_voice_delete(args: argparse.Namespace) -> int:
    from avatar.catalog import Catalog
    from avatar.library import data_home

    Catalog(data_home()).delete_voice(args.name)
    print(f"deleted voice {args.name!r}")
    return 0


def run_say(args: argparse.Namespace) -> int:
    from audio.cli import _TqdmProgress, _check_output, _read_text, save_speech_outputs
    from audio.voice import load_profile, voice_path

    text = _read_text(args.text, args.text_file)
    _check_output(args.out, ".wav")
    if args.timing is not None:
        _check_output(args.timing, ".json")
    from audio.text import normalize_text
    from audio.tts import SpeakOptions

    options = SpeakOptions(speed=args.speed)
    normalize_text(text)
    profile = load_profile(args.voice)
    if args.backend == "f5tts":
        from audio.f5tts import F5TTSEngine

        engine = F5TTSEngine.load(args.model_dir)
        speech = engine.synthesize_with_reference(text, voice_path(profile.name) / "reference.wav", options)
    else:
        from audio.tts import PiperEngine

        progress = _TqdmProgress()
        try:
            plain = PiperEngine().synthesize(text, options, progress=progress)
        finally:
            progress.close()
        speech = profile.convert(plain)
    save_speech_outputs(speech, args.out, args.timing)
    print(f"wrote {args.out} ({speech.duration_s:.2f} s at {speech.sample_rate} Hz, voice {profile.name!r})")
    return 0
