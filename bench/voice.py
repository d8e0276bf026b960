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
- independent check (the fit itself is guided by Resemblyzer, so its score could flatter it): MFCC statistics
  (mean and std of c1..c19 of a 40-band log-mel spectrum, 25 ms / 10 ms, speech frames) of the converted
  speech against every clip's held-back half. mfcc_id_cloned = fraction of clips whose converted speech is
  nearest (Euclidean) to its OWN reference half (chance: 1 / clips; the plain voice is one point, so at most
  one clip); mfcc_ratio_cloned / _plain = distance to the own half over the mean distance to the other
  clips' halves (< 1: closer to its own speaker). f0_error_st_cloned / _plain: |median F0 difference| to
  the held-back half in semitones. These statistics are partly what the converter matches (mean envelope,
  F0), so they check the conversion by other means than the encoder, not by unrelated ones.
Piper is stochastic: the new text is spoken RENDITIONS times, each rendition converted with the same profile,
similarities averaged and word errors pooled over the renditions (sim_cloned_spread: max - min per clip). The
calibration sentence the fit uses is also a fresh rendition per run, and the fit's choices move with it: that,
more than the test renditions, is why similarity_mean moves by +-0.01-0.02 between runs.
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
N_MFCC = 20  # c0..c19; c0 (level) is dropped
RENDITIONS = 3  # Piper renditions of the test text per clip (see the module docstring)


