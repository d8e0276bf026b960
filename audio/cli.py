"""Speech subcommands for `app.py`:

    python app.py speak --text "Hello there." --out speech.wav --timing timing.json [--speed 1.0]
    python app.py speak --text-file script.txt --out speech.wav
    python app.py timing AUDIO [--text T | --text-file F] --out timing.json

Outputs are written to a temporary file next to the target and renamed into place, so a failed run never
leaves a half-written file or destroys an earlier result. Bad input raises ValueError/FileNotFoundError,
which `app.py` prints as `error: ...` (exit 2).
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


from audio.io import write_wav_pcm16


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `speak` and `timing` on app.py's subparsers."""
    speak = subparsers.add_parser("speak", help="text -> speech WAV + word/phone timing JSON (Piper, offline)",
                                  description="Synthesise speech with the bundled Piper voice.")
    source = speak.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the script to speak (up to 20,000 characters)")
    source.add_argument("--text-file", type=Path, help="UTF-8 text file with the script")
    speak.add_argument("--out", type=Path, required=True, help="output WAV (16-bit PCM, 22,050 Hz mono)")
    speak.add_argument("--timing", type=Path, help="output timing JSON (words and phones with times)")
    speak.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.5..2.0 (default 1.0)")
    speak.add_argument("--sentence-pause", type=float, default=0.2,
                       help="extra silence between sentences in seconds (default 0.2)")
    speak.add_argument("--noise-scale", type=float, default=None, help="Piper generator noise (voice default)")
    speak.add_argument("--noise-w", type=float, default=None, help="Piper duration noise (voice default)")
    speak.set_defaults(handler=run_speak)

    timing = subparsers.add_parser("timing", help="audio file -> word/phone timing JSON (pocketsphinx)",
                                   description="Time the words and phones of recorded speech: forced "
                                               "alignment with a transcript, phone recognition without.")
    timing.add_argument("audio", type=Path, help="speech recording (wav, mp3, flac, ogg, m4a, webm, ...)")
    transcript = timing.add_mutually_exclusive_group()
    transcript.add_argument("--text", help="what is said in the recording (enables forced alignment)")
    transcript.add_argument("--text-file", type=Path, help="UTF-8 file with the transcript")
    timing.add_argument("--out", type=Path, required=True, help="output timing JSON")
    timing.set_defaults(handler=run_timing)


def _read_text(text: str | None, text_file: Path | None) -> str | None:
    if text_file is None:
        return text
    if not text_file.is_file():
        raise FileNotFoundError(f"text file not found: {text_file}")
    try:
        return text_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{text_file} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def _check_output(path: Path, suffix: str) -> None:
    if path.suffix.lower() != suffix:
        raise ValueError(f"output {path} should end in {suffix}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")


@contextmanager
def _atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, renamed onto it only if the block finishes without error."""
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # same folder: the rename is atomic
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def save_speech_outputs(speech, wav_path: Path, timing_path: Path | None) -> None:
    """Write the WAV (and timing JSON) atomically, so a failure never replaces an earlier output, then print
    the speech's notes for the user."""
    with _atomic_path(wav_path) as temp_wav:
        write_wav_pcm16(temp_wav, speech.waveform, speech.sample_rate)
        if timing_path is not None:
            with _atomic_path(timing_path) as temp_json:
                speech.save_timing(temp_json)
    for note in speech.notes:
        print(f"note: {note}", file=sys.stderr)


class _TqdmProgress:
    """A `ProgressFn` that shows one tqdm bar per stage on stderr."""

    def __init__(self) -> None:
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._bar = tqdm(total=total, desc=stage, unit="sentence", file=sys.stderr, leave=False)
            self._stage = stage
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run_speak(args: argparse.Namespace) -> int:
    """`speak`: synthesise the script and write the WAV (and timing JSON)."""
    text = _read_text(args.text, args.text_file)
    _check_output(args.out, ".wav")
    if args.timing is not None:
        _check_output(args.timing, ".json")
    from audio.text import normalize_text
    from audio.tts import PiperEngine, SpeakOptions

    options = SpeakOptions(speed=args.speed, sentence_pause_s=args.sentence_pause, noise_scale=args.noise_scale,
                           noise_w_scale=args.noise_w)
    normalize_text(text)  # fail on bad text before the voice takes seconds to load
    progress = _TqdmProgress()
    try:
        speech = PiperEngine().synthesize(text, options, progress=progress)
    finally:
        progress.close()
    save_speech_outputs(speech, args.out, args.timing)
    timing = f" and {args.timing} ({len(speech.words)} words, {len(speech.phones)} phones)" if args.timing else ""
    print(f"wrote {args.out} ({speech.duration_s:.2f} s at {speech.sample_rate} Hz){timing}")
    return 0


def run_timing(args: argparse.Namespace) -> int:
    """`timing`: word/phone timing of a recording via `audio.align.time_speech`."""
    if not args.audio.is_file():
        raise FileNotFoundError(f"audio file not found: {args.audio}")
    text = _read_text(args.text, args.text_file)
    if text is not None and not text.strip():
        raise ValueError("the transcript is empty: leave out --text to recognise the phones instead")
    _check_output(args.out, ".json")
    try:
        from audio.align import time_speech
    except ModuleNotFoundError as error:
        if error.name != "audio.align":
            raise
        raise ValueError("audio timing is not available: the audio.align module is missing") from None
    speech = time_speech(str(args.audio), text)
    with _atomic_path(args.out) as temp_json:
        speech.save_timing(temp_json)
    for note in speech.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.out} ({speech.source}: {len(speech.words)} words, {len(speech.phones)} phones, "
          f"{speech.duration_s:.2f} s)")
    return 0
