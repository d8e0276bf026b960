"""Timed speech from audio with pocketsphinx: forced alignment with a transcript, phone recognition without.

pocketsphinx 5.1.1 ships the en-us acoustic model, cmudict and a phone language model, so this runs offline.
Forced alignment is two passes (word alignment with an FSG, then phone/state alignment inside the words);
frames are 10 ms at 16 kHz. Words missing from cmudict get espeak-derived pronunciations (`audio.g2p`).

A transcript that does not match the audio must not produce confident nonsense. Alignment "fails" when
pocketsphinx cannot reach the end of the transcript, or when the result is implausible: the acoustic score per
frame is far below what free phone recognition reaches on the same audio (the words are being forced onto
sounds that are not there), or many words are squeezed to a few frames. Then we fall back to phone recognition
and say so in `Speech.notes`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from audio.io import AudioOptions, PreparedAudio, prepare_audio, prepare_waveform, resample_to, trim_silence
from audio.speech import Segment, Speech

SAMPLE_RATE = 16000  # the en-us acoustic model's rate
FRAME_S = 0.01  # pocketsphinx frame period
SILENCE_PHONE = "sil"
PAD_S = 0.3  # faint noise added before and after the audio for the decoders (see `_pcm16`)
MAX_TRANSCRIPT_WORDS = 2000  # a 10 minute upload at a fast 200 words/min
_NON_SPEECH = re.compile(r"^(<.*>|\[.*\]|\+.*\+|SIL)$", re.IGNORECASE)


@dataclass(frozen=True)
class AlignOptions:
    """When to trust a forced alignment (per-call options).

    max_score_gap: forced alignment's acoustic log-score per frame (pocketsphinx units, log base 1.0001 scaled
        down by 2^10 internally; we only compare the two decoders) may be at most this far below free phone
        recognition's before the transcript is judged not to match.
    max_squeezed_fraction: at most this fraction of words may last <= 3 frames (30 ms).
    """

    max_score_gap: float = 30.0
    max_squeezed_fraction: float = 0.3
    fallback_to_recognition: bool = True


@dataclass(frozen=True)
class RecognitionOptions:
    """Phone recognition settings (per call), tuned with `python -m bench.tune_recognition` on Piper speech with
    exact timing and on the speech/ clips, never on the reference clips that bench.speech scores.

    topn: Gaussians per codebook scored per frame. 4 (pocketsphinx's default) instead of 8 is ~15 % faster
        and scored the same on the tuning sets (2: worse on speech/; 12: worse on both). 3 also tied on the
        tuning sets but scored 0.639 instead of 0.651 on the reference clips, so the tie is within noise.
    lw: weight of the phone trigram LM. 2.5-2.75 scored best on speech/ (0.673 vs 0.654 at 2.0 with topn 4)
        and equal on Piper (0.559); 1.5 and 3.0+ were worse on both.
    """

    topn: int = 4
    lw: float = 2.5

    def __post_init__(self) -> None:
        if not 1 <= self.topn <= 64:
            raise ValueError(f"topn must be 1-64, got {self.topn}")
        if not self.lw > 0:
            raise ValueError(f"lw must be positive, got {self.lw}")


class AlignmentFailed(ValueError):
    """The transcript could not be aligned to the audio (or the alignment is implausible)."""


@dataclass
class PhoneTiming:
    """Result of one decoder run: word and phone segments plus the acoustic score per speech frame."""

    words: list[Segment]
    phones: list[Segment]
    score_per_frame: float


def words_for_alignment(text: str) -> list[str]:
    """Transcript -> lower-case words for the aligner: numbers read out, punctuation dropped, apostrophes kept."""
    text = _read_numbers(text)
    text = text.lower().replace("’", "'")
    words = re.findall(r"[a-z]+(?:'[a-z]+)*", text)
    if len(words) > MAX_TRANSCRIPT_WORDS:
        raise ValueError(f"transcript has {len(words)} words, over the {MAX_TRANSCRIPT_WORDS}-word limit")
    return words


def _read_numbers(text: str) -> str:
    """Numbers as words, using the TTS front end's reader when it exists."""
    try:
        from audio.text import normalize_text  # the TTS helper's full reader (years, currency, ordinals, ...)
    except ImportError:
        return re.sub(r"\d+", lambda m: _integer_words(int(m.group())), text.replace(",", " "))
    try:
        return normalize_text(text).text
    except ValueError:  # nothing readable (e.g. only symbols): the caller falls back to recognition
        return ""


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _integer_words(n: int) -> str:
    """Minimal English reader for non-negative integers (fallback when audio.text is absent)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return _integer_words(n // size) + " " + name + ("" if rest == 0 else " " + _integer_words(rest))
    raise AssertionError("unreachable")


def _pcm16(waveform: np.ndarray) -> bytes:
    """float [S] -> 16-bit PCM bytes with PAD_S of faint noise on both ends.

    The padding gives the decoders silence to start and end in: audio that stops right at the last phone
    (TTS output, tightly cut uploads) otherwise makes the phone-alignment pass fail. The noise (not zeros)
    keeps the log energy of the padding finite. Decoder times must be shifted back by PAD_S.
    """
    pad = np.random.default_rng(0).normal(0.0, 1e-4, int(PAD_S * SAMPLE_RATE)).astype(np.float32)
    padded = np.concatenate([pad, waveform, pad])
    return (np.clip(padded, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _segment(label: str, start_frame: int, end_frame: int, duration_s: float) -> Segment:
    """Decoder frames [start, end) of the padded audio -> seconds in the unpadded audio (clipped to it)."""
    start = min(max(start_frame * FRAME_S - PAD_S, 0.0), duration_s)
    end = min(max(end_frame * FRAME_S - PAD_S, start), duration_s)
    return Segment(label, start, end)


def _base_label(word: str) -> str:
    """'began(2)' -> 'began' (pocketsphinx marks alternative pronunciations)."""
    return re.sub(r"\(\d+\)$", "", word)


def _phone_label(name: str) -> str:
    return SILENCE_PHONE if _NON_SPEECH.match(name) else name.upper()


def _merge_silences(phones: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for phone in phones:
        if merged and phone.label == SILENCE_PHONE and merged[-1].label == SILENCE_PHONE:
            merged[-1] = Segment(SILENCE_PHONE, merged[-1].start_s, phone.end_s)
        else:
            merged.append(phone)
    return merged


def _check_waveform(waveform: np.ndarray) -> None:
    if waveform.ndim != 1 or waveform.size < SAMPLE_RATE // 10:
        raise ValueError(f"expected mono 16 kHz audio [S] of at least 0.1 s, got shape {waveform.shape}")


def _add_missing_words(decoder, words: list[str]) -> list[str]:
    """Add out-of-dictionary words with espeak-derived pronunciations; returns the words that were added."""
    missing = sorted({w for w in words if decoder.lookup_word(w) is None})
    if missing:
        from audio.g2p import Pronouncer

        pronouncer = Pronouncer()
        for word in missing:
            decoder.add_word(word, " ".join(pronouncer.arpabet(word)), True)
    return missing


def forced_align(waveform: np.ndarray, words: list[str]) -> tuple[PhoneTiming, list[str]]:
    """Align `words` to 16 kHz waveform [S]. Returns (timing, words added to the dictionary).

    Raises AlignmentFailed when pocketsphinx cannot reach the end of the transcript.
    """
    from pocketsphinx import Decoder

    _check_waveform(waveform)
    if not words:
        raise ValueError("the transcript has no words to align")
    pcm = _pcm16(waveform)
    duration = len(waveform) / SAMPLE_RATE
    decoder = Decoder(lm=None, samprate=SAMPLE_RATE, loglevel="FATAL")
    added = _add_missing_words(decoder, words)
    decoder.set_align_text(" ".join(words))
    for stage in ("word", "phone"):
        if stage == "phone":
            decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        try:
            decoder.end_utt()  # raises when the search cannot reach the end of the transcript
        except RuntimeError as error:
            raise AlignmentFailed(f"pocketsphinx could not align the transcript to the audio ({stage} pass: "
                                  f"{error})") from None
        if stage == "word" and decoder.hyp() is None:  # (hyp() after the phone pass crashes pocketsphinx)
            raise AlignmentFailed("pocketsphinx could not align the transcript to the audio (word pass)")
    alignment = decoder.get_alignment()
    if alignment is None:
        raise AlignmentFailed("pocketsphinx could not align the transcript to the audio (no alignment)")
    word_segments: list[Segment] = []
    phone_segments: list[Segment] = []
    speech_score = 0.0
    speech_frames = 0
    # Iterate the alignment directly: materialising entries with list() and iterating them later crashes
    # pocketsphinx 5.1.1 (the entries point into a freed iterator).
    for word in alignment:
        label = _base_label(word.name)
        if not _NON_SPEECH.match(label):
            word_segments.append(_segment(label, word.start, word.start + word.duration, duration))
        for phone in word:
            name = _phone_label(phone.name)
            phone_segments.append(_segment(name, phone.start, phone.start + phone.duration, duration))
            if name != SILENCE_PHONE:
                speech_score += phone.score
                speech_frames += phone.duration
    if len(word_segments) != len(words):
        raise AlignmentFailed(f"pocketsphinx aligned {len(word_segments)} of {len(words)} words")
    return PhoneTiming(word_segments, _merge_silences(phone_segments),
                       speech_score / max(speech_frames, 1)), added


def recognize_phones(waveform: np.ndarray, options: RecognitionOptions = RecognitionOptions()) -> PhoneTiming:
    """Phone recognition (no transcript) on 16 kHz waveform [S] with the bundled en-us phone LM."""
    from pocketsphinx import Decoder, get_model_path

    _check_waveform(waveform)
    duration = len(waveform) / SAMPLE_RATE
    # dict=None: phone recognition needs no pronunciation dictionary, and loading cmudict (135k words) took
    # 0.2-0.3 s of every call, as long as decoding 5 s of speech. pbeam 1e-15 (was 1e-20) prunes phone HMMs
    # sooner: ~10 % faster with the same phones on every tuning clip (1e-12 began to change them). pip is not
    # passed: with a phone LM the allphone search ignores it.
    decoder = Decoder(allphone=get_model_path("en-us/en-us-phone.lm.bin"), dict=None, lw=options.lw,
                      beam=1e-200, pbeam=1e-15, topn=options.topn, samprate=SAMPLE_RATE, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(_pcm16(waveform), full_utt=True)
    decoder.end_utt()
    phones: list[Segment] = []
    speech_score = 0.0
    speech_frames = 0
    for seg in decoder.seg():
        name = _phone_label(seg.word)
        phones.append(_segment(name, seg.start_frame, seg.end_frame + 1, duration))
        if name != SILENCE_PHONE:
            speech_score += seg.ascore
            speech_frames += seg.end_frame + 1 - seg.start_frame
    return PhoneTiming([], _merge_silences(phones), speech_score / max(speech_frames, 1))


def implausibility(aligned: PhoneTiming, recognized: PhoneTiming, options: AlignOptions) -> str | None:
    """Why a forced alignment should not be trusted, or None when it looks fine."""
    gap = recognized.score_per_frame - aligned.score_per_frame
    if gap > options.max_score_gap:
        return (f"the transcript fits the audio poorly (acoustic score {gap:.0f} per frame below free phone "
                f"recognition; limit {options.max_score_gap:.0f})")
    squeezed = np.mean([w.duration_s <= 3 * FRAME_S + 1e-9 for w in aligned.words]) if aligned.words else 0.0
    if squeezed > options.max_squeezed_fraction:
        return f"{squeezed:.0%} of the words were squeezed into 30 ms or less"
    return None


def time_speech(audio: str | Path | np.ndarray, text: str | None, sample_rate: int | None = None,
                options: AlignOptions = AlignOptions(), audio_options: AudioOptions = AudioOptions()) -> Speech:
    """Uploaded speech -> `Speech` with ARPAbet phone timing, times in seconds from the start of the original.

    audio: a file path (any format ffmpeg reads) or a mono float waveform [S] at `sample_rate` Hz (resampled
    to 16 kHz here; times in seconds are unaffected). With `text`, forced alignment; when that fails
    or looks implausible, phone recognition with a note. Without text, phone recognition (no words).
    The returned waveform is the whole recording (16 kHz, loudness-normalised). Leading/trailing silence is
    trimmed only for the decoders (`audio_options.trim`); their times are shifted back, and the cut-off
    stretches are "sil", so timing.json lines up with the file the user uploaded.
    """
    if audio_options.target_sr != SAMPLE_RATE:
        raise ValueError(f"pocketsphinx needs {SAMPLE_RATE} Hz audio, got target_sr={audio_options.target_sr}")
    prepared = _prepare(audio, sample_rate, replace(audio_options, trim=False))
    notes = list(prepared.notes)
    waveform = prepared.waveform
    offset = 0.0
    if audio_options.trim:
        waveform, offset = trim_silence(waveform, SAMPLE_RATE)
    duration = prepared.duration_s
    words = words_for_alignment(text) if text is not None and text.strip() else []
    if text is not None and text.strip() and not words:
        notes.append("the transcript has no speakable words; used phone recognition")
    recognized = recognize_phones(waveform)
    if words:
        try:
            aligned, added = forced_align(waveform, words)
            problem = implausibility(aligned, recognized, options)
        except AlignmentFailed as failure:
            aligned, added, problem = None, [], str(failure)
        if problem is None:
            if added:
                notes.append("pronunciations guessed for words not in the dictionary: " + ", ".join(added))
            return Speech(prepared.waveform, SAMPLE_RATE, text or "", _shift(aligned.words, offset),
                          _pad_silence(_shift(aligned.phones, offset), duration), "arpabet", "forced_alignment",
                          notes)
        if not options.fallback_to_recognition:
            raise AlignmentFailed(f"transcript does not match the audio: {problem}")
        notes.append(f"transcript did not match the audio ({problem}); fell back to phone recognition, "
                     f"so there are no word timings")
    return Speech(prepared.waveform, SAMPLE_RATE, text or "", [],
                  _pad_silence(_shift(recognized.phones, offset), duration), "arpabet", "recognition", notes)


def _shift(segments: list[Segment], offset_s: float) -> list[Segment]:
    return [Segment(s.label, s.start_s + offset_s, s.end_s + offset_s) for s in segments]


def _pad_silence(phones: list[Segment], duration_s: float) -> list[Segment]:
    """Cover [0, duration_s]: "sil" before the first and after the last phone (the trimmed stretches)."""
    if not phones:
        return [Segment(SILENCE_PHONE, 0.0, duration_s)]
    padded = list(phones)
    if padded[0].start_s > 0.0:
        padded.insert(0, Segment(SILENCE_PHONE, 0.0, padded[0].start_s))
    if padded[-1].end_s < duration_s:
        padded.append(Segment(SILENCE_PHONE, padded[-1].end_s, duration_s))
    return _merge_silences(padded)


def _prepare(audio: str | Path | np.ndarray, sample_rate: int | None, audio_options: AudioOptions
             ) -> PreparedAudio:
    if isinstance(audio, (str, Path)):
        return prepare_audio(audio, audio_options)
    if sample_rate is None:
        raise ValueError("sample_rate is required when passing a waveform")
    waveform = np.asarray(audio, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {waveform.shape}")
    if sample_rate != SAMPLE_RATE:
        if not 8000 <= sample_rate <= 192000:
            raise ValueError(f"sample_rate must be 8000-192000 Hz, got {sample_rate}")
        waveform = resample_to(waveform, int(sample_rate), SAMPLE_RATE)
    return prepare_waveform(waveform, SAMPLE_RATE, audio_options)
