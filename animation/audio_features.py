"""Speaker-normalised audio features per video frame, for the audio -> mouth regression.

Per 10 ms hop (25 ms Hann window): log energies of `num_bands` mel bands (80-7600 Hz) and the log frame energy.
They are averaged over the hops that fall inside each video frame's span [t / fps, (t + 1) / fps), then
normalised per utterance (every column to mean 0, variance 1 over the clip). The normalisation removes the
recording gain, the microphone's colour and much of the speaker's voice, so a model fitted on one person's
training video also reads another voice (our TTS) or a quieter recording; what is left is how the spectrum
moves, which is what the mouth does. Context is added by `with_context`: the same features at frame offsets.

`viseme_posteriors` adds what sound it is: the acoustic model's phone posteriors (`audio.phone_posteriors`)
summed per viseme class, averaged per video frame the same way (not normalised: they are probabilities, already
independent of gain and largely of the speaker). `mouth_features` puts both side by side.

`frame_features` is pure numpy, about 5 ms per second of audio; `viseme_posteriors` about 7 ms (scipy resamples
to 16 kHz and takes the DCT).
"""
from __future__ import annotations

import numpy as np

HOP_S = 0.01
WINDOW_S = 0.025
MIN_HZ = 80.0
MAX_HZ = 7600.0
_LOG_FLOOR = 1e-10


