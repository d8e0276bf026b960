"""Phones -> viseme classes: one table of 15 mouth shapes for both phone sets we meet.

The class set is the MPEG-4 FBA viseme set (14 visemes) plus silence, in the naming Oculus/Meta OVRLipSync
made common (`sil PP FF TH DD kk CH SS nn RR aa E ih oh ou`). Why this set: it is the de-facto interchange
set (blendshape rigs, ARKit/Oculus retargeting tools and lip-sync datasets use it), it separates exactly the
shapes a viewer can tell apart on the lips and jaw (closure, lip-teeth contact, tongue-between-teeth,
protrusion, rounding, jaw height, spread), and it merges the ones they cannot (t/d/n/l differ only inside
the mouth). English phones that MPEG-4 leaves out are placed by their visible articulation:
w -> ou (rounded), j -> ih (spread, high), h and the glottal stop -> kk (no lip target: relaxed, slightly
open; they also get a low dominance so that neighbours win), ŋ -> kk (velar), schwa/ʌ/AH -> E (mid, neutral),
æ -> aa (open), the rounded open ɒ (MFA 2.x writes it for ARPAbet AO, "forced") -> oh, r-coloured vowels -> RR.

Phone sets:
- "ipa": what Piper (espeak-ng en-us) and MFA 2.x produce. Labels may carry stress marks, length marks,
  syllabic/aspiration/palatalisation diacritics and tie bars; these are stripped. A label holding two vowel
  qualities (diphthong "aɪ", "oʊ") is split into two halves (nucleus then glide). A label that is only a
  modifier ("ː", "̩", "ʲ") takes the class of the phone before it, a stress mark or space alone takes the class
  of the phone after it (Piper gives these their own duration); punctuation and Piper's "^ $ _" are silence.
- "arpabet": pocketsphinx / CMUdict / MFA ARPAbet, upper or lower case, with or without stress digits; the
  TIMIT extras (AX AXR IX UX EL EM EN NX DX Q WH H) too. Fillers (+NSN+, +SPN+, <sil>, [NOISE], SIL, SP, SPN)
  are silence.

Unknown phones never raise: an IPA label falls back to its first character that has a class; anything else
falls back to `FALLBACK_CLASS` ("kk", relaxed half-open mouth: the least wrong shape when we do not know).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from audio.speech import Segment

PhoneSet = Literal["ipa", "arpabet"]


@dataclass(frozen=True)
class MouthShape:
    """A generic, avatar-independent description of a viseme (all values 0..1).

    jaw_open: jaw drop (0 teeth together, 1 widest vowel); lip_spread: horizontal stretch of the mouth
    corners (0 pursed, 0.5 neutral, 1 broad smile-like spread); lip_round: rounding/protrusion (0 none,
    1 "oo"); lips_closed: the lips touch along their whole length (bilabials, rest).
    """

    jaw_open: float
    lip_spread: float
    lip_round: float
    lips_closed: bool
    description: str


SHAPES: dict[str, MouthShape] = {
    "sil": MouthShape(0.00, 0.50, 0.00, True, "rest: lips lightly closed, jaw relaxed"),
    "PP": MouthShape(0.00, 0.45, 0.10, True, "p b m: lips pressed together"),
    "FF": MouthShape(0.10, 0.50, 0.00, False, "f v: lower lip tucked under the upper teeth"),
    "TH": MouthShape(0.20, 0.50, 0.00, False, "θ ð: tongue tip between the teeth, jaw slightly open"),
    "DD": MouthShape(0.25, 0.55, 0.00, False, "t d (ɾ): tongue on the ridge, teeth slightly apart"),
    "kk": MouthShape(0.30, 0.50, 0.00, False, "k g ŋ h ʔ: lips relaxed, jaw half-open"),
    "CH": MouthShape(0.15, 0.30, 0.60, False, "tʃ dʒ ʃ ʒ: lips protruded and flared, teeth near"),
    "SS": MouthShape(0.10, 0.70, 0.00, False, "s z: teeth together, lips spread"),
    "nn": MouthShape(0.25, 0.55, 0.00, False, "n l: tongue up, jaw slightly open, lips neutral"),
    "RR": MouthShape(0.25, 0.35, 0.45, False, "r ɚ ɝ: lips slightly rounded and pushed forward"),
    "aa": MouthShape(1.00, 0.55, 0.00, False, "ɑ a æ: jaw wide open"),
    "E": MouthShape(0.55, 0.65, 0.00, False, "ɛ e ə ʌ: jaw mid-open, lips neutral to spread"),
    "ih": MouthShape(0.35, 0.80, 0.00, False, "ɪ i j: jaw nearly closed, lips spread"),
    "oh": MouthShape(0.65, 0.25, 0.70, False, "ɔ o: jaw open, lips rounded"),
    "ou": MouthShape(0.30, 0.10, 1.00, False, "u ʊ w: lips tightly rounded and protruded"),
}
VISEMES: tuple[str, ...] = tuple(SHAPES)
VISEME_INDEX: dict[str, int] = {name: i for i, name in enumerate(VISEMES)}
SILENCE = "sil"
FALLBACK_CLASS = "kk"
ROUNDED_CLASSES = ("oh", "ou")
BILABIAL_CLASS = "PP"

# --- IPA -----------------------------------------------------------------------------------------------
IPA_BASE: dict[str, str] = {}
for _cls, _chars in {
    "PP": "pbmɓʙβ",
    "FF": "fvɱʋⱱɸ",
    "TH": "θð",
    "DD": "tdɾʈɖɗɽɺ",
    "kk": "kgɡŋxɣqɢcɟχʁħʕhɦʔɰʡʢ",
    "CH": "ʃʒɕʑçʂʐʝ",
    "SS": "sz",
    "nn": "nlɫɲɳɭʎɬɮɴʟ",
    "RR": "ɹrɻʀɚɝɜ",
    "aa": "ɑaæɶ",
    "E": "eɛəʌɐɘɤœ",
    "ih": "iɪɨᵻjɯ",
    "oh": "oɔɒɵɞø",
    "ou": "uʊwʍɥyʏʉ",
}.items():
    for _c in _chars:
        IPA_BASE[_c] = _cls
IPA_MULTI: dict[str, str] = {"tʃ": "CH", "dʒ": "CH", "ts": "SS", "dz": "SS", "tɕ": "CH", "dʑ": "CH",
                             "ʈʂ": "CH", "ɖʐ": "CH", "pf": "FF"}
IPA_VOWELS = set("iyɨʉɯuɪʏʊeøɘɵɤoəɛœɜɞʌɔæɐaɶɑɒᵻɚɝ")
# Modifiers that belong to the phone before them (length, syllabicity, secondary articulation, r-colour).
IPA_TRAILING_MODIFIERS = set("ːˑʰʲʷˠˤ˞ⁿˡ") | {"\u0329", "\u030d", "\u032f", "\u0303", "\u032a", "\u0325",
                                              "\u031a", "\u0330", "\u0324", "\u031e", "\u031d", "\u0318",
                                              "\u0319", "\u0348"}
IPA_LEADING_MODIFIERS = set("ˈˌ'") | {"\u0361", "\u035c", " ", "\t", "\u200d"}
# Piper's pad / begin / end symbols and punctuation are pauses.
IPA_SILENCE_CHARS = set("^$_.,;:!?¡¿—–-…\"«»()[]{}|‖↓↑#0123456789")

# --- ARPAbet -------------------------------------------------------------------------------------------
ARPABET: dict[str, str] = {
    "P": "PP", "B": "PP", "M": "PP", "EM": "PP",
    "F": "FF", "V": "FF",
    "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD", "DX": "DD",
    "K": "kk", "G": "kk", "NG": "kk", "HH": "kk", "H": "kk", "Q": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH",
    "S": "SS", "Z": "SS",
    "N": "nn", "L": "nn", "EN": "nn", "EL": "nn", "NX": "nn",
    "R": "RR", "ER": "RR", "AXR": "RR",
    "AA": "aa", "AE": "aa",
    "EH": "E", "AH": "E", "AX": "E",
    "IH": "ih", "IY": "ih", "Y": "ih", "IX": "ih",
    "AO": "oh",
    "UH": "ou", "UW": "ou", "W": "ou", "UX": "ou", "WH": "ou",
}
# Diphthongs as (class, fraction of the phone's duration) halves: nucleus, then glide (same split as IPA).
ARPABET_DIPHTHONGS: dict[str, tuple[tuple[str, float], ...]] = {
    "AY": (("aa", 0.55), ("ih", 0.45)), "AW": (("aa", 0.55), ("ou", 0.45)),
    "EY": (("E", 0.55), ("ih", 0.45)), "OW": (("oh", 0.55), ("ou", 0.45)), "OY": (("oh", 0.55), ("ih", 0.45)),
}
ARPABET_SILENCE = {"", "SIL", "SP", "SPN", "NSN", "NOISE", "BREATH", "COUGH", "SMACK", "UH_FILLER", "PAU",
                   "EPI", "H#", "#H", "GARBAGE"}
# Phones with no lip target of their own: they get a low dominance in coarticulation.
WEAK_ARPABET = {"HH", "H", "Q", "AX", "DX"}
WEAK_IPA = set("hɦʔə")

# Result kinds of the per-label parser (besides a tuple of (class, fraction) parts).
_INHERIT_PREVIOUS = "inherit_previous"
_INHERIT_NEXT = "inherit_next"


@dataclass(frozen=True)
class VisemeSegment:
    """A stretch of time with one viseme target. weak: the phone has no lip target of its own."""

    viseme: str
    start_s: float
    end_s: float
    weak: bool = False


def _check_phone_set(phone_set: str) -> None:
    if phone_set not in ("ipa", "arpabet"):
        raise ValueError(f"phone_set must be 'ipa' or 'arpabet', got {phone_set!r}")


def _parse_arpabet(label: str) -> tuple[tuple[str, float], ...] | str:
    core = label.strip().upper()
    if core.startswith(("+", "<", "[")) or core.strip("+<>[]/") in ARPABET_SILENCE:
        return ((SILENCE, 1.0),)
    core = core.rstrip("012")
    if core in ARPABET_DIPHTHONGS:
        return ARPABET_DIPHTHONGS[core]
    return ((ARPABET.get(core, FALLBACK_CLASS), 1.0),)


def _parse_ipa(label: str) -> tuple[tuple[str, float], ...] | str:
    text = unicodedata.normalize("NFD", label)
    if text == "" or text.strip().lower() in ("sil", "sp", "spn", "<sil>", "<eps>"):
        return ((SILENCE, 1.0),)
    kept = [c for c in text if c not in IPA_LEADING_MODIFIERS and c not in IPA_TRAILING_MODIFIERS]
    if not kept:
        if any(c in IPA_TRAILING_MODIFIERS for c in text):
            return _INHERIT_PREVIOUS
        return _INHERIT_NEXT  # stress mark or space alone: holds the next phone's onset
    core = "".join(kept).replace("ɡ", "g")
    if all(c in IPA_SILENCE_CHARS for c in core):
        return ((SILENCE, 1.0),)
    if core in IPA_MULTI:
        return ((IPA_MULTI[core], 1.0),)
    classes: list[str] = []
    i = 0
    while i < len(core):
        pair = core[i:i + 2]
        if pair in IPA_MULTI:
            classes.append(IPA_MULTI[pair])
            i += 2
            continue
        if core[i] in IPA_BASE:
            classes.append(IPA_BASE[core[i]])
        i += 1
    if not classes:
        return ((FALLBACK_CLASS, 1.0),)
    # Vowels, and j/w right after a vowel (MFA writes diphthongs as "aj", "aw", "ej", "ow", "ɔj").
    vowels = [c for i, c in enumerate(core)
              if c in IPA_VOWELS or (i > 0 and c in "jwɥ" and core[i - 1] in IPA_VOWELS)]
    if len(classes) == 1 or len(vowels) < len(classes):
        # A consonant cluster or an odd label: its first articulation decides (closest by first char).
        return ((classes[0], 1.0),)
    # Two or three vowel qualities in one label: a diphthong; nucleus gets a slightly longer share.
    merged: list[str] = [c for j, c in enumerate(classes) if j == 0 or c != classes[j - 1]]
    if len(merged) == 1:
        return ((merged[0], 1.0),)
    first = 0.55 if len(merged) == 2 else 0.4
    rest = (1.0 - first) / (len(merged) - 1)
    return tuple((c, first if j == 0 else rest) for j, c in enumerate(merged))


def _parse(label: str, phone_set: str) -> tuple[tuple[str, float], ...] | str:
    _check_phone_set(phone_set)
    if not isinstance(label, str):
        raise ValueError(f"phone label must be a string, got {type(label).__name__}")
    return _parse_arpabet(label) if phone_set == "arpabet" else _parse_ipa(label)


def viseme_class_of(phone: str, phone_set: PhoneSet) -> str:
    """The viseme class name of one phone label (its nucleus for a diphthong).

    A label that is only a modifier or stress mark has no shape of its own; alone it maps to
    FALLBACK_CLASS, while `viseme_track` gives it the class of its neighbour. Never raises for an unknown
    phone (see the module doc for the fallback); raises ValueError for a bad `phone_set`.
    """
    parsed = _parse(phone, phone_set)
    if isinstance(parsed, str):
        return FALLBACK_CLASS
    return parsed[0][0]


def is_weak_phone(phone: str, phone_set: PhoneSet) -> bool:
    """True for phones without a lip target of their own (h, glottal stop, schwa, flap)."""
    _check_phone_set(phone_set)
    if phone_set == "arpabet":
        return phone.strip().upper().rstrip("012") in WEAK_ARPABET
    core = [c for c in unicodedata.normalize("NFD", phone) if c not in IPA_LEADING_MODIFIERS
            and c not in IPA_TRAILING_MODIFIERS]
    return len(core) == 1 and core[0] in WEAK_IPA


def viseme_track(phones: Sequence[Segment], phone_set: PhoneSet) -> list[VisemeSegment]:
    """Timed phones -> timed viseme targets, sorted, with modifiers and diphthongs resolved.

    Modifier-only labels join the previous target (length mark after a vowel), stress/space-only labels the
    next one; diphthongs are split into nucleus and glide. Gaps between phones are not filled here.
    """
    _check_phone_set(phone_set)
    ordered = sorted(phones, key=lambda s: (s.start_s, s.end_s))
    parsed = [_parse(seg.label, phone_set) for seg in ordered]
    resolved: list[tuple[tuple[str, float], ...] | None] = [None] * len(ordered)
    for i, item in enumerate(parsed):  # forward pass: "previous"
        if not isinstance(item, str):
            resolved[i] = item
        elif item == _INHERIT_PREVIOUS and i > 0 and resolved[i - 1] is not None:
            resolved[i] = ((resolved[i - 1][-1][0], 1.0),)
    for i in range(len(ordered) - 1, -1, -1):  # backward pass: "next", and anything still open
        if resolved[i] is None:
            following = resolved[i + 1] if i + 1 < len(ordered) else None
            resolved[i] = ((following[0][0], 1.0),) if following is not None else ((SILENCE, 1.0),)
    track: list[VisemeSegment] = []
    for seg, parts in zip(ordered, resolved):
        weak = is_weak_phone(seg.label, phone_set)
        t = seg.start_s
        for cls, fraction in parts:
            end = t + fraction * seg.duration_s
            track.append(VisemeSegment(cls, t, end, weak))
            t = end
    return track


def check_frame_args(fps: float, n_frames: int) -> None:
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if int(n_frames) != n_frames or n_frames < 0:
        raise ValueError(f"n_frames must be a non-negative integer, got {n_frames}")


def frame_viseme_classes(phones: Sequence[Segment], phone_set: PhoneSet, fps: float,
                         n_frames: int) -> np.ndarray:
    """Viseme class index per video frame, sampled at frame centres ((t + 0.5) / fps seconds).

    Returns int64 [T] indexing `VISEMES`; frames whose centre lies in no phone are silence. This is the
    hard (no coarticulation) labelling used to compare timings, e.g. recognition against alignment.
    """
    check_frame_args(fps, n_frames)
    out = np.full(int(n_frames), VISEME_INDEX[SILENCE], dtype=np.int64)
    centres = (np.arange(int(n_frames)) + 0.5) / float(fps)
    for seg in viseme_track(phones, phone_set):
        inside = (centres >= seg.start_s) & (centres < seg.end_s)
        out[inside] = VISEME_INDEX[seg.viseme]
    return out


def shape_table() -> np.ndarray:
    """Generic mouth shapes as an array [n_visemes, 4]: jaw_open, lip_spread, lip_round, lips_closed."""
    return np.array([[s.jaw_open, s.lip_spread, s.lip_round, float(s.lips_closed)] for s in SHAPES.values()],
                    dtype=np.float64)
