"""Voice-cloning benchmark: speaker similarity, intelligibility and speed of the offline converter.

    python -m bench.voice [--json] [--data DIR]

For each reference clip in <data>/speech/ (decoded, normalised and trimmed at 16 kHz), the first half is the
reference a profile is fitted on (`audio.voice.build_profile`; the 5 s minimum of `voice add` is lowered to
1.5 s here because two of the clips are only 5 s long). A new text (not the clip's, not the calibration text)
is spoken by Piper and converted. Scores:
- similarity: Resemblyzer cosine between the converted speech and the clip's held-back SECOND half (never
  used for fitting or selection); plain = the unconverted Piper speech against the same half.
- wer_plain / wer_cloned: pocketsphinx word error rate (bundled en-us LM and dictionary) of the plain and
  the converted speech against the text, words pooled over all clips.
- x_realtime: seconds of converted audio per wall second of `convert_speech` (analysis + mapping +
  synthesis), pooled. The machine is shared: say how loaded it was when quoting.
Targets (issue 6): similarity_mean >= 0.75, wer_cloned <= wer_plain + 0.10, x_realtime >= 5.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bench.common import emit, format_table, json_flag_parser

DEFAULT_DATA = Path(os.environ.get("TALKING_AVATAR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" /
                                   "data"))
TEST_TEXT = ("The weather was calm this morning, so we walked along the river and talked about the garden. "
             "Later that day my sister baked bread and we ate it by the window.")
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".m4a"}


def run(data: Path) -> tuple[list[dict], dict]:
    from audio.io import AudioOptions, prepare_audio
    from audio.tts import PiperEngine
    from audio.voice import (CALIBRATION_TEXT, ReferenceChecks, build_profile, check_reference, edit_distance, embed,
                             recognize_words, speaker_encoder, text_words)
    from audio.voice_convert import resample_to

    clips = sorted(p for p in (data / "speech").iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not clips:
        raise FileNotFoundError(f"no reference clips in {data / 'speech'}")
    engine = PiperEngine()
    encoder = speaker_encoder()
    calibration = engine.synthesize(CALIBRATION_TEXT)
    plain = engine.synthesize(TEST_TEXT)
    plain16 = resample_to(plain.waveform, plain.sample_rate)
    words = text_words(plain.text)
    plain_errors = edit_distance(words, recognize_words(plain16))
    checks = ReferenceChecks(min_speech_s=1.5)
    rows, sims, cloned_errors, audio_s, convert_s = [], [], 0, 0.0, 0.0
    for clip in clips:
        waveform = prepare_audio(clip, AudioOptions(target_sr=16000)).waveform
        half = len(waveform) // 2
        first, second = waveform[:half], waveform[half:]
        report = check_reference(first, first, encoder, checks, name=clip.name)
        start = time.perf_counter()
        profile = build_profile(clip.stem, first, calibration, encoder, report)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        cloned = profile.convert(plain)
        convert_s += time.perf_counter() - start
        audio_s += cloned.duration_s
        held_out = embed(encoder, second)
        errors = edit_distance(words, recognize_words(cloned.waveform))
        cloned_errors += errors
        sims.append((float(embed(encoder, plain16) @ held_out), float(embed(encoder, cloned.waveform) @ held_out)))
        rows.append({"clip": clip.name[:28], "method": profile.fit.chosen, "rate": f"{profile.params.rate:.3f}",
                     "sim_plain": f"{sims[-1][0]:.3f}", "sim_cloned": f"{sims[-1][1]:.3f}",
                     "wer_cloned": f"{errors / len(words):.3f}", "fit_s": f"{fit_s:.1f}"})
    result = {"similarity_mean": round(float(np.mean([s[1] for s in sims])), 4),
              "similarity_plain_mean": round(float(np.mean([s[0] for s in sims])), 4),
              "wer_plain": round(plain_errors / len(words), 4),
              "wer_cloned": round(cloned_errors / (len(words) * len(rows)), 4),
              "x_realtime": round(audio_s / convert_s, 2), "clips": len(rows)}
    return rows, result


def main() -> None:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (holds speech/)")
    args = parser.parse_args()
    rows, result = run(args.data)
    table = format_table(rows, list(rows[0].keys()))
    summary = "\n".join(f"{k}: {v}" for k, v in result.items())
    emit(result, f"{table}\n\n{summary}", args.json)


if __name__ == "__main__":
    main()
