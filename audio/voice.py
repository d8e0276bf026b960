"""Voice profiles: learn a voice from a 5-20 s reference clip, check the clip, keep it in the voice library.

A profile is the converter's parameters (`audio.voice_convert`) fitted to one reference clip. Stored in
`<data folder>/voices/NAME/` (data folder = `$TALKING_AVATAR_HOME` or `~/.talking_avatar`, see
`avatar.library`):
    voice.json          name, format version, conversion parameters, check measurements, fit scores
    voice.safetensors   the conversion arrays (envelope gain, cepstral statistics, reference exemplar frames)
    reference.wav       the checked, loudness-normalised reference (16 kHz mono PCM16)
Saves are atomic (`avatar.library.atomic_folder`): a rejected clip or a crash leaves the library unchanged.

Checks on the reference (each failure is a ValueError with a sentence a user can act on): decodable audio,
not silent, at least `min_speech_s` of sound, loud enough before normalisation, not clipped, voiced like
speech (music is voiced nearly all the time in long runs; noise almost never), and one speaker (Resemblyzer
embeddings of 1.6 s windows must all agree with the clip's mean embedding).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from audio.io import write_wav_pcm16
from audio.speech import Speech
from audio.voice_convert import (FRAME_PERIOD_MS, SAMPLE_RATE, ConversionArrays, ConversionParams, FitReport,
                                 analyze, convert_speech, fit_conversion)

VOICE_FORMAT_VERSION = 1
MAX_REFERENCE_S = 30.0  # longer clips (e.g. a training video's audio) are cut to their first 30 s
CALIBRATION_TEXT = ("Please call Stella and ask her to bring these things with her from the store. "
                    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her "
                    "brother Bob.")  # the speech-accent-archive paragraph: covers most English phones


def synthesize_calibration(engine) -> Speech:
    """The calibration sentence that `build_profile` fits a conversion on, spoken without Piper's generator and
    duration noise, so the same reference clip always gives the same profile (with the noise, each `voice add`
    heard a new rendition and the chosen warp moved between runs: 1.28 vs 1.06 on one bench clip)."""
    from audio.tts import SpeakOptions

    return engine.synthesize(CALIBRATION_TEXT, SpeakOptions(noise_scale=0.0, noise_w_scale=0.0))


@dataclass(frozen=True)
class ReferenceChecks:
    """Limits a reference clip must meet (per-call options; the measured values are saved in voice.json)."""

    min_speech_s: float = 5.0
    min_level_dbfs: float = -40.0  # RMS of the sounding frames before normalisation
    max_clipped_fraction: float = 0.001  # samples at full scale (|x| >= 0.999)
    min_voiced_fraction: float = 0.2  # of the sounding frames; noise is far below
    max_voiced_fraction: float = 0.99  # speech pauses for consonants; sustained music does not
    max_voiced_run_s: float = 2.0  # longest unbroken voiced stretch (speech here: <= 1.1 s); notes run longer
    min_split_similarity: float = 0.7  # before/after any point (one speaker: 0.81-1.0, two: 0.54-0.58)
    min_window_similarity: float = 0.6  # each 1.6 s window against the others (one speaker: 0.79-0.90)


@dataclass
class ReferenceReport:
    """Measurements of a reference clip (seconds, dBFS, fractions)."""

    duration_s: float
    speech_s: float
    level_dbfs: float
    clipped_fraction: float
    voiced_fraction: float
    longest_voiced_run_s: float
    min_window_similarity: float
    min_split_similarity: float


@dataclass
class VoiceProfile:
    """A named voice: conversion parameters + arrays, how the reference measured, and the fit scores."""

    name: str
    params: ConversionParams
    arrays: ConversionArrays
    reference: ReferenceReport
    fit: FitReport

    def convert(self, speech: Speech) -> Speech:
        """Piper speech -> the same words in this voice (16 kHz), timing exact (see `convert_speech`)."""
        return convert_speech(speech, self.params, self.arrays)


def speaker_encoder():
    """Resemblyzer's VoiceEncoder on the CPU (its weights ship inside the package)."""
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def embed(encoder, waveform: np.ndarray) -> np.ndarray:
    """Unit speaker embedding [256] of 16 kHz waveform [S]."""
    from resemblyzer import preprocess_wav

    return encoder.embed_utterance(preprocess_wav(np.asarray(waveform, np.float32), source_sr=SAMPLE_RATE))


