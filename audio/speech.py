"""The `Speech` contract: a waveform plus what is said in it and when.

Every producer of speech (Piper TTS, uploaded audio + pocketsphinx) returns this one dataclass, and every
consumer (visemes, motion, the MP4 muxer) reads it. Times are seconds from the start of `waveform`.
`phone_set` says which alphabet the phone labels use: "ipa" (Piper/espeak) or "arpabet" (pocketsphinx, no
stress digits); `animation.visemes` maps both to one viseme set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

PhoneSet = Literal["ipa", "arpabet"]
TIMING_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Segment:
    """One labelled stretch of time: a word, a phone, or a pause ("" / "sil")."""

    label: str
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.start_s) and np.isfinite(self.end_s)) or self.end_s < self.start_s:
            raise ValueError(f"segment {self.label!r} has bad times {self.start_s}..{self.end_s}")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Speech:
    """Mono speech with word and phone timing.

    waveform: float32 [S] in [-1, 1]; sample_rate in Hz; words and phones sorted by start time.
    `source` says where the timing came from ("piper", "forced_alignment", "recognition") and `notes`
    carries messages a user should see (e.g. "transcript did not match; fell back to recognition").
    """

    waveform: np.ndarray  # [S] float32
    sample_rate: int
    text: str
    words: list[Segment] = field(default_factory=list)
    phones: list[Segment] = field(default_factory=list)
    phone_set: PhoneSet = "ipa"
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        wave = np.asarray(self.waveform)
        if wave.ndim != 1:
            raise ValueError(f"waveform must be mono [S], got shape {wave.shape}")
        self.waveform = wave.astype(np.float32, copy=False)
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.phone_set not in ("ipa", "arpabet"):
            raise ValueError(f"phone_set must be 'ipa' or 'arpabet', got {self.phone_set!r}")

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / float(self.sample_rate)

    def timing_dict(self) -> dict:
        """Plain-data timing (no samples), the content of `timing.json`."""
        return {
            "format_version": TIMING_FORMAT_VERSION,
            "text": self.text,
            "sample_rate": self.sample_rate,
            "duration_s": self.duration_s,
            "phone_set": self.phone_set,
            "source": self.source,
            "notes": list(self.notes),
            "words": [[s.label, round(s.start_s, 5), round(s.end_s, 5)] for s in self.words],
            "phones": [[s.label, round(s.start_s, 5), round(s.end_s, 5)] for s in self.phones],
        }

    def save_timing(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.timing_dict(), indent=1, ensure_ascii=False), encoding="utf-8")


def segments_from_lists(rows: list) -> list[Segment]:
    """[[label, start, end], ...] (as in timing.json) -> [Segment]."""
    return [Segment(str(r[0]), float(r[1]), float(r[2])) for r in rows]


def load_timing(path: str | Path) -> dict:
    """Read a timing.json written by `Speech.save_timing`; words/phones come back as Segments."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format_version") != TIMING_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported timing format_version {data.get('format_version')!r}")
    data["words"] = segments_from_lists(data["words"])
    data["phones"] = segments_from_lists(data["phones"])
    return data
