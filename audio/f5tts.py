"""Optional F5-TTS-style backend: zero-shot voice cloning with local weights (never downloaded).

Model folder (default `models/f5-tts/`, or `$TALKING_AVATAR_F5TTS_DIR`, or a path given by the caller):
    config.json               {"arch": {...}, "mel_spec": {...}, "vocoder": {...}} (fields: `F5Config`)
    vocab.txt                 one token (character) per line; line i = token id i + 1 (0 = padding/filler)
    model*.safetensors        the DiT weights (keys of `DiT.state_dict()`, optional "ema_model.transformer."
                              prefix as in upstream checkpoints)
    vocoder*.safetensors      the vocoder weights (keys of `Vocoder.state_dict()`)

What matches upstream F5-TTS (SWivid/F5-TTS, "F5TTS_Base"): the method and the data flow. Characters are
embedded, refined by ConvNeXt-V2 blocks and padded with filler to the mel length; the input to the
transformer is [noisy mel, masked reference mel, text] projected to `dim` plus a convolutional position
embedding; DiT blocks with adaLN-Zero conditioning on the flow time; conditional flow matching sampled with
Euler steps, sway sampling and classifier-free guidance; output length = reference frames x (reference +
new text bytes) / reference text bytes; log-mel features (n_mels, hop, n_fft from the config); a Vocos-style
vocoder (ConvNeXt backbone + ISTFT head). The config field names follow upstream's YAML (dim, depth, heads,
ff_mult, text_dim, conv_layers, n_mel_channels, hop_length, ...).
What does NOT match: parameter names and some details (no rotary embeddings, no GRN in ConvNeXt, plain
torch attention, our vocoder's layer layout differs from Vocos'), so upstream `model_1250000.safetensors`
and `charactr/vocos-mel-24khz` weights do NOT load here as is: `load` reports the missing/unexpected keys.
A key-renaming adapter for the real checkpoints is future work. No weights ship with the project (upstream
F5-TTS weights are CC-BY-NC). Tests build a tiny model, save it as safetensors and run it end to end.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from audio.speech import Speech
from audio.tts import SpeakOptions

MODEL_DIR_ENV = "TALKING_AVATAR_F5TTS_DIR"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "f5-tts"
CHARS_PER_SECOND = 14.0  # speaking rate assumed when the reference has no transcript
MAX_SECONDS = 30.0  # reference + generated audio, as upstream (longer scripts: call once per sentence)


@dataclass(frozen=True)
class ArchConfig:
    dim: int = 1024
    depth: int = 22
    heads: int = 16
    ff_mult: int = 2
    text_dim: int = 512
    conv_layers: int = 4


@dataclass(frozen=True)
class MelConfig:
    target_sample_rate: int = 24000
    n_mel_channels: int = 100
    hop_length: int = 256
    win_length: int = 1024
    n_fft: int = 1024


@dataclass(frozen=True)
class VocoderConfig:
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8


@dataclass(frozen=True)
class SampleOptions:
    """Per-call sampling options: Euler steps, classifier-free guidance strength, sway coefficient, seed."""

    steps: int = 32
    cfg_strength: float = 2.0
    sway: float = -1.0
    seed: int = 0


@dataclass(frozen=True)
class F5Config:
    arch: ArchConfig
    mel: MelConfig
    vocoder: VocoderConfig

    @staticmethod
    def from_dict(data: dict) -> "F5Config":
        def build(kind, values):
            known = {f.name for f in fields(kind)}
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"F5-TTS config: unknown {kind.__name__} fields {sorted(unknown)}")
            return kind(**values)

        return F5Config(build(ArchConfig, data.get("arch", {})), build(MelConfig, data.get("mel_spec", {})),
                        build(VocoderConfig, data.get("vocoder", {})))

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"arch": asdict(self.arch), "mel_spec": asdict(self.mel), "vocoder": asdict(self.vocoder)}


# ---- model --------------------------------------------------------------------------------------------

class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k=7) + LayerNorm + pointwise MLP, residual; x: [B, L, C]."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1, self.pw2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        return x + self.pw2(nn.functional.gelu(self.pw1(self.norm(y))))


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of flow times t [B] in [0, 1] -> [B, dim] (scaled by 1000 as upstream)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angles = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: the time embedding sets shift/scale/gate of attention and FFN."""

    def __init__(self, dim: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.ff = nn.Sequential(nn.Linear(dim, dim * ff_mult), nn.GELU(approximate="tanh"),
                                nn.Linear(dim * ff_mult, dim))
        self.modulation = nn.Linear(dim, 6 * dim)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(nn.functional.silu(time))[:, None].chunk(6, -1)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.ff(h)


class DiT(nn.Module):
    """Velocity field v(x_t, cond, text, t).

    x, cond: [B, N, n_mels] (noisy mel, masked reference mel); text: [B, N] int64 (0 = filler); t: [B] in
    [0, 1] -> velocity [B, N, n_mels]."""

    def __init__(self, arch: ArchConfig, n_mels: int, vocab_size: int) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(vocab_size + 1, arch.text_dim)
        self.text_blocks = nn.ModuleList(ConvNeXtBlock(arch.text_dim, arch.text_dim * 2)
                                         for _ in range(arch.conv_layers))
        self.input_proj = nn.Linear(2 * n_mels + arch.text_dim, arch.dim)
        self.conv_pos = nn.Sequential(nn.Conv1d(arch.dim, arch.dim, 31, padding=15, groups=min(16, arch.dim)),
                                      nn.Mish())
        self.time_mlp = nn.Sequential(nn.Linear(arch.dim, arch.dim), nn.SiLU(), nn.Linear(arch.dim, arch.dim))
        self.blocks = nn.ModuleList(DiTBlock(arch.dim, arch.heads, arch.ff_mult) for _ in range(arch.depth))
        self.norm_out = nn.LayerNorm(arch.dim, elementwise_affine=False)
        self.out_modulation = nn.Linear(arch.dim, 2 * arch.dim)
        self.proj_out = nn.Linear(arch.dim, n_mels)
        self.dim = arch.dim

    def forward(self, x: Tensor, cond: Tensor, text: Tensor, t: Tensor, drop_condition: bool = False) -> Tensor:
        if x.shape != cond.shape or text.shape != x.shape[:2] or t.shape != x.shape[:1]:
            raise ValueError(f"DiT inputs disagree: x {tuple(x.shape)}, cond {tuple(cond.shape)}, "
                             f"text {tuple(text.shape)}, t {tuple(t.shape)}")
        if drop_condition:  # classifier-free guidance's unconditional branch: no reference audio, no text
            cond, text = torch.zeros_like(cond), torch.zeros_like(text)
        text_features = self.text_embed(text)
        for block in self.text_blocks:
            text_features = block(text_features)
        h = self.input_proj(torch.cat([x, cond, text_features], dim=-1))
        h = h + self.conv_pos(h.transpose(1, 2)).transpose(1, 2)
        time = self.time_mlp(timestep_embedding(t, self.dim))
        for block in self.blocks:
            h = block(h, time)
        shift, scale = self.out_modulation(nn.functional.silu(time))[:, None].chunk(2, -1)
        return self.proj_out(self.norm_out(h) * (1 + scale) + shift)


class Vocoder(nn.Module):
    """Vocos-style vocoder: log-mel [B, N, n_mels] -> ConvNeXt -> per-frame magnitude and phase -> ISTFT [B, S]."""

    def __init__(self, config: VocoderConfig, mel: MelConfig) -> None:
        super().__init__()
        self.embed = nn.Conv1d(mel.n_mel_channels, config.dim, 7, padding=3)
        self.norm = nn.LayerNorm(config.dim)
        self.blocks = nn.ModuleList(ConvNeXtBlock(config.dim, config.intermediate_dim)
                                    for _ in range(config.num_layers))
        self.head = nn.Linear(config.dim, mel.n_fft + 2)
        self.mel = mel

    def forward(self, log_mel: Tensor) -> Tensor:
        h = self.norm(self.embed(log_mel.transpose(1, 2)).transpose(1, 2))
        for block in self.blocks:
            h = block(h)
        magnitude, phase = self.head(h).transpose(1, 2).chunk(2, dim=1)  # [B, n_fft/2+1, N] each
        spectrum = torch.exp(magnitude).clamp(max=100.0) * torch.exp(1j * phase)
        window = torch.hann_window(self.mel.win_length)
        return torch.istft(spectrum, self.mel.n_fft, self.mel.hop_length, self.mel.win_length, window,
                           center=True, length=log_mel.shape[1] * self.mel.hop_length)


def log_mel_spectrogram(waveform: Tensor, mel: MelConfig) -> Tensor:
    """waveform [S] at mel.target_sample_rate -> log-mel [N, n_mels], N = S // hop + 1 (centred STFT, magnitude,
    HTK mel filters without normalisation, log of max(x, 1e-5): upstream's "vocos" mel type)."""
    import librosa

    window = torch.hann_window(mel.win_length)
    spec = torch.stft(waveform, mel.n_fft, mel.hop_length, mel.win_length, window, center=True,
                      return_complex=True).abs()
    filters = torch.from_numpy(librosa.filters.mel(sr=mel.target_sample_rate, n_fft=mel.n_fft,
                                                   n_mels=mel.n_mel_channels, htk=True, norm=None)).float()
    return torch.log((filters @ spec).clamp(min=1e-5)).T


# ---- files and engine -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class F5ModelFiles:
    folder: Path
    config: Path
    vocab: Path
    model: Path
    vocoder: Path


def default_model_dir() -> Path:
    configured = os.environ.get(MODEL_DIR_ENV, "").strip()
    return Path(configured).expanduser() if configured else DEFAULT_MODEL_DIR


def find_model(folder: str | Path | None = None) -> F5ModelFiles | None:
    """The model files in `folder` (default `default_model_dir()`), or None when any is missing."""
    folder = Path(folder) if folder is not None else default_model_dir()
    if not folder.is_dir():
        return None
    checkpoints = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("vocoder"))
    vocoders = sorted(folder.glob("vocoder*.safetensors"))
    config, vocab = folder / "config.json", folder / "vocab.txt"
    if not (checkpoints and vocoders and config.is_file() and vocab.is_file()):
        return None
    return F5ModelFiles(folder, config, vocab, checkpoints[-1], vocoders[-1])