def mfcc_statistics(waveform: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """[2 * (N_MFCC - 1)] mean and std of MFCC c1..c19 over the speech frames (within 30 dB of the loudest)
    of waveform [S]: 25 ms Hann frames every 10 ms, 40 mel bands up to sample_rate / 2."""
    from scipy.fft import dct

    from animation.audio_features import mel_filterbank

    if waveform.ndim != 1 or len(waveform) < sample_rate // 10:
        raise ValueError(f"need a mono waveform [S] of at least 0.1 s, got shape {waveform.shape}")
    size, hop, n_fft = int(0.025 * sample_rate), int(0.010 * sample_rate), 512
    starts = np.arange(0, len(waveform) - size + 1, hop)
    frames = waveform[starts[:, None] + np.arange(size)[None, :]] * np.hanning(size)[None, :]
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2  # [T, n_fft / 2 + 1]
    bank = mel_filterbank(sample_rate, n_fft, 40, 0.0, sample_rate / 2.0)  # [40, n_fft / 2 + 1]
    log_mel = np.log(power @ bank.T + 1e-10)  # [T, 40]
    energy = 10.0 * np.log10(power.sum(axis=1) + 1e-20)
    cepstra = dct(log_mel[energy > energy.max() - 30.0], type=2, norm="ortho", axis=1)[:, 1:N_MFCC]
    return np.concatenate([cepstra.mean(axis=0), cepstra.std(axis=0)])


def median_f0_hz(waveform: np.ndarray) -> float:
    """Median F0 (Hz) of the voiced frames of 16 kHz waveform [S] (WORLD DIO + StoneMask)."""
    from audio.voice_convert import analyze, log_f0_stats

    return float(np.exp(log_f0_stats(analyze(waveform).f0)[0]))


def independent_scores(converted: list[np.ndarray], plain: np.ndarray, held_out: list[np.ndarray]) -> dict:
    """MFCC-statistics identification and F0 error of converted[i] [S] (clip i's voice) against the held-back
    halves held_out[j] [S]; plain [S] is the unconverted voice. See the module docstring."""
    if len(converted) != len(held_out) or len(held_out) < 2:
        raise ValueError("need one converted waveform per held-out half, and at least two clips")
    refs = np.stack([mfcc_statistics(h) for h in held_out])  # [clips, D]
    plain_stats = mfcc_statistics(plain)
    ids, ratios, plain_ratios, f0_errors, plain_f0_errors = [], [], [], [], []
    plain_f0 = median_f0_hz(plain)
    for i, wave in enumerate(converted):
        distances = np.linalg.norm(refs - mfcc_statistics(wave)[None, :], axis=1)
        plain_distances = np.linalg.norm(refs - plain_stats[None, :], axis=1)
        ids.append(int(np.argmin(distances)) == i)
        ratios.append(distances[i] / np.delete(distances, i).mean())
        plain_ratios.append(plain_distances[i] / np.delete(plain_distances, i).mean())
        ref_f0 = median_f0_hz(held_out[i])
        f0_errors.append(abs(12.0 * np.log2(median_f0_hz(wave) / ref_f0)))
        plain_f0_errors.append(abs(12.0 * np.log2(plain_f0 / ref_f0)))
    return {"mfcc_id_cloned": round(float(np.mean(ids)), 3),
            "mfcc_ratio_cloned": round(float(np.mean(ratios)), 3),
            "mfcc_ratio_plain": round(float(np.mean(plain_ratios)), 3),
            "f0_error_st_cloned": round(float(np.mean(f0_errors)), 2),
            "f0_error_st_plain": round(float(np.mean(plain_f0_errors)), 2)}


def run(data: Path) -> tuple[list[dict], dict]:
    from audio.io import AudioOptions, prepare_audio
    from audio.tts import PiperEngine
    from audio.voice import (ReferenceChecks, build_profile, check_reference, edit_distance, embed,
                             recognize_words, speaker_encoder, synthesize_calibration, text_words)
    from audio.io import resample_to

    clips = sorted(p for p in (data / "speech").iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not clips:
        raise FileNotFoundError(f"no reference clips in {data / 'speech'}")
    engine = PiperEngine()
    encoder = speaker_encoder()
    calibration = synthesize_calibration(engine)
    plains = [engine.synthesize(TEST_TEXT) for _ in range(RENDITIONS)]
    plains16 = [resample_to(plain.waveform, plain.sample_rate) for plain in plains]
    words = text_words(plains[0].text)
    plain_errors = sum(edit_distance(words, recognize_words(plain16)) for plain16 in plains16)
    checks = ReferenceChecks(min_speech_s=1.5)
    rows, sims, cloned_errors, audio_s, convert_s = [], [], 0, 0.0, 0.0
    converted, halves = [], []
    for clip in clips:
        waveform = prepare_audio(clip, AudioOptions(target_sr=16000)).waveform
        half = len(waveform) // 2
        first, second = waveform[:half], waveform[half:]
        report = check_reference(first, first, encoder, checks, name=clip.name)
        start = time.perf_counter()
        profile = build_profile(clip.stem, first, calibration, encoder, report)
        fit_s = time.perf_counter() - start
        held_out = embed(encoder, second)
        errors, sim_plain, sim_cloned = 0, [], []
        for plain, plain16 in zip(plains, plains16):
            start = time.perf_counter()
            cloned = profile.convert(plain)
            convert_s += time.perf_counter() - start
            audio_s += cloned.duration_s
            errors += edit_distance(words, recognize_words(cloned.waveform))
            sim_plain.append(float(embed(encoder, plain16) @ held_out))
            sim_cloned.append(float(embed(encoder, cloned.waveform) @ held_out))
        converted.append(cloned.waveform)
        halves.append(second)
        cloned_errors += errors
        sims.append((float(np.mean(sim_plain)), float(np.mean(sim_cloned))))
        rows.append({"clip": clip.name[:28], "method": profile.fit.chosen.replace("global ", ""),
                     "rate": f"{profile.params.rate:.3f}",
                     "sim_plain": f"{sims[-1][0]:.3f}", "sim_cloned": f"{sims[-1][1]:.3f}",
                     "sim_cloned_spread": f"{max(sim_cloned) - min(sim_cloned):.3f}",
                     "wer_cloned": f"{errors / (len(words) * len(plains)):.3f}", "fit_s": f"{fit_s:.1f}"})
    result = {"similarity_mean": round(float(np.mean([s[1] for s in sims])), 4),
              "similarity_plain_mean": round(float(np.mean([s[0] for s in sims])), 4),
              "wer_plain": round(plain_errors / (len(words) * len(plains)), 4),
              "wer_cloned": round(cloned_errors / (len(words) * len(plains) * len(rows)), 4),
              "x_realtime": round(audio_s / convert_s, 2), "clips": len(rows),
              "renditions": len(plains)}
    result.update(independent_scores(converted, plains16[-1], halves))  # the last rendition of each
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
