"""Per-hop phone posteriors from the acoustic model that ships with pocketsphinx (a phonetic posteriorgram).

Phone recognition (`audio.align`) makes one hard choice per segment and is wrong on about a third of the
frames; the mouth model then learns from those mistakes. The acoustic model's own belief per 10 ms, before any
decision, carries more: how sure it is, and which near neighbours (often with the same lip shape) it weighs.
Speech-driven animation work uses such posteriorgrams because they are largely speaker-independent.

pocketsphinx's en-us model (`model/en-us/en-us`) is a phonetically tied mixture (PTM) model: one codebook of 128
diagonal Gaussians per context-independent (CI) phone and feature stream (3 streams of 13: cepstra, deltas,
double deltas), with mixture weights per senone. Only the CI senones (3 states per phone, the first
3 x 42 in the weight table) are used here: per hop, each phone's likelihood is the sum over its states, and the
posteriors are those normalised over the 42 phones (equal priors). No search, no language model, so any
language's audio gets a posteriorgram (as English sounds).

Front end, following the model's `feat.params` (sphinxbase's MFCC): 16 kHz, pre-emphasis 0.97, 410-sample
(25.625 ms) Hamming windows every 10 ms, 512-point FFT, 25 mel filters 130-6800 Hz, orthonormal DCT-II, 13
cepstra liftered by 22, cepstral mean removed over the utterance, deltas c[t+2] - c[t-2] and double deltas of
those. (The model's noise removal is not reproduced.) Checked against forced alignment on LibriTTS
(`tests/test_phone_posteriors.py`): the most probable phone is the aligned one on 47 % of 10 ms hops, against
2.4 % by chance.

File formats read: sphinx's binary Gaussian parameter files (`means`, `variances`: "s3" header, byte-order
magic, counts, float32 data), the uncompressed `sendump` mixture weights (uint8 -log probabilities in units of
log base 1.0001 shifted by 10 bits) and the binary `mdef` for the CI phone names.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
HOP = 160  # samples (10 ms)
WINDOW = 410  # samples (25.625 ms)
N_FFT = 512
N_FILTERS = 25
LOW_HZ, HIGH_HZ = 130.0, 6800.0
N_CEPSTRA = 13
LIFTER = 22.0
PRE_EMPHASIS = 0.97
VARIANCE_FLOOR = 1e-4
_BYTE_ORDER_MAGIC = 0x11223344
_HOP_BLOCK = 128  # hops scored at once by `state_log_likelihoods`
_SENDUMP_LOG_UNIT = 1024.0 * np.log(1.0001)  # one stored step, in natural-log units


@dataclass(frozen=True)
class AcousticModel:
    """The CI part of a sphinx PTM model. P phones, 3 streams, G Gaussians per codebook, 13 dimensions."""

    phones: tuple[str, ...]  # [P]
    means: np.ndarray  # [P, 3, G, 13]
    precisions: np.ndarray  # [P, 3, G, 13] (1 / variance)
    log_norm: np.ndarray  # [P, 3, G]: -0.5 sum log(2 pi variance)
    log_weights: np.ndarray  # [P, 3, 3, G]: phone, state, stream, Gaussian

    def __post_init__(self) -> None:
        p = len(self.phones)
        if self.means.ndim != 4 or self.means.shape[:2] != (p, 3) or self.means.shape[3] != N_CEPSTRA:
            raise ValueError(f"means must be [{p}, 3, G, {N_CEPSTRA}], got {list(self.means.shape)}")
        g = self.means.shape[2]
        for name, shape in (("precisions", self.means.shape), ("log_norm", (p, 3, g)), ("log_weights", (p, 3, 3, g))):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must be {list(shape)}, got {list(getattr(self, name).shape)}")


def default_model_dir() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us"


def _after_s3_header(data: bytes, path: Path) -> int:
    end = data.find(b"endhdr\n")
    if not data.startswith(b"s3\n") or end < 0:
        raise ValueError(f"{path} is not a sphinx binary parameter file")
    return end + len(b"endhdr\n")


def read_gaussians(path: Path) -> np.ndarray:
    """A sphinx `means` or `variances` file -> [codebooks, streams, Gaussians, dimensions] (float64)."""
    data = Path(path).read_bytes()
    offset = _after_s3_header(data, path)
    magic, codebooks, streams, density = struct.unpack_from("<4I", data, offset)
    if magic != _BYTE_ORDER_MAGIC:
        raise ValueError(f"{path}: unsupported byte order or format")
    offset += 16
    lengths = struct.unpack_from(f"<{streams}i", data, offset)
    offset += 4 * streams
    total, = struct.unpack_from("<i", data, offset)
    offset += 4
    if len(set(lengths)) != 1 or total != codebooks * streams * density * lengths[0]:
        raise ValueError(f"{path}: streams of unequal length or a wrong count ({lengths}, {total})")
    values = np.frombuffer(data, "<f4", total, offset)
    return values.astype(np.float64).reshape(codebooks, streams, density, lengths[0])


def read_mixture_weights(path: Path, streams: int) -> np.ndarray:
    """An uncompressed sphinx `sendump` -> stored -log weights [streams, Gaussians, senones] (uint8)."""
    data = Path(path).read_bytes()
    offset, header = 0, []
    while True:  # length-prefixed header strings, ended by a zero length
        length, = struct.unpack_from("<i", data, offset)
        if not 0 <= length < len(data) - offset:
            raise ValueError(f"{path}: damaged header")
        header.append(data[offset + 4:offset + 4 + length].rstrip(b"\x00"))
        offset += 4 + length
        if length == 0:
            break
    if any(line.startswith(b"cluster_count") and line != b"cluster_count 0" for line in header):
        raise ValueError(f"{path}: clustered mixture weights are not supported")
    gaussians, senones = struct.unpack_from("<2i", data, offset)
    offset += 8
    if offset + streams * gaussians * senones > len(data):
        raise ValueError(f"{path}: shorter than its {streams} x {gaussians} x {senones} weights")
    return np.frombuffer(data, np.uint8, streams * gaussians * senones, offset).reshape(streams, gaussians, senones)


def read_ci_phones(path: Path) -> tuple[str, ...]:
    """The CI phone names of a binary sphinx `mdef`: "BMDF", version, the format description's length and text,
    ten counts (the first: CI phones), then the names, each NUL-ended."""
    data = Path(path).read_bytes()
    if not data.startswith(b"BMDF") or len(data) < 12:
        raise ValueError(f"{path} is not a binary sphinx model definition")
    _, description = struct.unpack_from("<2i", data, 4)
    offset = 12 + description
    if not 0 < description < len(data) - 52:
        raise ValueError(f"{path}: damaged header")
    count, = struct.unpack_from("<i", data, offset)
    offset += 40
    names = []
    for _ in range(count if 0 < count < 256 else 0):
        end = data.find(b"\x00", offset)
        if end < 0:
            break
        names.append(data[offset:end].decode("ascii", "replace"))
        offset = end + 1
    if not names or len(names) != count:
        raise ValueError(f"{path}: no phone table found")
    return tuple(names)


@lru_cache(maxsize=2)
def load_acoustic_model(folder: str | None = None) -> AcousticModel:
    """The CI phones' Gaussians and state weights of a sphinx PTM model (default: pocketsphinx's en-us)."""
    folder = Path(folder) if folder else default_model_dir()
    means = read_gaussians(folder / "means")
    variances = np.maximum(read_gaussians(folder / "variances"), VARIANCE_FLOOR)
    phones = read_ci_phones(folder / "mdef")
    codebooks, streams, gaussians, _ = means.shape
    if codebooks != len(phones) or streams != 3 or variances.shape != means.shape:
        raise ValueError(f"{folder}: expected a PTM model with one 3-stream codebook per CI phone "
                         f"({len(phones)} phones, got means {list(means.shape)})")
    stored = read_mixture_weights(folder / "sendump", streams)[:, :, :3 * len(phones)]  # the CI senones
    log_weights = -stored.astype(np.float64) * _SENDUMP_LOG_UNIT  # [3 streams, G, 3P]
    log_weights = log_weights.reshape(streams, gaussians, len(phones), 3).transpose(2, 3, 0, 1)
    arrays = [means, 1.0 / variances, -0.5 * np.log(2 * np.pi * variances).sum(-1), np.ascontiguousarray(log_weights)]
    for array in arrays:  # shared by every caller through the cache: read-only
        array.setflags(write=False)
    return AcousticModel(phones, *arrays)


def mel_filters() -> np.ndarray:
    """sphinxbase's mel filters: edges rounded to FFT bins, unit area -> [N_FILTERS, N_FFT // 2 + 1]."""
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    to_hz = lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0)  # noqa: E731
    step = (to_mel(HIGH_HZ) - to_mel(LOW_HZ)) / (N_FILTERS + 1)
    bin_hz = SAMPLE_RATE / N_FFT
    freqs = np.arange(N_FFT // 2 + 1) * bin_hz
    filters = np.zeros((N_FILTERS, len(freqs)))
    for i in range(N_FILTERS):
        left, centre, right = (np.round(to_hz(to_mel(LOW_HZ) + step * (i + k)) / bin_hz) * bin_hz for k in range(3))
        rising, falling = (freqs - left) / (centre - left), (right - freqs) / (right - centre)
        filters[i] = np.clip(np.minimum(rising, falling), 0.0, None) * 2.0 / (right - left)
    return filters


def cepstral_features(waveform: np.ndarray) -> np.ndarray:
    """16 kHz mono audio [S] (float, full scale 1) -> the model's features [H, 3, 13] (cepstra, deltas, double
    deltas), one per 10 ms hop; hop h covers samples [160 h, 160 h + 410)."""
    from scipy.fft import dct

    wave = np.asarray(waveform, np.float64) * 32768.0
    if wave.ndim != 1 or not np.isfinite(wave).all():
        raise ValueError(f"waveform must be finite mono [S], got shape {wave.shape}")
    wave = np.pad(wave, (0, max(0, WINDOW - len(wave))))
    emphasised = np.concatenate([wave[:1], wave[1:] - PRE_EMPHASIS * wave[:-1]])
    hops = 1 + (len(emphasised) - WINDOW) // HOP
    frames = emphasised[np.arange(hops)[:, None] * HOP + np.arange(WINDOW)[None]] * np.hamming(WINDOW)[None]
    power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2
    log_mel = np.log(np.maximum(power @ mel_filters().T, 1e-5))
    cepstra = dct(log_mel, type=2, norm="ortho", axis=1)[:, :N_CEPSTRA]
    cepstra *= 1.0 + LIFTER / 2.0 * np.sin(np.pi * np.arange(N_CEPSTRA) / LIFTER)
    cepstra -= cepstra.mean(0)
    padded = np.pad(cepstra, ((3, 3), (0, 0)), mode="edge")
    at = lambda k: padded[3 + k:3 + k + hops]  # noqa: E731
    deltas = at(2) - at(-2)
    double = (at(3) - at(-1)) - (at(1) - at(-3))
    return np.stack([cepstra, deltas, double], axis=1)


def state_log_likelihoods(features: np.ndarray, model: AcousticModel) -> np.ndarray:
    """Log-likelihood of each CI phone state -> [H, P, 3]. features: [H, 3, 13].

    Each stream's Gaussians are evaluated at once (|x - m|^2_p expanded into matrix products); the state
    mixtures are then one batched product per stream in probability space, each codebook scaled by its best
    Gaussian so nothing underflows; the streams' logs are summed. (`tests/test_phone_posteriors.py` checks it
    against the log-sum-exp written out per hop, phone, state and stream.)"""
    features = np.asarray(features, np.float64)
    if features.ndim != 3 or features.shape[1:] != (3, N_CEPSTRA):
        raise ValueError(f"features must be [H, 3, {N_CEPSTRA}], got {list(features.shape)}")
    hops, phones, gaussians = len(features), len(model.phones), model.means.shape[2]
    weights = np.exp(model.log_weights).astype(np.float32).transpose(2, 0, 3, 1)  # [3 streams, P, G, 3 states]
    total = np.zeros((hops, phones, 3))
    for stream in range(3):
        # float32 for the [H, P G] arrays, in blocks of hops that stay in cache (large temporaries cost more in
        # page faults than in arithmetic here); the error is ~1e-4 in a log-likelihood
        m = model.means[:, stream].reshape(-1, N_CEPSTRA)  # [P G, 13]
        p = model.precisions[:, stream].reshape(-1, N_CEPSTRA)
        constant = (model.log_norm[:, stream].reshape(-1) - 0.5 * (m * m * p).sum(1)).astype(np.float32)  # [P G]
        half_precision, weighted_means = (-0.5 * p.T).astype(np.float32), (m * p).T.astype(np.float32)  # [13, P G]
        for start in range(0, hops, _HOP_BLOCK):
            x = features[start:start + _HOP_BLOCK, stream].astype(np.float32)  # [h, 13]
            log_gauss = (x * x) @ half_precision
            log_gauss += x @ weighted_means
            log_gauss += constant[None]
            log_gauss = log_gauss.reshape(len(x), phones, gaussians)
            peak = log_gauss.max(-1)  # [h, P]
            log_gauss -= peak[..., None]
            scaled = np.exp(log_gauss, out=log_gauss).transpose(1, 0, 2)  # [P, h, G]
            mixed = np.matmul(scaled, weights[stream]).transpose(1, 0, 2)  # [h, P, 3]
            total[start:start + len(x)] += peak[..., None] + np.log(np.maximum(mixed.astype(np.float64), 1e-300))
    return total


def hop_posteriors(waveform: np.ndarray, sample_rate: int, model: AcousticModel | None = None) -> np.ndarray:
    """Mono audio [S] at `sample_rate` -> phone posteriors [H, P] per 10 ms hop (rows sum to 1), phones in
    `model.phones` order. Hop h is centred at (160 h + 205) / 16000 s."""
    from audio.io import resample_to

    model = model or load_acoustic_model()
    wave = np.asarray(waveform, np.float64)
    if wave.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {wave.shape}")
    if int(sample_rate) != SAMPLE_RATE:
        wave = resample_to(wave, int(sample_rate), SAMPLE_RATE)
    states = state_log_likelihoods(cepstral_features(wave), model)  # [H, P, 3]
    peak = states.max(axis=(1, 2), keepdims=True)
    per_phone = np.exp(states - peak).sum(-1)  # [H, P]
    return per_phone / per_phone.sum(1, keepdims=True)


def hop_centres_s(hops: int) -> np.ndarray:
    """Centre time in seconds of each of `hops` hops of `hop_posteriors` -> [H]."""
    return (np.arange(int(hops)) * HOP + WINDOW / 2.0) / SAMPLE_RATE