def _load_weights(module: nn.Module, path: Path, prefixes: tuple[str, ...]) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    for prefix in prefixes:
        if prefix and any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path.name} does not fit the model described by config.json: {len(missing)} missing "
                         f"keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
                         f"{len(wrong)} of another shape (e.g. {wrong[:2]}). Upstream F5-TTS checkpoints need "
                         f"a key adapter (see audio/f5tts.py)")
    module.load_state_dict(state, strict=True)


class F5TTSEngine:
    """Text + reference clip -> `Speech` in the reference's voice, with a local F5-TTS-style model."""

    name = "f5tts"

    def __init__(self, config: F5Config, vocab: list[str], model: DiT, vocoder: Vocoder) -> None:
        self.config, self.vocab, self.model, self.vocoder = config, vocab, model.eval(), vocoder.eval()
        self.token_ids = {token: index + 1 for index, token in enumerate(vocab)}
        self.sample_rate = config.mel.target_sample_rate

    @staticmethod
    def load(folder: str | Path | None = None) -> "F5TTSEngine":
        """Load from `folder`; FileNotFoundError saying what is missing when the weights are not there."""
        where = Path(folder) if folder is not None else default_model_dir()
        files = find_model(where)
        if files is None:
            raise FileNotFoundError(
                f"F5-TTS weights not found in {where}: it needs config.json, vocab.txt, model*.safetensors and "
                f"vocoder*.safetensors (set {MODEL_DIR_ENV} or --model-dir). Nothing is downloaded; use the "
                f"default offline voice conversion instead")
        try:
            config = F5Config.from_dict(json.loads(files.config.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{files.config}: not a valid F5-TTS config ({error})") from None
        vocab = files.vocab.read_text(encoding="utf-8").split("\n")
        vocab = vocab[:-1] if vocab and vocab[-1] == "" else vocab
        if not vocab:
            raise ValueError(f"{files.vocab} is empty")
        model = DiT(config.arch, config.mel.n_mel_channels, len(vocab))
        _load_weights(model, files.model, ("ema_model.transformer.", ""))
        vocoder = Vocoder(config.vocoder, config.mel)
        _load_weights(vocoder, files.vocoder, ("",))
        return F5TTSEngine(config, vocab, model, vocoder)

    def encode_text(self, text: str) -> list[int]:
        """Character ids (unknown characters map to the filler id 0, as upstream's vocab lookup)."""
        return [self.token_ids.get(ch, 0) for ch in text]

    def frames_for(self, reference_frames: int, reference_text: str, text: str, speed: float) -> int:
        """Generated frames: upstream's rule (reference frames x UTF-8 byte ratio / speed), or CHARS_PER_SECOND
        without a reference transcript."""
        new_bytes = len(text.encode("utf-8"))
        if reference_text.strip():
            frames = reference_frames * new_bytes / len(reference_text.encode("utf-8"))
        else:
            frames = new_bytes / CHARS_PER_SECOND * self.sample_rate / self.config.mel.hop_length
        return max(1, int(frames / speed))

    @torch.no_grad()
    def generate(self, reference: np.ndarray, text: str, reference_text: str = "", speed: float = 1.0,
                 sample: SampleOptions = SampleOptions()) -> np.ndarray:
        """reference: waveform [S] at self.sample_rate -> generated waveform [S'] (reference part removed),
        S' = generated frames x hop."""
        mel = self.config.mel
        if reference.ndim != 1 or reference.size < mel.hop_length:
            raise ValueError(f"reference must be a mono waveform [S] of at least one hop, got {reference.shape}")
        if not text.strip():
            raise ValueError("the text to speak is empty")
        ref_mel = log_mel_spectrogram(torch.from_numpy(np.asarray(reference, np.float32)), mel)  # [Nr, M]
        ref_frames = ref_mel.shape[0]
        gen_frames = self.frames_for(ref_frames, reference_text, text, speed)
        total = ref_frames + gen_frames
        if total * mel.hop_length / self.sample_rate > MAX_SECONDS:
            raise ValueError(f"reference plus speech would last {total * mel.hop_length / self.sample_rate:.0f} s, "
                             f"over F5-TTS's {MAX_SECONDS:.0f} s; use a shorter reference or split the script")
        ids = self.encode_text((reference_text + " " + text).strip())[:total]
        tokens = torch.zeros(1, total, dtype=torch.long)
        tokens[0, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        cond = torch.zeros(1, total, mel.n_mel_channels)
        cond[0, :ref_frames] = ref_mel
        generator = torch.Generator().manual_seed(sample.seed)
        x = torch.randn(1, total, mel.n_mel_channels, generator=generator)
        times = torch.linspace(0.0, 1.0, sample.steps + 1)
        times = times + sample.sway * (torch.cos(math.pi / 2 * times) - 1 + times)  # sway sampling
        for t0, t1 in zip(times[:-1], times[1:]):
            t = t0.expand(1)
            velocity = self.model(x, cond, tokens, t)
            if sample.cfg_strength:
                velocity = velocity + sample.cfg_strength * (velocity - self.model(x, cond, tokens, t, True))
            x = x + (t1 - t0) * velocity
        x[0, :ref_frames] = ref_mel  # the known part is the reference itself
        wave = self.vocoder(x)[0, ref_frames * mel.hop_length:]
        return wave.numpy().astype(np.float32)

    def synthesize_with_reference(self, text: str, reference_path: str | Path, options: SpeakOptions | None = None,
                                  reference_text: str = "", sample: SampleOptions = SampleOptions(),
                                  time_output: bool = True) -> Speech:
        """Speak `text` in the voice of the clip at `reference_path` -> `Speech`.

        F5-TTS has no phone durations, so the timing comes from pocketsphinx forced alignment of the output
        (`audio.align.time_speech`, phone_set "arpabet"); time_output=False leaves it empty."""
        from audio.io import load_audio
        from audio.text import normalize_text

        options = options or SpeakOptions()
        normalized = normalize_text(text)
        reference, _ = load_audio(reference_path, self.sample_rate)
        wave = self.generate(reference, normalized.text, reference_text, options.speed, sample)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > 1e-6:
            wave = wave * (options.peak / peak)
        if not time_output:
            return Speech(wave, self.sample_rate, normalized.text, source="f5tts",
                          notes=list(normalized.notes) + ["no timing requested"])
        from audio.align import time_speech
        from audio.io import AudioOptions

        timed = time_speech(wave, normalized.text, self.sample_rate, audio_options=AudioOptions(trim=True))
        return Speech(wave, self.sample_rate, normalized.text, timed.words, timed.phones, "arpabet",
                      f"f5tts+{timed.source}", list(normalized.notes) + timed.notes)