def mel_filterbank(sample_rate: int, n_fft: int, num_bands: int, min_hz: float = MIN_HZ,
                   max_hz: float = MAX_HZ) -> np.ndarray:
    """Triangular mel filters -> [num_bands, n_fft // 2 + 1] (peak 1, HTK mel scale)."""
    if num_bands < 1 or n_fft < 2 or not 0 <= min_hz < max_hz:
        raise ValueError(f"need num_bands >= 1, n_fft >= 2, 0 <= min_hz < max_hz; got {num_bands}, {n_fft}, "
                         f"{min_hz}, {max_hz}")
    max_hz = min(max_hz, sample_rate / 2.0)
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    to_hz = lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0)  # noqa: E731
    edges = to_hz(np.linspace(to_mel(min_hz), to_mel(max_hz), num_bands + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    filters = np.zeros((num_bands, len(bins)))
    for band in range(num_bands):
        low, centre, high = edges[band:band + 3]
        rising = (bins - low) / max(centre - low, 1e-9)
        falling = (high - bins) / max(high - centre, 1e-9)
        filters[band] = np.clip(np.minimum(rising, falling), 0.0, None)
    return filters


def hop_features(waveform: np.ndarray, sample_rate: int, num_bands: int) -> np.ndarray:
    """Log mel band energies and log energy per 10 ms hop -> [H, num_bands + 1]; hop h starts at h x 10 ms."""
    wave = np.asarray(waveform, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {wave.shape}")
    if not 8000 <= sample_rate <= 192000:
        raise ValueError(f"sample_rate must be 8000-192000 Hz, got {sample_rate}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("waveform contains NaN or infinite samples")
    hop = int(round(HOP_S * sample_rate))
    window = int(round(WINDOW_S * sample_rate))
    n_fft = 1 << int(np.ceil(np.log2(window)))
    count = max(1, int(np.ceil(len(wave) / hop)))
    padded = np.concatenate([wave, np.zeros(window + hop)])
    starts = np.arange(count)[:, None] * hop
    frames = padded[starts + np.arange(window)[None]] * np.hanning(window)[None]  # [H, window]
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    bands = np.log(power @ mel_filterbank(sample_rate, n_fft, num_bands).T + _LOG_FLOOR)
    energy = np.log(np.mean(frames * frames, axis=1) + _LOG_FLOOR)
    return np.concatenate([bands, energy[:, None]], axis=1)


def frame_features(waveform: np.ndarray, sample_rate: int, fps: float, n_frames: int,
                   num_bands: int = 8) -> np.ndarray:
    """Per-utterance normalised features of each video frame -> [T, num_bands + 1] (see the module docstring).

    waveform: [S] mono, starting at frame 0. Frames past the end of the audio repeat the last hop's features
    (that is silence padding when the audio is shorter than the video).
    """
    if not fps > 0 or int(n_frames) < 1:
        raise ValueError(f"fps must be positive and n_frames >= 1, got {fps} and {n_frames}")
    hops = hop_features(waveform, sample_rate, num_bands)  # [H, D]
    features = _frames_mean(hops, (np.arange(len(hops)) + 0.5) * HOP_S, fps, int(n_frames))
    scale = features.std(axis=0)
    return (features - features.mean(axis=0)) / np.where(scale > 1e-6, scale, 1.0)


def frames_audio(waveform: np.ndarray, sample_rate: int, fps: float, frames: np.ndarray) -> np.ndarray:
    """The samples [S'] of `waveform` (starting at frame 0) under consecutive video frames [n], frame f spanning
    [f / fps, (f + 1) / fps)."""
    per_frame = sample_rate / float(fps)
    return np.asarray(waveform)[int(round(frames[0] * per_frame)):int(round((frames[-1] + 1) * per_frame))]


def with_context(features: np.ndarray, offsets) -> np.ndarray:
    """Features at frame offsets, side by side -> [T, len(offsets) x D]; edges repeat the first/last frame.

    features: [T, D]; offsets: ints, e.g. range(-3, 4) (positive = later frames).
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be [T, D] with T > 0, got {features.shape}")
    offsets = [int(o) for o in offsets]
    if not offsets:
        raise ValueError("offsets must not be empty")
    index = np.clip(np.arange(len(features))[:, None] + np.array(offsets)[None], 0, len(features) - 1)  # [T, O]
    return features[index].reshape(len(features), -1)


def _frames_mean(values: np.ndarray, centres_s: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Per-hop values [H, D] averaged over the hops whose centre (seconds, [H]) falls in each frame -> [T, D];
    frames with no hop (past the end) repeat the last hop's values."""
    owner = np.floor(np.asarray(centres_s) * fps).astype(np.int64)
    keep = owner < n_frames
    sums = np.zeros((n_frames, values.shape[1]))
    counts = np.zeros(n_frames)
    np.add.at(sums, owner[keep], values[keep])
    np.add.at(counts, owner[keep], 1.0)
    out = sums / np.maximum(counts, 1.0)[:, None]
    out[counts == 0] = values[-1]
    return out


def viseme_posteriors(waveform: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Probability of each viseme class (`animation.visemes.VISEMES` order) per video frame -> [T, 15], from the
    acoustic model's phone posteriors (`audio.phone_posteriors.hop_posteriors`); rows sum to 1."""
    from audio.phone_posteriors import hop_centres_s, hop_posteriors, load_acoustic_model
    from animation.visemes import VISEMES, viseme_class_of

    if not fps > 0 or int(n_frames) < 1:
        raise ValueError(f"fps must be positive and n_frames >= 1, got {fps} and {n_frames}")
    model = load_acoustic_model()
    grouping = np.zeros((len(model.phones), len(VISEMES)))  # [P, 15]: each phone to its viseme class
    for row, phone in enumerate(model.phones):
        grouping[row, VISEMES.index(viseme_class_of(phone, "arpabet"))] = 1.0
    phones = hop_posteriors(waveform, sample_rate, model)  # [H, P]
    return _frames_mean(phones @ grouping, hop_centres_s(len(phones)), fps, int(n_frames))


def mouth_features(waveform: np.ndarray, sample_rate: int, fps: float, n_frames: int, num_bands: int = 8,
                   posteriors: bool = True) -> np.ndarray:
    """The mouth model's audio inputs per video frame -> [T, num_bands + 1 (+ 15)]: `frame_features` (the log
    energy at column num_bands), then `viseme_posteriors` when `posteriors`."""
    features = frame_features(waveform, sample_rate, fps, n_frames, num_bands)
    if not posteriors:
        return features
    return np.concatenate([features, viseme_posteriors(waveform, sample_rate, fps, n_frames)], axis=1)
