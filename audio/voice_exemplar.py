"""Waveform-domain exemplar synthesis (pitch-synchronous unit selection + TD-PSOLA): no vocoder.

Why: WORLD analysis + resynthesis alone costs a reference speaker much of its identity (see the docstring of
`audio.voice_convert`), so this path keeps the reference's real waveform. The reference is cut into grains
(two local pitch periods under a Hann window, centred on pitch marks, in voiced speech; fixed 10 ms Hann
grains every 5 ms in unvoiced speech), each described by the mel cepstrum of the WORLD envelope at its
centre. For converted speech (the F0 contour, timing and envelope sequence of the global conversion) every
output pitch mark picks a grain by a small Viterbi search: feature distance + pitch distance of the k nearest
grains, plus a cost for jumping away from the grain that follows the previous one in the reference. The
chosen grains are overlap-added at the output marks (TD-PSOLA) and the level follows the converted speech.
Timing is that of the frame sequence handed in, to the sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
FRAME_HOP = 80  # samples per 5 ms WORLD frame
UNVOICED_HALF = 80  # unvoiced grains: 160-sample Hann every 80 samples (sums to a constant)
MAX_HALF = 400  # longest half-grain (samples): two periods of a 40 Hz voice would be 800 samples


@dataclass(frozen=True)
class GrainOptions:
    """Selection settings (model facts: saved with the profile's parameters).

    k: candidates per output mark; pitch_weight: cost per octave of |log2 F0 ratio| (in units of the
    normalised-cepstrum distance); jump_weight: cost of not continuing with the reference's next grain.
    """

    k: int = 8
    pitch_weight: float = 2.0
    jump_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.k < 1 or self.pitch_weight < 0 or self.jump_weight < 0:
            raise ValueError(f"grain options need k >= 1 and non-negative weights, got {self}")


@dataclass
class GrainBank:
    """Grains of one reference clip.

    wave: [S] the reference (16 kHz); centres: [G] grain centre sample; halves: [G] half-length in samples;
    voiced: [G] bool; log_f0: [G] natural log of the local F0 (0 where unvoiced); features: [G, C]
    speaker-normalised mel cepstra. Grains come in time order, so grain g + 1 follows grain g.
    """

    wave: np.ndarray  # [S]
    centres: np.ndarray  # [G]
    halves: np.ndarray  # [G]
    voiced: np.ndarray  # [G]
    log_f0: np.ndarray  # [G]
    features: np.ndarray  # [G, C]

    def __post_init__(self) -> None:
        g = len(self.centres)
        if self.wave.ndim != 1:
            raise ValueError(f"grain bank wave must be [S], got {self.wave.shape}")
        for name in ("halves", "voiced", "log_f0"):
            if getattr(self, name).shape != (g,):
                raise ValueError(f"grain bank {name} must be [{g}], got {getattr(self, name).shape}")
        if self.features.ndim != 2 or len(self.features) != g:
            raise ValueError(f"grain bank features must be [{g}, C], got {self.features.shape}")
        if g and (self.centres.min() < 0 or self.centres.max() >= len(self.wave)):
            raise ValueError("grain centres must lie inside the reference waveform")


def pitch_marks(wave: np.ndarray, f0: np.ndarray, hop: int = FRAME_HOP) -> np.ndarray:
    """Pitch marks [P] (sample indices) in the voiced runs of f0 [T] (Hz per hop-sample frame, 0 = unvoiced)
    of wave [S]: one per period, each snapped to the strongest peak of the low-passed waveform within a
    quarter period of where the previous mark plus one period predicts, so grains share a phase."""
    from scipy.signal import butter, sosfiltfilt

    if wave.ndim != 1 or f0.ndim != 1:
        raise ValueError(f"need wave [S] and f0 [T], got {wave.shape} / {f0.shape}")
    smooth = sosfiltfilt(butter(4, 1500.0, fs=SAMPLE_RATE, output="sos"), wave)
    # The glottal pulse shows as a peak of one polarity per speaker and channel: use the stronger one.
    if np.percentile(smooth, 99.5) < -np.percentile(smooth, 0.5):
        smooth = -smooth
    marks = []
    for start, end in _runs(f0 > 0):
        position, stop = start * hop, min(end * hop, len(wave) - 1)
        first = True
        while position < stop:
            period = SAMPLE_RATE / f0[min(int(position) // hop, len(f0) - 1)]
            reach = int(period / 2 if first else period / 4)
            low, high = max(int(position) - (0 if first else reach), 0), min(int(position) + reach + 1, len(wave))
            if high <= low:
                break
            mark = low + int(np.argmax(smooth[low:high]))
            if not first and mark <= marks[-1]:
                mark = marks[-1] + max(int(period), 1)
            if mark >= len(wave):
                break
            marks.append(mark)
            position = mark + period
            first = False
    return np.asarray(marks, dtype=np.int64)


def output_marks(f0: np.ndarray, num_samples: int, hop: int = FRAME_HOP) -> tuple[np.ndarray, np.ndarray]:
    """(marks [P], voiced [P]) for synthesis over num_samples: in voiced frames of f0 [T] one mark per period
    (phase accumulated from the F0 contour), elsewhere one every UNVOICED_HALF samples."""
    marks, voiced = [], []
    position = 0.0
    while position < num_samples:
        frame = min(int(position) // hop, len(f0) - 1)
        if f0[frame] > 0:
            marks.append(int(position))
            voiced.append(True)
            position += SAMPLE_RATE / f0[frame]
        else:
            marks.append(int(position))
            voiced.append(False)
            position += UNVOICED_HALF
    return np.asarray(marks, np.int64), np.asarray(voiced, bool)


def build_bank(wave: np.ndarray, f0: np.ndarray, cepstra: np.ndarray, speech: np.ndarray) -> GrainBank:
    """Cut the reference wave [S] into grains, given its WORLD f0 [T], normalised cepstra [T, C] and speech
    mask [T] (frames loud enough to be speech; pauses give no grains)."""
    if not len(f0) == len(cepstra) == len(speech):
        raise ValueError(f"f0 [T], cepstra [T, C] and speech [T] must agree, got {f0.shape}, {cepstra.shape}, "
                         f"{speech.shape}")
    voiced_marks = pitch_marks(wave, f0)
    frames_of = np.minimum(voiced_marks // FRAME_HOP, len(f0) - 1)
    periods = np.diff(voiced_marks, append=voiced_marks[-1:] + 1) if len(voiced_marks) else voiced_marks
    # Local period from the F0 track (the spacing jumps at run ends).
    halves_v = np.clip(np.rint(SAMPLE_RATE / np.maximum(f0[frames_of], 1.0)), 16, MAX_HALF).astype(np.int64)
    del periods
    unvoiced_frames = np.flatnonzero((f0 <= 0) & speech)
    unvoiced_marks = unvoiced_frames * FRAME_HOP
    centres = np.concatenate([voiced_marks, unvoiced_marks])
    halves = np.concatenate([halves_v, np.full(len(unvoiced_marks), UNVOICED_HALF, np.int64)])
    voiced = np.concatenate([np.ones(len(voiced_marks), bool), np.zeros(len(unvoiced_marks), bool)])
    frames = np.concatenate([frames_of, unvoiced_frames]).astype(np.int64)
    keep = speech[frames] & (centres < len(wave))
    order = np.argsort(centres[keep], kind="stable")
    centres, halves, voiced, frames = (a[keep][order] for a in (centres, halves, voiced, frames))
    log_f0 = np.where(voiced, np.log(np.maximum(f0[frames], 1.0)), 0.0)
    return GrainBank(np.asarray(wave, np.float32), centres, halves, voiced, log_f0,
                     np.asarray(cepstra[frames], np.float32))


def select_grains(query: np.ndarray, query_log_f0: np.ndarray, query_voiced: np.ndarray, bank: GrainBank,
                  options: GrainOptions) -> np.ndarray:
    """Grain index [P] for each output mark: query [P, C] normalised cepstra, query_log_f0 [P] (ignored where
    unvoiced), query_voiced [P]. Viterbi over the k nearest grains of the same voicing per mark."""
    if query.ndim != 2 or query.shape[1] != bank.features.shape[1]:
        raise ValueError(f"query must be [P, {bank.features.shape[1]}], got {query.shape}")
    if not len(query) == len(query_log_f0) == len(query_voiced):
        raise ValueError("query [P, C], query_log_f0 [P] and query_voiced [P] must have the same P")
    candidates, costs = _candidates(query, query_log_f0, query_voiced, bank, options)
    return _viterbi(candidates, costs, options.jump_weight)


def _candidates(query, query_log_f0, query_voiced, bank: GrainBank, options: GrainOptions):
    """(candidates [P, K], unit costs [P, K]) with K = min(k, grains of the needed voicing)."""
    pools = {flag: np.flatnonzero(bank.voiced == flag) for flag in (True, False)}
    if len(pools[True]) == 0 and len(pools[False]) == 0:
        raise ValueError("the grain bank is empty")
    for flag in (True, False):  # a reference without unvoiced grains lends voiced ones, and vice versa
        if len(pools[flag]) == 0:
            pools[flag] = pools[not flag]
    k = min(options.k, len(pools[True]), len(pools[False]))
    candidates = np.zeros((len(query), k), np.int64)
    costs = np.zeros((len(query), k))
    for flag, pool in pools.items():
        rows = np.flatnonzero(query_voiced == flag)
        if len(rows) == 0:
            continue
        feats = bank.features[pool].astype(np.float64)
        distance = np.sqrt(np.maximum(((query[rows, None, :] - feats[None]) ** 2).sum(-1), 0.0))  # [R, pool]
        if flag:
            octaves = np.abs(query_log_f0[rows, None] - bank.log_f0[pool][None, :]) / np.log(2.0)
            distance = distance + options.pitch_weight * octaves * bank.voiced[pool][None, :]
        nearest = np.argpartition(distance, k - 1, axis=1)[:, :k] if k < len(pool) else np.tile(
            np.arange(len(pool)), (len(rows), 1))
        candidates[rows] = pool[nearest]
        costs[rows] = np.take_along_axis(distance, nearest, axis=1)
    return candidates, costs


def _viterbi(candidates: np.ndarray, costs: np.ndarray, jump_weight: float) -> np.ndarray:
    """Cheapest path through candidates [P, K] with unit costs [P, K]; moving from grain a to grain b costs
    0 when b is a + 1 or a itself (the reference continues, or a period repeats), jump_weight otherwise."""
    steps, k = candidates.shape
    total = costs[0].copy()
    back = np.zeros((steps, k), np.int64)
    for step in range(1, steps):
        prev, cur = candidates[step - 1], candidates[step]
        delta = cur[None, :] - prev[:, None]  # [K prev, K cur]
        transition = np.where((delta == 1) | (delta == 0), 0.0, jump_weight)
        options = total[:, None] + transition
        back[step] = np.argmin(options, axis=0)
        total = options[back[step], np.arange(k)] + costs[step]
    path = np.zeros(steps, np.int64)
    path[-1] = int(np.argmin(total))
    for step in range(steps - 1, 0, -1):
        path[step - 1] = back[step, path[step]]
    return candidates[np.arange(steps), path]


SHAPE_FFT = 1024  # grains are re-shaped on this FFT grid (513 bins, as WORLD's envelopes at 16 kHz)


def overlap_add(bank: GrainBank, chosen: np.ndarray, marks: np.ndarray, num_samples: int,
                log_gain: np.ndarray | None = None) -> np.ndarray:
    """TD-PSOLA: grain chosen[p] (Hann-windowed, 2 * half + 1 samples about its centre) added at marks[p];
    -> waveform [num_samples] float64. log_gain [P, SHAPE_FFT // 2 + 1] (optional): natural-log amplitude gain
    per frequency bin applied to grain p as a zero-phase filter (the grain sits mid-buffer, so the filter's
    short impulse response does not wrap round)."""
    pad = SHAPE_FFT // 2 if log_gain is not None else MAX_HALF + 1
    if log_gain is not None and log_gain.shape != (len(marks), SHAPE_FFT // 2 + 1):
        raise ValueError(f"log_gain must be [{len(marks)}, {SHAPE_FFT // 2 + 1}], got {log_gain.shape}")
    out = np.zeros(num_samples + 2 * pad + 2)
    wave = np.concatenate([np.zeros(MAX_HALF + 1), bank.wave.astype(np.float64), np.zeros(MAX_HALF + 1)])
    windows: dict[int, np.ndarray] = {}
    for index, (grain, mark) in enumerate(zip(chosen, marks)):
        half = int(bank.halves[grain])
        if half not in windows:
            windows[half] = np.hanning(2 * half + 3)[1:-1]
        centre = int(bank.centres[grain]) + MAX_HALF + 1
        piece = wave[centre - half:centre + half + 1] * windows[half]
        if log_gain is None:
            start = int(mark) + pad - half
            out[start:start + 2 * half + 1] += piece
            continue
        buffer = np.zeros(SHAPE_FFT)
        buffer[SHAPE_FFT // 2 - half:SHAPE_FFT // 2 + half + 1] = piece
        buffer = np.fft.irfft(np.fft.rfft(buffer) * np.exp(log_gain[index]), SHAPE_FFT)
        start = int(mark) + pad - SHAPE_FFT // 2
        out[start:start + SHAPE_FFT] += buffer
    return out[pad:pad + num_samples]


def overlap_add_slow(bank: GrainBank, chosen: np.ndarray, marks: np.ndarray, num_samples: int) -> np.ndarray:
    """Sample-by-sample twin of `overlap_add` (tests): out[n] = sum_p w_p(n - mark_p) x(centre_p + n - mark_p)."""
    out = np.zeros(num_samples)
    for grain, mark in zip(chosen, marks):
        half = int(bank.halves[grain])
        for offset in range(-half, half + 1):
            n, source = int(mark) + offset, int(bank.centres[grain]) + offset
            if 0 <= n < num_samples and 0 <= source < len(bank.wave):
                weight = 0.5 - 0.5 * np.cos(2.0 * np.pi * (offset + half + 1) / (2 * half + 2))
                out[n] += weight * bank.wave[source]
    return out


def match_level(wave: np.ndarray, target_rms: np.ndarray, hop: int = FRAME_HOP) -> np.ndarray:
    """Scale wave [S] so its RMS per hop-sample frame follows target_rms [T] (smoothed gain, at most x30)."""
    from scipy.ndimage import uniform_filter1d

    frames = min(len(target_rms), int(np.ceil(len(wave) / hop)))
    padded = np.zeros(frames * hop)
    n = min(len(wave), frames * hop)
    padded[:n] = wave[:n]
    power = uniform_filter1d((padded ** 2).reshape(frames, hop).mean(axis=1), 5, mode="nearest")
    target = uniform_filter1d(target_rms[:frames] ** 2, 5, mode="nearest")
    gain = np.sqrt(target / (power + 1e-10 * (target.max() + 1e-20)))
    gain = np.minimum(gain, 30.0 * np.median(gain[target > 1e-4 * target.max()]) if np.any(target > 0) else 1.0)
    sample_gain = np.interp(np.arange(len(wave)), np.arange(frames) * hop + hop / 2.0, gain)
    return wave * sample_gain


def frame_rms(wave: np.ndarray, frames: int, hop: int = FRAME_HOP) -> np.ndarray:
    """RMS [frames] of wave [S] in consecutive hop-sample frames (zero-padded at the end)."""
    padded = np.zeros(frames * hop)
    n = min(len(wave), frames * hop)
    padded[:n] = wave[:n]
    return np.sqrt((padded ** 2).reshape(frames, hop).mean(axis=1))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end)] of the True runs of mask [T] (end exclusive)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


# ---- glue to the WORLD front end (audio.voice_convert) ---------------------------------------------------

def bank_from_reference(reference: np.ndarray, analysis) -> tuple[GrainBank, np.ndarray]:
    """(grain bank, grains' natural-log WORLD envelopes [G, B]) of a 16 kHz reference [S] and its WORLD
    analysis (`voice_convert.WorldFeatures`); features are the reference's own mean/std-normalised cepstra."""
    from audio.voice_convert import _speech_frames, mel_cepstra

    speech = _speech_frames(analysis.envelope)
    cepstra = mel_cepstra(analysis.envelope)
    mean, std = cepstra[speech].mean(0), cepstra[speech].std(0) + 1e-6
    bank = build_bank(np.asarray(reference, np.float32), analysis.f0, (cepstra - mean) / std, speech)
    frames = np.minimum(bank.centres // FRAME_HOP, len(analysis.f0) - 1)
    return bank, np.log(analysis.envelope[frames] + 1e-12).astype(np.float32)


def synthesize_grains(source_cepstra: np.ndarray, converted, bank: GrainBank, grain_log_envelope: np.ndarray,
                      shaping: float, options: GrainOptions = GrainOptions()) -> np.ndarray:
    """Waveform [converted.num_samples] from reference grains.

    source_cepstra: [T, C] the source speech's speaker-normalised cepstra (what selects the grains);
    converted: the globally converted WORLD features (T frames: target F0 contour, envelope, length);
    grain_log_envelope: [G, B] each grain's own log envelope; shaping: 0..1, the fraction (in log) by which each
    grain's envelope is moved to the converted frame's envelope (1 = the converted envelope exactly, keeping the
    words intelligible; 0 = the raw grain, most like the reference but mis-pronounced on short references).
    """
    frames = len(converted.f0)
    if source_cepstra.shape != (frames, bank.features.shape[1]):
        raise ValueError(f"source_cepstra must be [{frames}, {bank.features.shape[1]}], got {source_cepstra.shape}")
    if grain_log_envelope.shape != (len(bank.centres), SHAPE_FFT // 2 + 1):
        raise ValueError(f"grain_log_envelope must be [{len(bank.centres)}, {SHAPE_FFT // 2 + 1}]")
    if not 0.0 <= shaping <= 1.0:
        raise ValueError(f"shaping must be 0..1, got {shaping}")
    marks, voiced = output_marks(converted.f0, converted.num_samples)
    frame_of = np.minimum(marks // FRAME_HOP, frames - 1)
    log_f0 = np.log(np.maximum(converted.f0[frame_of], 1.0))
    chosen = select_grains(source_cepstra[frame_of], log_f0, voiced, bank, options)
    target_log = np.log(converted.envelope[frame_of] + 1e-12)
    difference = target_log - grain_log_envelope[chosen]
    # Level is set afterwards from the converted envelope: only the spectral shape is moved here.
    level = np.log(np.exp(target_log).sum(1)) - np.log(np.exp(grain_log_envelope[chosen].astype(np.float64)).sum(1))
    log_gain = 0.5 * shaping * (difference - level[:, None])  # power -> amplitude
    out = overlap_add(bank, chosen, marks, converted.num_samples, log_gain)
    return match_level(out, np.sqrt(converted.envelope.mean(axis=1))).astype(np.float32)
