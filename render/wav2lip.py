"""Optional Wav2Lip lip-sync post-process for rendered video frames, with local weights (never downloaded).

What it is: `Wav2Lip.load()` reads upstream's generator weights (wav2lip_gan or wav2lip) into
`render.wav2lip_arch.Wav2LipNet`; `mel_spectrogram(waveform, sample_rate)` and `mel_windows(mel, fps, frames)`
turn the speech into one [80, 16] mel window per video frame; `Wav2Lip.sync(frames, boxes, mels, strength)`
redraws the mouth in each frame's face box and blends the lower half of the box back in.

Model folder (default `models/wav2lip/`, or `$TALKING_AVATAR_WAV2LIP_DIR`, or a path given by the caller):
    *.safetensors   upstream's checkpoint converted to safetensors (wav2lip_gan.pth -> wav2lip_gan.safetensors,
                    once: `python app.py models convert wav2lip_gan.pth models/wav2lip/wav2lip_gan.safetensors`;
                    the project never unpickles files). Upstream stores {"state_dict": ...} with DataParallel's
                    "module." key prefix; both prefixes ("state_dict.", "module.") are stripped here. Several
                    files: the caller's `name` (file name or stem) wins, else the last in sorted order
                    (wav2lip_gan over wav2lip: better looking teeth and lips, slightly weaker sync, says upstream).
    Missing BatchNorm `num_batches_tracked` counters are filled with 0 (unused at inference); every other key
    and shape must match (ValueError naming the first few otherwise).

What matches upstream (Rudrabha/Wav2Lip inference.py, audio.py, hparams.py): the network (bit-identical outputs on
random weights, see `render.wav2lip_arch`); the mel spectrogram (16 kHz, pre-emphasis 0.97, centred STFT with
reflect padding as librosa 0.7 / 0.8 (upstream's pinned librosa), n_fft 800, hop 200, periodic Hann window of 800,
80 Slaney mel bands 55-7600 Hz with Slaney area normalisation, 20 log10(max(1e-5, x)) - 20 dB, clipped symmetric
normalisation to [-4, 4]; one column per 12.5 ms, 1 + samples // 200 columns); the mel windows (start column
int(frame * (80. / fps)), 16 columns, windows past the end clamped to the last full window as upstream's current
inference.py); the face input (crop resized to 96x96 with OpenCV's bilinear resize, BGR channel order as OpenCV
reads video, so the real weights see what they were trained on; lower half of the first copy zeroed; 6 channels
= masked + reference; / 255); the output (sigmoid * 255, BGR, resized back to the box bilinearly).
What differs, on purpose: the reference face is the same frame's crop (upstream's too, for a video; our frames
already show the right head pose); only the LOWER half of the box is pasted, with a feathered mask (fading in
from the box's middle row and from its left, right and bottom edges) mixed by `strength`, where upstream pastes
the whole 96x96 output hard into the box, leaving a visible seam and a blurrier upper face; the output is
resized as float and rounded once (upstream truncates to uint8 first); boxes are given by the caller (no face
detector, no box smoothing, no padding: add upstream's 10 px below the chin to the box yourself); a box partly
outside the frame is clipped to it, as upstream clips the detector's box (the crop then shows the face
off-centre, as upstream's does); a frame whose box is all NaN, or lies outside the frame, passes unchanged.
Resampling to 16 kHz (only when the caller's audio is not 16 kHz): scipy's polyphase `resample_poly` with a
windowed-sinc filter built from resampy's "kaiser_best" parameters, which upstream's librosa.load uses (mels of
resampled speech within 1e-3 (44.1 kHz) to 5e-3 (48 kHz) of upstream's, the last column aside; scipy's default
filter left ~0.4 in the top band); linear interpolation if scipy is missing. The STFT is float64 throughout
(librosa 0.7 stored it as complex64: ~1e-7). Newer librosa (>= 0.10) pads the STFT with zeros instead of
reflecting: that would change the first and last two columns only; we keep what the weights were trained with.
Checked outside this repo against upstream's audio.py (librosa 0.8.1, resampy 0.4.3): max |difference| 1.5e-7
at 16 kHz; against upstream's inference steps with its own network on random weights: the same 96x96 faces
(7.6e-5 of 255), and, where the mask is 1, the same pasted pixels to within 2 levels (our rounding vs its
truncation).
Speed on this CPU (2 shared cores, float32, real-size network, random weights, batches of 16 frames of 256x256
with 120 px boxes): 0.044 s per frame with torch's default 2 threads (0.087 CPU-seconds), 0.08 s on one thread;
about 0.7 GB peak. Loading the 145 MB of weights: ~0.1 s (memory-mapped).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from render.local_weights import (check_fits, find_safetensors, keep_prefixed, model_dir, pickle_hint,
                                  read_safetensors)
from render.wav2lip_arch import FACE_SIZE, MEL_BANDS, MEL_WINDOW, Wav2LipConfig, Wav2LipNet

__all__ = ["Wav2Lip", "Wav2LipConfig", "Wav2LipNet", "default_model_dir", "find_weights", "mel_spectrogram",
           "mel_windows", "missing_message"]

MODEL_DIR_ENV = "TALKING_AVATAR_WAV2LIP_DIR"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "wav2lip"
CHECKPOINT_PREFIXES = ("state_dict.", "module.")  # upstream's {"state_dict": {"module.…": …}}, flattened
PREFERRED_STEMS = ("wav2lip_gan", "wav2lip")
WIDEST_KEY = "face_encoder_blocks.6.0.conv_block.0.weight"  # [512w, 512w, 3, 3]: the width is read off it
DEFAULT_FEATHER = 0.12  # width of the mask's soft edge, as a fraction of the box's shorter side

# Upstream's hparams.py (audio part).
SAMPLE_RATE = 16000
N_FFT = 800
HOP_LENGTH = 200
WINDOW_LENGTH = 800
PREEMPHASIS = 0.97
MEL_FMIN, MEL_FMAX = 55.0, 7600.0
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0  # mels in [-4, 4]
MEL_COLUMNS_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 80: upstream's "80." in inference.py
# resampy's precomputed "kaiser_best" filter (librosa.load's default resampler in upstream's librosa 0.7), fitted
# to resampy 0.4.3's kaiser_best.npz (to 3e-10): zero crossings per wing, roll-off (of Nyquist), Kaiser beta.
RESAMPLE_ZERO_CROSSINGS = 50
RESAMPLE_ROLLOFF = 0.9173473712608761
RESAMPLE_KAISER_BETA = 12.984585866139945


# ---- audio: upstream's mel spectrogram and per-frame windows --------------------------------------------------

@lru_cache(maxsize=8)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """[2 * 50 * max(up, down) + 1] low-pass FIR at the rate up * input rate: a windowed sinc with resampy's
    "kaiser_best" parameters (what upstream's librosa.load resamples with): 50 zero crossings of the slower rate,
    cut-off at 0.9173 of its Nyquist frequency, Kaiser window beta 12.98; unit gain at 0 Hz."""
    from scipy.signal import firwin

    widest = max(up, down)
    return firwin(2 * RESAMPLE_ZERO_CROSSINGS * widest + 1, RESAMPLE_ROLLOFF / widest,
                  window=("kaiser", RESAMPLE_KAISER_BETA))


def resample(waveform: np.ndarray,  # [S] float
             sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[S] -> [ceil(S * target_rate / sample_rate)] float64. With scipy: polyphase filtering (`resample_poly`)
    with `_resampling_filter` (what upstream's librosa.load does, to ~1e-3 in the mels); without: linear
    interpolation (no anti-aliasing)."""
    waveform = np.asarray(waveform, np.float64)
    if sample_rate == target_rate:
        return waveform
    try:
        from scipy.signal import resample_poly
    except ImportError:  # pragma: no cover - scipy is a project requirement
        count = math.ceil(len(waveform) * target_rate / sample_rate)
        return np.interp(np.arange(count) * (sample_rate / target_rate), np.arange(len(waveform)), waveform)
    common = math.gcd(int(sample_rate), int(target_rate))
    up, down = int(target_rate) // common, int(sample_rate) // common
    return resample_poly(waveform, up, down, window=_resampling_filter(up, down))


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear to 1 kHz (15 mels), logarithmic above."""
    hz = np.asarray(hz, np.float64)
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, np.float64)
    return np.where(mels >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), mels * (200.0 / 3.0))


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, bands: int = MEL_BANDS,
                   fmin: float = MEL_FMIN, fmax: float = MEL_FMAX) -> np.ndarray:
    """[bands, n_fft // 2 + 1] triangular filters on the Slaney mel scale, each scaled to unit area in Hz
    ("slaney" normalisation), as librosa.filters.mel; rounded to float32 as librosa stores them."""
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)  # [F]
    edges_hz = _slaney_mel_to_hz(np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), bands + 2))
    left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]  # [bands, 1] each
    rising = (bin_hz[None] - left) / (centre - left)
    falling = (right - bin_hz[None]) / (right - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))  # [bands, F]
    return (triangles * (2.0 / (right - left))).astype(np.float32).astype(np.float64)


def mel_spectrogram(waveform: np.ndarray,  # [S] float, mono, in [-1, 1]
                    sample_rate: int) -> np.ndarray:
    """Upstream's audio.melspectrogram: [S] -> [80, 1 + S16 // 200] float32 in [-4, 4] (S16 = samples at
    16 kHz; resampled first when `sample_rate` differs). 1 s gives [80, 81]; silence gives -4 everywhere."""
    waveform = np.asarray(waveform)
    if waveform.ndim != 1 or waveform.size == 0 or not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(f"waveform must be a non-empty float [S] array (mono), got {waveform.dtype} "
                         f"{waveform.shape}")
    if not np.all(np.isfinite(waveform)):
        raise ValueError("waveform has NaN or infinite samples")
    if int(sample_rate) != sample_rate or sample_rate < 1000:
        raise ValueError(f"sample_rate must be a whole number of Hz >= 1000, got {sample_rate}")
    signal = resample(waveform, int(sample_rate))  # [S16] float64
    emphasised = np.concatenate([signal[:1], signal[1:] - PREEMPHASIS * signal[:-1]])  # lfilter([1, -k], [1])
    padded = np.pad(emphasised, N_FFT // 2, mode="reflect")  # centred frames, librosa <= 0.9's padding
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]  # [M, 800]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WINDOW_LENGTH) / WINDOW_LENGTH)  # periodic, = n_fft here
    magnitude = np.abs(np.fft.rfft(frames * hann, n=N_FFT, axis=1))  # [M, 401]
    mel = mel_filterbank() @ magnitude.T  # [80, M]
    decibels = 20.0 * np.log10(np.maximum(10.0 ** (MIN_LEVEL_DB / 20.0), mel)) - REF_LEVEL_DB
    normalised = 2.0 * MAX_ABS_VALUE * (decibels - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return np.clip(normalised, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_windows(mel: np.ndarray,  # [80, M] from mel_spectrogram
                fps: float, num_frames: int) -> np.ndarray:
    """One [80, 16] window per video frame -> [num_frames, 80, 16] float32. Frame t starts at column
    int(t * (80. / fps)) (upstream's expression, float rounding included); a window that would run past the
    end is the last full one, mel[:, M - 16:], as upstream. A mel shorter than 16 columns is padded on the right
    with silence (-4) first (upstream would fail)."""
    mel = np.asarray(mel, np.float32)
    if mel.ndim != 2 or mel.shape[0] != MEL_BANDS or mel.shape[1] == 0:
        raise ValueError(f"mel must be [{MEL_BANDS}, M] with M > 0, got {mel.shape}")
    if not fps > 0 or not math.isfinite(fps) or int(num_frames) != num_frames or num_frames < 0:
        raise ValueError(f"fps must be positive and num_frames a whole number >= 0, got {fps}, {num_frames}")
    if mel.shape[1] < MEL_WINDOW:
        mel = np.pad(mel, ((0, 0), (0, MEL_WINDOW - mel.shape[1])), constant_values=-MAX_ABS_VALUE)
    last_start = mel.shape[1] - MEL_WINDOW
    step = MEL_COLUMNS_PER_SECOND / fps
    starts = [min(int(frame * step), last_start) for frame in range(int(num_frames))]
    windows = np.empty((len(starts), MEL_BANDS, MEL_WINDOW), np.float32)
    for index, start in enumerate(starts):
        windows[index] = mel[:, start:start + MEL_WINDOW]
    return windows


# ---- weights --------------------------------------------------------------------------------------------------

def default_model_dir() -> Path:
    return model_dir(MODEL_DIR_ENV, DEFAULT_MODEL_DIR)


def find_weights(where: str | Path | None = None, name: str | None = None) -> Path | None:
    """The safetensors file at `where` (a file, or a folder: default `default_model_dir()`): in a folder the one
    called `name` (file name or stem), else wav2lip_gan, else wav2lip, else the last in sorted order; None if
    there is none. Cheap: nothing is read."""
    return find_safetensors(Path(where) if where is not None else default_model_dir(), "Wav2Lip", name,
                            PREFERRED_STEMS)


def missing_message(where: str | Path | None = None) -> str:
    """One line: where the weights were looked for, what to put there, and that nothing is downloaded."""
    where = Path(where).expanduser() if where is not None else default_model_dir()
    return (f"Wav2Lip weights not found in {where}{pickle_hint(where)}: put upstream wav2lip_gan (or wav2lip) "
            f"converted to safetensors there, e.g. {where / 'wav2lip_gan.safetensors'} (python app.py models "
            f"convert wav2lip_gan.pth {where / 'wav2lip_gan.safetensors'}; or set {MODEL_DIR_ENV}). Nothing is "
            f"downloaded.")


def strip_checkpoint_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keep the "state_dict." entries if there are any (a whole flattened checkpoint), without the prefix; then
    drop DataParallel's "module." from every key that has it. Plain keys pass unchanged."""
    state = keep_prefixed(state, CHECKPOINT_PREFIXES[:1])
    module = CHECKPOINT_PREFIXES[1]
    return {(key[len(module):] if key.startswith(module) else key): value for key, value in state.items()}


def infer_config(state: dict[str, Tensor]) -> Wav2LipConfig:
    """The channel width read off the widest conv (512 channels at width 1.0); ValueError if it is absent."""
    widest = state.get(WIDEST_KEY)
    if widest is None or widest.ndim != 4:
        raise ValueError(f"not Wav2Lip generator weights: no 4-D {WIDEST_KEY}; first keys: {sorted(state)[:4]}")
    return Wav2LipConfig(width=int(widest.shape[0]) / 512)


def check_network_fits(network: Wav2LipNet, state: dict[str, Tensor], source: str) -> None:
    """ValueError naming the first missing / unexpected / other-shaped keys, if `state` does not fit `network`."""
    check_fits(network.state_dict(), state, source, f"a Wav2Lip generator of width {network.config.width:g}")


def lower_half_mask(height: int, width: int, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """[height, width] float32 weights for a box: 0 on and above the middle (rows whose centre is in the upper
    half), rising smoothly to 1 over `feather` x the shorter side below the middle and inside the left, right
    and bottom edges."""
    soft = max(1.0, feather * min(height, width))
    rows = np.arange(height) + 0.5
    cols = np.arange(width) + 0.5
    vertical = np.clip(np.minimum(rows - height / 2.0, height - rows) / soft, 0.0, 1.0)
    horizontal = np.clip(np.minimum(cols, width - cols) / soft, 0.0, 1.0)

    def smoothstep(t: np.ndarray) -> np.ndarray:
        return t * t * (3.0 - 2.0 * t)

    return (smoothstep(vertical)[:, None] * smoothstep(horizontal)[None, :]).astype(np.float32)


def pixel_boxes(boxes: np.ndarray,  # [B, 4] float (x0, y0, x1, y1); all-NaN rows = no face
                height: int, width: int) -> list[tuple[int, int, int, int] | None]:
    """Boxes rounded to whole pixels and clipped to the frame: (x0, y0, x1, y1) or None (no face, or less than
    2x2 pixels left inside the frame)."""
    result: list[tuple[int, int, int, int] | None] = []
    for box in boxes:
        if np.all(np.isnan(box)):
            result.append(None)
            continue
        x0, x1 = (int(round(min(max(v, 0.0), width))) for v in (box[0], box[2]))
        y0, y1 = (int(round(min(max(v, 0.0), height))) for v in (box[1], box[3]))
        result.append((x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None)
    return result


class Wav2Lip:
    """Lip sync for video frames: `Wav2Lip.load()`, then `sync(frames, boxes, mels, strength)`."""

    def __init__(self, network: Wav2LipNet, device: str | torch.device = "cpu", weights: Path | None = None) -> None:
        self.device, self.weights = torch.device(device), weights
        self.network = network.to(device=self.device, dtype=torch.float32).eval()
        self.config = network.config

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def describe(self) -> str:
        source = self.weights.name if self.weights is not None else "weights from memory"
        return (f"Wav2Lip {FACE_SIZE}px (width {self.config.width:g}), {self.parameter_count / 1e6:.2f} M "
                f"parameters, {source}")

    @staticmethod
    def from_state_dict(state: dict[str, Tensor], config: Wav2LipConfig | None = None,
                        device: str | torch.device = "cpu", weights: Path | None = None) -> "Wav2Lip":
        """Build from a state dict (upstream key names, optional "state_dict." / "module." prefixes); the width
        is inferred when `config` is None. ValueError when the weights do not fit."""
        state = strip_checkpoint_prefix(state)
        source = weights.name if weights is not None else "the state dict"
        try:
            config = config or infer_config(state)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
        with torch.device("meta"):  # shapes only: the real tensors come from `state`
            network = Wav2LipNet(config)
        state = dict(state)
        for key in network.state_dict():
            if key.endswith(".num_batches_tracked") and key not in state:  # a training counter; unused here
                state[key] = torch.zeros((), dtype=torch.long)
        check_network_fits(network, state, source)
        network.load_state_dict({key: value if key.endswith("num_batches_tracked") else value.float()
                                 for key, value in state.items()}, strict=True, assign=True)
        return Wav2Lip(network, device, weights)

    @staticmethod
    def load(folder: str | Path | None = None, name: str | None = None,
             device: str | torch.device = "cpu") -> "Wav2Lip":
        """Load from `folder` (or a .safetensors file; default `default_model_dir()`); FileNotFoundError saying
        what to put there when no weights are; ValueError when they are not a Wav2Lip generator's."""
        checkpoint = find_weights(folder, name)
        if checkpoint is None:
            raise FileNotFoundError(missing_message(folder))
        state = read_safetensors(checkpoint)
        return Wav2Lip.from_state_dict(state, None, device, checkpoint)

    def predict_faces(self, faces_bgr: np.ndarray,  # [N, 96, 96, 3] uint8 BGR
                      mels: np.ndarray,  # [N, 80, 16] float
                      batch_size: int = 16) -> np.ndarray:
        """The network as upstream's inference runs it: lower half of a copy blacked out, [masked, reference] as
        6 channels / 255 -> [N, 96, 96, 3] float32 BGR in [0, 255] (not rounded)."""
        if faces_bgr.ndim != 4 or faces_bgr.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or faces_bgr.dtype != np.uint8:
            raise ValueError(f"faces must be uint8 [N, {FACE_SIZE}, {FACE_SIZE}, 3], got {faces_bgr.dtype} "
                             f"{faces_bgr.shape}")
        if mels.shape != (len(faces_bgr), MEL_BANDS, MEL_WINDOW):
            raise ValueError(f"mels must be [{len(faces_bgr)}, {MEL_BANDS}, {MEL_WINDOW}], got {mels.shape}")
        predicted = np.empty(faces_bgr.shape, np.float32)
        step = max(1, int(batch_size))
        with torch.inference_mode():
            for start in range(0, len(faces_bgr), step):
                reference = torch.from_numpy(faces_bgr[start:start + step]).to(self.device)
                reference = reference.permute(0, 3, 1, 2).float() / 255.0  # [b, 3, 96, 96]
                masked = reference.clone()
                masked[:, :, FACE_SIZE // 2:] = 0.0
                faces = torch.cat((masked, reference), dim=1)  # [b, 6, 96, 96]
                audio = torch.from_numpy(np.ascontiguousarray(mels[start:start + step], np.float32))
                audio = audio.to(self.device)[:, None]  # [b, 1, 80, 16]
                output = self.network(audio, faces) * 255.0  # [b, 3, 96, 96]
                predicted[start:start + len(faces)] = output.permute(0, 2, 3, 1).cpu().numpy()
        return predicted

    def sync(self, frames: np.ndarray,  # [B, H, W, 3] uint8 RGB
             boxes: np.ndarray,  # [B, 4] float pixel (x0, y0, x1, y1); a row of NaN = no face in that frame
             mels: np.ndarray,  # [B, 80, 16] float, from mel_windows
             strength: float = 1.0, batch_size: int = 16, feather: float = DEFAULT_FEATHER) -> np.ndarray:
        """-> [B, H, W, 3] uint8 RGB: each frame's mouth redrawn for its mel window; only the lower half of the
        box changes (feathered), mixed by `strength` (0 = the frames unchanged, 1 = the network's mouth). Boxes
        are rounded to whole pixels and clipped to the frame; the network sees the crop in BGR order, as upstream
        (OpenCV frames), and its output is turned back to RGB."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB [B, H, W, 3], got {frames.dtype} {frames.shape}")
        count, height, width = frames.shape[:3]
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.shape != (count, 4):
            raise ValueError(f"boxes must be [B, 4] = [{count}, 4] (x0, y0, x1, y1), got {boxes.shape}")
        no_face = np.all(np.isnan(boxes), axis=1)
        faces = boxes[~no_face]
        if not np.all(np.isfinite(faces)) or np.any(faces[:, 2] <= faces[:, 0]) or np.any(faces[:, 3] <= faces[:, 1]):
            raise ValueError("boxes must be finite with x1 > x0 and y1 > y0 (or all NaN for a frame without a face)")
        mels = np.asarray(mels)
        if mels.shape != (count, MEL_BANDS, MEL_WINDOW) or not np.all(np.isfinite(mels)):
            raise ValueError(f"mels must be finite [B, {MEL_BANDS}, {MEL_WINDOW}] = [{count}, {MEL_BANDS}, "
                             f"{MEL_WINDOW}], got {mels.shape}")
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if not 0.0 < float(feather) <= 0.5:
            raise ValueError(f"feather must be in (0, 0.5], got {feather}")
        output = frames.copy()
        placed = [(index, box) for index, box in enumerate(pixel_boxes(boxes, height, width)) if box is not None]
        if strength == 0.0 or not placed:
            return output
        crops = np.stack([cv2.resize(np.ascontiguousarray(frames[index, y0:y1, x0:x1, ::-1]),  # RGB -> BGR
                                     (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR)
                          for index, (x0, y0, x1, y1) in placed])  # [N, 96, 96, 3] uint8 BGR
        predicted = self.predict_faces(crops, mels[[index for index, _ in placed]], batch_size)
        for (index, (x0, y0, x1, y1)), face in zip(placed, predicted):
            mouth = cv2.resize(face, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)[..., ::-1]  # RGB float
            weight = lower_half_mask(y1 - y0, x1 - x0, feather)[..., None] * float(strength)
            original = frames[index, y0:y1, x0:x1].astype(np.float32)
            mixed = original + weight * (mouth - original)
            output[index, y0:y1, x0:x1] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return output
