"""Timed phones -> per-frame viseme weights with coarticulation, at the video frame rate.

Model (Cohen & Massaro 1993, "Modeling coarticulation in synthetic visual speech", with a plateau): every
viseme target s (from `visemes.viseme_track`, gaps filled with silence) has a dominance over time

    D_s(t) = a_s                                   inside [start_s, end_s]
           = a_s * exp(-(start_s - t) / tau_before)  before it   (anticipation)
           = a_s * exp(-(t - end_s) / tau_after)     after it    (carry-over)

and the weight of class c at time t is sum_{s of class c} D_s(t) / sum_s D_s(t). Strengths and time constants
are per class (`DOMINANCE`): lip-critical visemes (p b m, f v, ʃ, rounded vowels) are strong, tongue-only
consonants (t d n l k g) are weak so the surrounding vowels shape the lips through them, and rounded vowels
reach further ahead (anticipatory rounding: with tau 80 ms the rounding is
visible ~100-200 ms before the vowel, as measured for English). The
dominance is averaged over sub-samples of each frame's time span (a box filter) so that short phones between
frame centres are not lost.

Three rules are then imposed, because a viewer notices them at once when they are broken:
1. Closure: every bilabial (p b m) gets at least one frame (the one overlapping it most) with the PP weight
   >= `closure_weight`, however short the phone. With `closure_hold`, so does every frame lying mostly inside
   it: real lips stay shut for the whole p/b/m (2-4 frames at 25 fps on the shared clips), not for one frame.
2. Rest: in pauses of `rest_pause_s` or more, frames further than `rest_margin_s` inside the pause are pure
   silence (mouth at rest).
3. No flicker: a class may not be the dominant one for a single frame. Such a frame is pulled towards the
   dominant class of a neighbouring frame (a convex mix, so rows still sum to 1). Exempt: bilabial closure
   frames, and a single open frame between two closure frames (the release in a fast "b-o-b").

The strengths and time constants below were set by hand from the literature and by looking at the timing
plots; they are not fitted to video.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from animation.visemes import (BILABIAL_CLASS, SILENCE, VISEME_INDEX, VISEMES, PhoneSet, VisemeSegment,
                               check_frame_args, viseme_track)
from audio.speech import Segment


@dataclass(frozen=True)
class Dominance:
    """strength: relative dominance (unitless); tau_before_s / tau_after_s: decay time constants (s)."""

    strength: float
    tau_before_s: float
    tau_after_s: float


DOMINANCE: dict[str, Dominance] = {
    "sil": Dominance(1.0, 0.05, 0.05),
    "PP": Dominance(2.0, 0.02, 0.015),
    "FF": Dominance(2.0, 0.03, 0.03),
    "TH": Dominance(1.2, 0.03, 0.03),
    "DD": Dominance(0.5, 0.03, 0.03),
    "kk": Dominance(0.4, 0.03, 0.03),
    "CH": Dominance(1.5, 0.05, 0.04),
    "SS": Dominance(1.0, 0.03, 0.03),
    "nn": Dominance(0.5, 0.03, 0.03),
    "RR": Dominance(1.0, 0.06, 0.04),
    "aa": Dominance(1.0, 0.05, 0.05),
    "E": Dominance(0.9, 0.05, 0.05),
    "ih": Dominance(0.9, 0.05, 0.05),
    "oh": Dominance(1.1, 0.08, 0.05),
    "ou": Dominance(1.3, 0.08, 0.05),
}
_ROUNDED = ("oh", "ou")


@dataclass(frozen=True)
class CoarticulationOptions:
    """Per-call options for `viseme_weights` (times in seconds).

    rounding_anticipation_s: tau_before of rounded vowels (oh, ou); None keeps the table value.
    weak_strength_scale: dominance factor for phones with no lip target (h, ʔ, schwa).
    samples_per_frame: sub-samples that average the dominance over a frame's span.
    shutter: fraction of the frame period (centred) that the average covers, like a camera shutter.
    lead_s: shift all mouth shapes this much earlier than the audio (visible articulation often leads the
        sound by tens of ms; 0 by default because our measurements on the shared clips disagree on its sign).
    closure_weight: PP weight forced on one frame per bilabial.
    closure_hold: None forces it on that one frame only; a fraction f in (0, 1] also on every frame at least f of
        whose span lies inside the bilabial (used where the phones' timing is known, `motion_from_speech`).
    rest_pause_s / rest_margin_s: pauses at least this long are at rest this far inside their edges.
    deflicker: apply the no-single-frame-dominance rule.
    dominance: per-class overrides of `DOMINANCE`.
    """

    rounding_anticipation_s: float | None = None
    weak_strength_scale: float = 0.5
    samples_per_frame: int = 8
    shutter: float = 1.0
    lead_s: float = 0.0
    closure_weight: float = 0.95
    closure_hold: float | None = None
    rest_pause_s: float = 0.3
    rest_margin_s: float = 0.1
    deflicker: bool = True
    dominance: dict[str, Dominance] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.samples_per_frame < 1:
            raise ValueError(f"samples_per_frame must be >= 1, got {self.samples_per_frame}")
        if not 0.0 < self.shutter <= 1.0:
            raise ValueError(f"shutter must be in (0, 1], got {self.shutter}")
        if not 0.0 <= self.closure_weight <= 1.0:
            raise ValueError(f"closure_weight must be in [0, 1], got {self.closure_weight}")
        if self.closure_hold is not None and not 0.0 < self.closure_hold <= 1.0:
            raise ValueError(f"closure_hold must be None or in (0, 1], got {self.closure_hold}")
        if self.rounding_anticipation_s is not None and self.rounding_anticipation_s <= 0:
            raise ValueError(f"rounding_anticipation_s must be positive, got {self.rounding_anticipation_s}")
        unknown = set(self.dominance) - set(VISEMES)
        if unknown:
            raise ValueError(f"dominance overrides name unknown visemes {sorted(unknown)}; known: {VISEMES}")

    def dominance_of(self, viseme: str) -> Dominance:
        dom = self.dominance.get(viseme, DOMINANCE[viseme])
        if viseme in _ROUNDED and self.rounding_anticipation_s is not None and viseme not in self.dominance:
            dom = Dominance(dom.strength, self.rounding_anticipation_s, dom.tau_after_s)
        return dom


def filled_track(phones: Sequence[Segment], phone_set: PhoneSet, duration_s: float) -> list[VisemeSegment]:
    """`viseme_track` with silence filling every gap, from 0 to at least `duration_s`; adjacent targets of
    the same class merged."""
    track = viseme_track(phones, phone_set)
    filled: list[VisemeSegment] = []
    cursor = 0.0
    for seg in track:
        if seg.start_s > cursor + 1e-9:
            filled.append(VisemeSegment(SILENCE, cursor, seg.start_s))
        if seg.end_s > seg.start_s:
            filled.append(seg)
        cursor = max(cursor, seg.end_s)
    if duration_s > cursor:
        filled.append(VisemeSegment(SILENCE, cursor, duration_s))
    # Adjacent targets of one class are one target: a vowel split into stress mark, vowel and length mark
    # must not count three times in the blend, and adjacent pauses are one pause for the rest rule.
    merged: list[VisemeSegment] = []
    for seg in filled:
        prev = merged[-1] if merged else None
        if prev is not None and seg.viseme == prev.viseme and seg.start_s <= prev.end_s + 1e-9:
            merged[-1] = VisemeSegment(seg.viseme, prev.start_s, max(seg.end_s, prev.end_s),
                                       prev.weak and seg.weak)
        else:
            merged.append(seg)
    return merged


def dominance_blend(track: Sequence[VisemeSegment], fps: float, n_frames: int,
                    options: CoarticulationOptions) -> np.ndarray:
    """Normalised dominance, box-averaged per frame -> [T, n_visemes]; rows sum to 1."""
    k = options.samples_per_frame
    # K sub-samples spread over the central `shutter` fraction of each frame period.
    offsets = 0.5 + options.shutter * ((np.arange(k) + 0.5) / k - 0.5)
    times = ((np.arange(n_frames)[:, None] + offsets[None, :]) / float(fps)).reshape(-1)  # [T*K]
    total = np.zeros((n_frames * k, len(VISEMES)))
    for seg in track:
        dom = options.dominance_of(seg.viseme)
        strength = dom.strength * (options.weak_strength_scale if seg.weak else 1.0)
        lo = np.searchsorted(times, seg.start_s - 8 * dom.tau_before_s)
        hi = np.searchsorted(times, seg.end_s + 8 * dom.tau_after_s)
        if hi <= lo:
            continue
        t = times[lo:hi]
        before = np.exp(-np.clip(seg.start_s - t, 0.0, None) / dom.tau_before_s)
        after = np.exp(-np.clip(t - seg.end_s, 0.0, None) / dom.tau_after_s)
        total[lo:hi, VISEME_INDEX[seg.viseme]] += strength * before * after
    sums = total.sum(axis=1, keepdims=True)
    empty = sums[:, 0] <= 0.0
    total[empty, VISEME_INDEX[SILENCE]] = 1.0  # cannot happen with a filled track; kept for safety
    sums[empty] = 1.0
    return (total / sums).reshape(n_frames, k, len(VISEMES)).mean(axis=1)


def _pull_towards(row: np.ndarray, target: int, weight: float) -> np.ndarray:
    """Convex mix of `row` with the one-hot of `target` so that row[target] >= weight."""
    have = row[target]
    if have >= weight:
        return row
    lam = (weight - have) / (1.0 - have)
    out = (1.0 - lam) * row
    out[target] += lam
    return out


def bilabial_closure_frames(track: Sequence[VisemeSegment], fps: float, n_frames: int,
                            hold: float | None = None) -> list[int]:
    """Closure frames of the bilabials (adjacent PP targets merged), sorted: per closure the frame overlapping it
    most and, with `hold` = f, every frame at least f of whose span lies inside it."""
    frames: list[int] = []
    spans: list[list[float]] = []
    for seg in track:
        if seg.viseme != BILABIAL_CLASS:
            continue
        if spans and seg.start_s <= spans[-1][1] + 1e-9:
            spans[-1][1] = max(spans[-1][1], seg.end_s)
        else:
            spans.append([seg.start_s, seg.end_s])
    for start, end in spans:
        first = max(int(np.floor(start * fps)), 0)
        last = min(int(np.ceil(end * fps)), n_frames) - 1
        if last < first:
            continue
        candidates = np.arange(first, last + 1)
        overlap = np.minimum(end, (candidates + 1) / fps) - np.maximum(start, candidates / fps)
        frames.append(int(candidates[np.argmax(overlap)]))
        if hold is not None:
            frames += candidates[overlap * fps >= hold - 1e-9].tolist()
    return sorted(set(frames))


def _apply_rest(weights: np.ndarray, track: Sequence[VisemeSegment], fps: float,
                options: CoarticulationOptions) -> None:
    centres = (np.arange(len(weights)) + 0.5) / fps
    rest = np.zeros(len(VISEMES))
    rest[VISEME_INDEX[SILENCE]] = 1.0
    for i, seg in enumerate(track):
        if seg.viseme == SILENCE and seg.end_s - seg.start_s >= options.rest_pause_s:
            # No margin at the ends of the track: there is no speech there to blend with.
            lo = seg.start_s + (options.rest_margin_s if i > 0 else -np.inf)
            hi = seg.end_s - (options.rest_margin_s if i < len(track) - 1 else -np.inf)
            weights[(centres >= lo) & (centres <= hi)] = rest


def _runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of runs of equal labels."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(labels)]])
    return list(zip(starts.tolist(), stops.tolist()))


def remove_flicker(weights: np.ndarray, exempt: set[int], margin: float = 0.02) -> np.ndarray:
    """Pull every frame that is dominant for a single frame towards a neighbour's dominant class.

    weights: [T, n_visemes] rows summing to 1 (a modified copy is returned). exempt: frames left alone
    (closure frames); a single frame between two exempt frames is also left alone.
    """
    out = weights.copy()
    for _ in range(len(out) + 1):
        labels = out.argmax(axis=1)
        changed = False
        for start, stop in _runs(labels):
            if stop - start != 1 or start in exempt or len(out) < 2:
                continue
            if start - 1 in exempt and start + 1 in exempt:
                continue
            neighbours = [labels[j] for j in (start - 1, start + 1) if 0 <= j < len(out)]
            row = out[start]
            target = max(neighbours, key=lambda c: row[c])
            others = np.delete(row, target)
            need = float(others.max()) + margin
            lam = min(1.0, (need - row[target]) / (1.0 - row[target] + others.max()))
            new = (1.0 - lam) * row
            new[target] += lam
            out[start] = new
            changed = True
            break  # labels changed: recompute the runs
        if not changed:
            break
    return out


def viseme_weights(phones: Sequence[Segment], phone_set: PhoneSet, fps: float, n_frames: int,
                   options: CoarticulationOptions | None = None) -> np.ndarray:
    """Per-frame viseme weights with coarticulation -> float64 [T, len(VISEMES)], rows summing to 1.

    Frame t spans [t / fps, (t + 1) / fps) seconds; time outside all phones is silence.
    """
    check_frame_args(fps, n_frames)
    options = options or CoarticulationOptions()
    n_frames = int(n_frames)
    if n_frames == 0:
        return np.zeros((0, len(VISEMES)))
    if options.lead_s:
        phones = [Segment(p.label, p.start_s - options.lead_s, p.end_s - options.lead_s) for p in phones]
    track = filled_track(phones, phone_set, n_frames / float(fps))
    weights = dominance_blend(track, fps, n_frames, options)
    _apply_rest(weights, track, fps, options)
    closures = bilabial_closure_frames(track, fps, n_frames, options.closure_hold)
    for frame in closures:
        weights[frame] = _pull_towards(weights[frame], VISEME_INDEX[BILABIAL_CLASS], options.closure_weight)
    if options.deflicker:
        weights = remove_flicker(weights, set(closures))
    return weights