def load_reference(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode a clip: (raw 16 kHz waveform [S] as decoded, prepared waveform [S'] normalised and trimmed,
    decoder notes). Raises FileNotFoundError / ValueError for missing, corrupt or silent files."""
    from audio.io import AudioOptions, decode_audio, prepare_waveform

    raw, notes = decode_audio(path, SAMPLE_RATE)
    prepared = prepare_waveform(raw, SAMPLE_RATE, AudioOptions(target_sr=SAMPLE_RATE), name=Path(path).name)
    return raw, prepared.waveform[: int(MAX_REFERENCE_S * SAMPLE_RATE)], notes


def check_reference(raw: np.ndarray, prepared: np.ndarray, encoder, checks: ReferenceChecks = ReferenceChecks(),
                    name: str = "reference") -> ReferenceReport:
    """Measure a reference clip and raise ValueError (saying what to do) when it is unusable.

    raw: the decoded waveform [S] (for level and clipping); prepared: normalised, trimmed waveform [S'].
    """
    from audio.io import frame_rms_dbfs

    if raw.ndim != 1 or prepared.ndim != 1:
        raise ValueError(f"{name}: waveforms must be mono [S]")
    levels = frame_rms_dbfs(prepared, SAMPLE_RATE)
    sounding = levels > levels.max() - 30.0
    speech_s = float(sounding.sum() * 0.02)
    if speech_s < checks.min_speech_s:
        raise ValueError(f"{name}: only {speech_s:.1f} s of speech; record at least {checks.min_speech_s:.0f} s "
                         f"(5-20 s of one person talking works best)")
    raw_levels = frame_rms_dbfs(raw, SAMPLE_RATE)
    raw_sounding = raw_levels > raw_levels.max() - 30.0
    level = float(10.0 * np.log10(np.mean(10.0 ** (raw_levels[raw_sounding] / 10.0))))
    if level < checks.min_level_dbfs:
        raise ValueError(f"{name}: the recording is too quiet ({level:.0f} dBFS, need {checks.min_level_dbfs:.0f});"
                         f" move closer to the microphone or raise its gain")
    clipped = float(np.mean(np.abs(raw) >= 0.999))
    if clipped > checks.max_clipped_fraction:
        raise ValueError(f"{name}: the recording is clipped ({clipped:.2%} of samples at full scale); lower the "
                         f"microphone gain and record again")
    features = analyze(prepared)
    frame_levels = 10.0 * np.log10(np.sum(features.envelope, axis=1) + 1e-20)
    active = frame_levels > frame_levels.max() - 30.0
    voiced = (features.f0 > 0) & active
    voiced_fraction = float(voiced.sum() / max(active.sum(), 1))
    run_s = _longest_run(voiced) * FRAME_PERIOD_MS / 1000.0
    if voiced_fraction < checks.min_voiced_fraction:
        raise ValueError(f"{name}: this does not sound like speech (only {voiced_fraction:.0%} of it is voiced); "
                         f"it may be noise. Record a person talking")
    if voiced_fraction > checks.max_voiced_fraction or run_s > checks.max_voiced_run_s:
        raise ValueError(f"{name}: this sounds like music or singing, not speech ({voiced_fraction:.0%} voiced, "
                         f"longest unbroken tone {run_s:.1f} s); record plain speech without background music")
    window, split = speaker_agreement(encoder, prepared)
    if window < checks.min_window_similarity or split < checks.min_split_similarity:
        raise ValueError(f"{name}: more than one speaker seems to talk in this clip (parts of it agree only "
                         f"{min(window, split):.2f} with the rest); use a clip of one person")
    return ReferenceReport(len(raw) / SAMPLE_RATE, speech_s, level, clipped, voiced_fraction, run_s, window, split)


def speaker_agreement(encoder, waveform: np.ndarray) -> tuple[float, float]:
    """(window, split) agreement of the speaker through 16 kHz waveform [S], from Resemblyzer embeddings of
    1.6 s windows (hop 0.77 s): window = lowest cosine of one window to the mean of the others (catches a
    short second voice); split = lowest cosine between the mean embeddings before and after any window
    boundary with two or more windows each side (catches one speaker handing over to another).
    Both are 1.0 when the clip is too short to tell."""
    from resemblyzer import preprocess_wav

    wav = preprocess_wav(np.asarray(waveform, np.float32), source_sr=SAMPLE_RATE)
    _, partials, _ = encoder.embed_utterance(wav, return_partials=True, rate=1.3)
    window = split = 1.0
    for index in range(len(partials) if len(partials) >= 3 else 0):
        others = np.delete(partials, index, axis=0).mean(axis=0)
        window = min(window, float(partials[index] @ others / np.linalg.norm(others)))
    for index in range(2, len(partials) - 1):
        before, after = partials[:index].mean(axis=0), partials[index:].mean(axis=0)
        split = min(split, float(before @ after / (np.linalg.norm(before) * np.linalg.norm(after))))
    return window, split


def _longest_run(mask: np.ndarray) -> int:
    best = current = 0
    for value in mask:
        current = current + 1 if value else 0
        best = max(best, current)
    return best


def build_profile(name: str, prepared: np.ndarray, calibration: Speech, encoder, report: ReferenceReport,
                  rate: float | None = None) -> VoiceProfile:
    """Fit the converter to a checked reference [S] (16 kHz). rate None = estimate the speaking rate."""
    from avatar.library import validate_name

    if rate is None:
        rate = estimate_rate(prepared, calibration)
    words = text_words(calibration.text)

    def word_error(waveform: np.ndarray) -> float:
        return edit_distance(words, recognize_words(waveform)) / max(len(words), 1)

    params, arrays, fit = fit_conversion(prepared, calibration, lambda w: embed(encoder, w), rate=rate,
                                         word_error=word_error)
    return VoiceProfile(validate_name(name), params, arrays, report, fit)


def recognize_words(waveform: np.ndarray) -> list[str]:
    """Words pocketsphinx hears in 16 kHz waveform [S] (its bundled en-us LM and dictionary), upper case."""
    import re

    from pocketsphinx import Decoder

    pcm = (np.clip(waveform, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return re.sub(r"\(\d+\)", "", hypothesis.hypstr).upper().split() if hypothesis else []


def text_words(text: str) -> list[str]:
    """Upper-case words of a text (letters and apostrophes), for word error rates."""
    import re

    return re.findall(r"[A-Z']+", text.upper())


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    row = list(range(len(hypothesis) + 1))
    for i, word in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, heard in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != heard))
    return row[-1]


RATE_LIMITS = (0.85, 1.15)


def estimate_rate(reference: np.ndarray, calibration: Speech) -> float:
    """Speaking-rate factor: the reference's phones per second of speech over the Piper voice's, both counted
    by pocketsphinx phone recognition (so the two are counted the same way), clipped to RATE_LIMITS."""
    from audio.align import recognize_phones
    from audio.io import resample_to

    def phone_rate(waveform: np.ndarray) -> float:
        phones = [p for p in recognize_phones(waveform).phones if p.label != "sil"]
        speaking = sum(p.duration_s for p in phones)
        return len(phones) / speaking if speaking > 0 else 0.0

    ours = phone_rate(resample_to(calibration.waveform, calibration.sample_rate))
    theirs = phone_rate(reference)
    if ours <= 0 or theirs <= 0:
        return 1.0
    return float(np.clip(theirs / ours, *RATE_LIMITS))


# ---- library -------------------------------------------------------------------------------------------

def voices_dir(home: Path | None = None) -> Path:
    from avatar.library import data_home

    return (home or data_home()) / "voices"


def voice_path(name: str, home: Path | None = None) -> Path:
    from avatar.library import validate_name

    return voices_dir(home) / validate_name(name)


def list_voices(home: Path | None = None) -> list[str]:
    """Names of the saved voices (folders holding a voice.json), sorted."""
    root = voices_dir(home)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "voice.json").is_file())


def save_profile(profile: VoiceProfile, reference: np.ndarray, home: Path | None = None,
                 overwrite: bool = False) -> Path:
    """Write the profile and its reference [S] (16 kHz) atomically; refuses an existing name unless overwrite."""
    from safetensors.numpy import save_file

    from avatar.library import atomic_folder

    target = voice_path(profile.name, home)
    if (target / "voice.json").is_file() and not overwrite:
        raise ValueError(f"a voice named {profile.name!r} exists already in {voices_dir(home)}; choose another name")
    with atomic_folder(target) as staging:
        meta = {"format_version": VOICE_FORMAT_VERSION, "name": profile.name, "params": profile.params.to_dict(),
                "reference": asdict(profile.reference), "fit": asdict(profile.fit)}
        (staging / "voice.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        save_file(profile.arrays.to_tensors(), str(staging / "voice.safetensors"))
        write_wav_pcm16(staging / "reference.wav", reference, SAMPLE_RATE)
    return target


def load_profile(name: str, home: Path | None = None) -> VoiceProfile:
    """Read a saved voice; FileNotFoundError (listing the voices there are) when it does not exist."""
    from safetensors.numpy import load_file

    folder = voice_path(name, home)
    if not (folder / "voice.json").is_file():
        known = ", ".join(list_voices(home)) or "none yet; add one with `python app.py voice add CLIP --name NAME`"
        raise FileNotFoundError(f"no voice named {name!r} in {voices_dir(home)} (voices: {known})")
    meta = json.loads((folder / "voice.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != VOICE_FORMAT_VERSION:
        raise ValueError(f"voice {name!r}: unsupported format_version {meta.get('format_version')!r}")
    arrays = ConversionArrays.from_tensors(load_file(str(folder / "voice.safetensors")))
    return VoiceProfile(meta["name"], ConversionParams.from_dict(meta["params"]), arrays,
                        ReferenceReport(**meta["reference"]), FitReport(**meta["fit"]))


def add_voice(clip: str | Path, name: str, engine=None, encoder=None, home: Path | None = None,
              checks: ReferenceChecks = ReferenceChecks(), overwrite: bool = False, progress=None) -> VoiceProfile:
    """Check `clip` (any audio or video file ffmpeg reads), fit a profile named `name` and save it.

    engine: a PiperEngine (loaded when None). progress(stage) is called with "decode", "check", "calibrate",
    "fit" and "save" as each stage starts. Nothing is written unless every stage succeeds."""
    report_stage = progress or (lambda stage: None)
    from avatar.library import validate_name

    clean = validate_name(name)
    if (voice_path(clean, home) / "voice.json").is_file() and not overwrite:
        raise ValueError(f"a voice named {clean!r} exists already in {voices_dir(home)}; choose another name")
    report_stage("decode")
    raw, prepared, _ = load_reference(clip)
    report_stage("check")
    encoder = encoder or speaker_encoder()
    report = check_reference(raw, prepared, encoder, checks, name=Path(clip).name)
    report_stage("calibrate")
    if engine is None:
        from audio.tts import PiperEngine

        engine = PiperEngine()
    calibration = synthesize_calibration(engine)
    report_stage("fit")
    profile = build_profile(clean, prepared, calibration, encoder, report)
    report_stage("save")
    save_profile(profile, prepared, home, overwrite)
    return profile


