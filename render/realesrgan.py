"""Optional Real-ESRGAN frame upscaler with the real upstream weights, loaded from a local folder (never downloaded).

Model folder (default `models/realesrgan/`, or `$TALKING_AVATAR_REALESRGAN_DIR`, or a path given by the caller):
    *.safetensors    upstream Real-ESRGAN weights converted from .pth (the project never unpickles files), e.g.
                     RealESRGAN_x4plus, RealESRGAN_x2plus, RealESRGAN_x4plus_anime_6B (RRDBNet) or
                     realesr-general-x4v3, realesr-animevideov3 (SRVGGNetCompact). Keys may keep upstream's
                     "params_ema." / "params." prefix (params_ema is preferred, as upstream). Several files: the
                     caller's `name` (file name or stem) wins, then realesr-general-x4v3 (fast enough for video),
                     the other releases, else the last in sorted order.
    config.json      optional: `ESRGANConfig` fields that override what is inferred from the weights (needed only
                     for SRVGG weights with a parameter-free activation: "act_type": "relu" or "leakyrelu").
Converting once: `python app.py models convert RealESRGAN_x4plus.pth models/realesrgan/RealESRGAN_x4plus.safetensors`
(`render.model_files`), or by hand (weights_only refuses pickled code):
    d = torch.load("RealESRGAN_x4plus.pth", map_location="cpu", weights_only=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in d.get("params_ema", d.get("params", d)).items()},
                                "RealESRGAN_x4plus.safetensors")

What matches upstream (xinntao/Real-ESRGAN 0.3.0 with basicsr 1.4.2): the module and parameter names and shapes of
RRDBNet and SRVGGNetCompact (so `load_state_dict(strict=True)` takes the real weights), their forward passes
(RRDBNet: pixel-unshuffle for x2/x1, 3 dense blocks per RRDB, residual scale 0.2, LeakyReLU 0.2, two nearest x2
upsamplings; SRVGG: conv/activation stack, pixel shuffle, plus the nearest-upsampled input), and RealESRGANer's
pre-processing and tiling: RGB in [0, 1], optional reflect pre-pad, reflect pad to a multiple of 2 (x2) or 4 (x1),
tiles with `tile_pad` context, output clamped to [0, 1] and rounded to uint8. Checked against upstream's own code on
random weights (same state-dict keys and shapes, same outputs to float rounding). Not carried over: fp16, alpha
channels, 16-bit input, `outscale` resizing, DNI weight interpolation.

Speed on this CPU (2 shared cores, torch's default 2 threads, float32, real-size networks with random weights):
RRDBNet x4plus about 23 s per 256x256 frame and 105 s per 512x512 frame (whole 512x512 frame: 4.8 GB peak memory,
in 256-pixel tiles: 1.6 GB, same speed); SRVGG general-x4v3 about 1-2 s and 4-5 s. Stills: either; video: only
general-x4v3 is practical, and only for short clips.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from render.local_weights import (check_fits, find_safetensors, keep_prefixed, model_dir, pickle_hint,
                                  read_safetensors)

MODEL_DIR_ENV = "TALKING_AVATAR_REALESRGAN_DIR"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "realesrgan"
CHECKPOINT_PREFIXES = ("params_ema.", "params.")  # upstream checkpoints' dicts, preferred first
PREFERRED_STEMS = ("realesr-general-x4v3", "RealESRGAN_x4plus", "RealESRGAN_x2plus", "realesr-animevideov3",
                   "RealESRGAN_x4plus_anime_6B")  # with several files: fast enough for video first
DEFAULT_TILE = 256  # input pixels per tile side, bounds memory (x4plus on 512x512: 4.8 GB whole, 1.6 GB tiled)
DEFAULT_TILE_PAD = 10  # upstream's default overlap
UNSHUFFLE_FOR_SCALE = {4: 1, 2: 2, 1: 4}  # RRDBNet: pixel-unshuffle factor of the input per output scale


@dataclass(frozen=True)
class ESRGANConfig:
    """Architecture and hyper-parameters; field names follow upstream's constructors (scale = SRVGG's upscale)."""

    arch: str = "rrdb"  # "rrdb" (RRDBNet) or "srvgg" (SRVGGNetCompact)
    scale: int = 4
    num_in_ch: int = 3  # image channels (RRDBNet x2/x1 multiply them by 4/16 after pixel-unshuffle)
    num_out_ch: int = 3
    num_feat: int = 64
    num_block: int = 23  # rrdb: RRDB blocks
    num_grow_ch: int = 32  # rrdb: growth channels of the dense blocks
    num_conv: int = 32  # srvgg: body convolutions between the first and last one
    act_type: str = "prelu"  # srvgg: "prelu", "relu" or "leakyrelu"

    def __post_init__(self) -> None:
        if self.arch not in ("rrdb", "srvgg"):
            raise ValueError(f"Real-ESRGAN config: arch must be 'rrdb' or 'srvgg', got {self.arch!r}")
        if self.arch == "rrdb" and self.scale not in UNSHUFFLE_FOR_SCALE:
            raise ValueError(f"Real-ESRGAN config: RRDBNet scale must be 1, 2 or 4, got {self.scale}")
        if self.act_type not in ("prelu", "relu", "leakyrelu"):
            raise ValueError(f"Real-ESRGAN config: unknown act_type {self.act_type!r}")
        counts = (self.scale, self.num_in_ch, self.num_out_ch, self.num_feat, self.num_grow_ch)
        if min(counts) < 1 or min(self.num_block, self.num_conv) < 0:
            raise ValueError(f"Real-ESRGAN config: sizes must be positive, got {self}")

    @property
    def input_multiple(self) -> int:
        """Frames are reflect-padded to multiples of this, tiles aligned to it: RRDBNet's pixel-unshuffle factor
        (upstream pads x2 and x1 inputs for both architectures, so the same holds for SRVGG)."""
        return UNSHUFFLE_FOR_SCALE.get(self.scale, 1)

    @property
    def receptive_radius(self) -> int:
        """Input pixels around a pixel that can change its output (an upper bound): tile_pad >= this makes tiled
        output equal the whole-frame one. x4plus: 352, general-x4v3: 34."""
        if self.arch == "srvgg":
            return self.num_conv + 2  # every 3x3 conv reaches one pixel further
        convs = 2 + 15 * self.num_block + 4  # conv_first, 3x5 per RRDB, conv_body; 4 after upsampling, rounded up
        return (convs + 1) * self.input_multiple  # +1: the unshuffle groups neighbouring pixels


UPSTREAM_CONFIGS = {  # the released weights and the constructor arguments upstream's inference script uses
    "RealESRGAN_x4plus": ESRGANConfig("rrdb", 4),
    "RealESRGAN_x2plus": ESRGANConfig("rrdb", 2),
    "RealESRGAN_x4plus_anime_6B": ESRGANConfig("rrdb", 4, num_block=6),
    "realesr-general-x4v3": ESRGANConfig("srvgg", 4, num_conv=32),
    "realesr-animevideov3": ESRGANConfig("srvgg", 4, num_conv=16),
}


# ---- networks (module and parameter names as upstream, so the real state dicts load) ---------------------------

class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the input and all earlier outputs; x: [B, F, H, W] -> [B, F, H, W]."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        for index in range(1, 6):
            out_channels = num_feat if index == 5 else num_grow_ch
            setattr(self, f"conv{index}", nn.Conv2d(num_feat + (index - 1) * num_grow_ch, out_channels, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2, inplace=True))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual: three dense blocks, the sum scaled by 0.2; x: [B, F, H, W] -> [B, F, H, W]."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator; x: [B, C, H, W] in [0, 1] (H, W multiples of `input_multiple`) -> [B, C, sH, sW]."""

    def __init__(self, config: ESRGANConfig) -> None:
        super().__init__()
        self.unshuffle = config.input_multiple
        feat = config.num_feat
        self.conv_first = nn.Conv2d(config.num_in_ch * self.unshuffle ** 2, feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(feat, config.num_grow_ch) for _ in range(config.num_block)))
        self.conv_body = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(feat, config.num_out_ch, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)  # [B, C*u*u, H/u, W/u], channel = c*u*u + dy*u + dx
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        for conv_up in (self.conv_up1, self.conv_up2):
            upsampled = F.interpolate(features, scale_factor=2, mode="nearest")  # [B, F, 2h, 2w]
            features = F.leaky_relu(conv_up(upsampled), 0.2, inplace=True)
        return self.conv_last(F.leaky_relu(self.conv_hr(features), 0.2, inplace=True))


class SRVGGNetCompact(nn.Module):
    """Compact VGG-style net, all convs at input resolution; x: [B, C, H, W] -> [B, C, sH, sW]."""

    def __init__(self, config: ESRGANConfig) -> None:
        super().__init__()
        feat, self.scale = config.num_feat, config.scale
        layers: list[nn.Module] = []
        for index in range(config.num_conv + 1):
            layers.append(nn.Conv2d(config.num_in_ch if index == 0 else feat, feat, 3, 1, 1))
            layers.append(nn.PReLU(num_parameters=feat) if config.act_type == "prelu" else
                          nn.ReLU(inplace=True) if config.act_type == "relu" else nn.LeakyReLU(0.1, inplace=True))
        layers.append(nn.Conv2d(feat, config.num_out_ch * self.scale ** 2, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(self.scale)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def build_network(config: ESRGANConfig) -> nn.Module:
    return RRDBNet(config) if config.arch == "rrdb" else SRVGGNetCompact(config)


# ---- weights ----------------------------------------------------------------------------------------------------

def default_model_dir() -> Path:
    return model_dir(MODEL_DIR_ENV, DEFAULT_MODEL_DIR)


def strip_checkpoint_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keep the "params_ema." dict if present, else "params.", else the keys as they are."""
    return keep_prefixed(state, CHECKPOINT_PREFIXES)


def _layer_index(key: str) -> int | None:
    """The N of "body.N...." (None for other keys)."""
    parts = key.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "body" and parts[1].isdigit() else None


def infer_config(state: dict[str, Tensor]) -> ESRGANConfig:
    """Architecture and sizes read off the keys and shapes of a (prefix-free) state dict; ValueError if neither."""
    if "conv_first.weight" in state and state["conv_first.weight"].ndim == 4:
        num_feat, in_channels = state["conv_first.weight"].shape[:2]
        num_out_ch = state["conv_last.weight"].shape[0] if "conv_last.weight" in state else 3
        scales = [s for s, u in UNSHUFFLE_FOR_SCALE.items() if in_channels == num_out_ch * u * u]
        if not scales:
            raise ValueError(f"RRDBNet conv_first takes {in_channels} channels: not {num_out_ch} image channels "
                             f"times 1, 4 or 16 (scale 4, 2, 1)")
        blocks = {index for index in map(_layer_index, state) if index is not None}
        grow = state.get("body.0.rdb1.conv1.weight")
        return ESRGANConfig("rrdb", scales[0], num_out_ch, num_out_ch, int(num_feat), max(blocks, default=-1) + 1,
                            int(grow.shape[0]) if grow is not None else 32)
    if "body.0.weight" in state and state["body.0.weight"].ndim == 4:
        num_feat, num_in_ch = (int(n) for n in state["body.0.weight"].shape[:2])
        conv_indices = sorted(_layer_index(key) for key in state
                              if key.endswith(".weight") and state[key].ndim == 4 and _layer_index(key) is not None)
        last = conv_indices[-1]
        scale = math.isqrt(state[f"body.{last}.weight"].shape[0] // num_in_ch)
        if last % 2 or last < 2 or scale < 1 or state[f"body.{last}.weight"].shape[0] != num_in_ch * scale ** 2:
            raise ValueError(f"SRVGGNetCompact layers end at body.{last} with {state[f'body.{last}.weight'].shape[0]}"
                             f" channels: not an even index and {num_in_ch} x scale^2 channels")
        act_type = "prelu" if "body.1.weight" in state else "relu"  # relu vs leakyrelu: config.json's act_type
        return ESRGANConfig("srvgg", scale, num_in_ch, num_in_ch, num_feat, num_conv=(last - 2) // 2,
                            act_type=act_type)
    raise ValueError(f"neither RRDBNet (conv_first.weight) nor SRVGGNetCompact (body.0.weight) weights; "
                     f"first keys: {sorted(state)[:4]}")


def read_overrides(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    unknown = set(overrides) - {f.name for f in fields(ESRGANConfig)} if isinstance(overrides, dict) else {"?"}
    if unknown:
        raise ValueError(f"{path}: expected an object of ESRGANConfig fields, unknown {sorted(unknown)}")
    return overrides


def check_network_fits(network: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """ValueError naming the first missing / unexpected / other-shaped keys, if `state` does not fit `network`."""
    check_fits(network.state_dict(), state, source, "weights of the inferred network")


def find_weights(where: str | Path | None = None, name: str | None = None) -> Path | None:
    """The weights file at `where` (a .safetensors file, or a folder: default `default_model_dir()`): in a folder
    the one called `name` (file name or stem), else realesr-general-x4v3 (the one fast enough for video), then
    the other upstream releases, else the last in sorted order; None if there is none."""
    return find_safetensors(Path(where) if where is not None else default_model_dir(), "Real-ESRGAN", name,
                            PREFERRED_STEMS)


def missing_message(where: str | Path | None = None) -> str:
    """One line: where the weights were looked for, what to put there, and that nothing is downloaded."""
    where = Path(where).expanduser() if where is not None else default_model_dir()
    return (f"Real-ESRGAN weights not found in {where}{pickle_hint(where)}: put upstream realesr-general-x4v3 "
            f"(fast enough for video) or RealESRGAN_x4plus converted to .safetensors there (python app.py models "
            f"convert IN.pth OUT.safetensors; or set {MODEL_DIR_ENV}). Nothing is downloaded.")


# ---- upscaler ---------------------------------------------------------------------------------------------------

class RealESRGAN:
    """uint8 RGB frames -> frames `scale` times larger, with a local Real-ESRGAN network."""

    def __init__(self, network: nn.Module, config: ESRGANConfig, weights: Path | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.config, self.weights, self.device = config, weights, torch.device(device)
        self.network = network.to(self.device, torch.float32).eval()

    @staticmethod
    def load(folder: str | Path | None = None, name: str | None = None,
             device: str | torch.device = "cpu") -> "RealESRGAN":
        """Load from `folder` (or a .safetensors file; default `default_model_dir()`); FileNotFoundError saying
        what to put there when no weights are; ValueError if they are not a Real-ESRGAN network's."""
        path = find_weights(folder, name)
        if path is None:
            raise FileNotFoundError(missing_message(folder))
        state = strip_checkpoint_prefix(read_safetensors(path))
        state = {key: value.float() for key, value in state.items()}
        try:
            config = replace(infer_config(state), **read_overrides(path.parent))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path.name}: {error}") from None
        with torch.device("meta"):  # shapes only: the weights below replace every tensor
            network = build_network(config)
        check_network_fits(network, state, path.name)
        network.load_state_dict(state, strict=True, assign=True)
        return RealESRGAN(network, config, path, device)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def describe(self) -> str:
        c = self.config
        layers = (f"RRDBNet, {c.num_block} blocks" if c.arch == "rrdb" else f"SRVGGNetCompact, {c.num_conv} convs")
        source = self.weights.name if self.weights is not None else "unsaved weights"
        return (f"Real-ESRGAN x{c.scale} ({layers}, {c.num_feat} features), "
                f"{self.parameter_count / 1e6:.2f} M parameters, {source}")

    @torch.inference_mode()
    def upscale(self, frames: np.ndarray, tile: int = DEFAULT_TILE, tile_pad: int = DEFAULT_TILE_PAD,
                pre_pad: int = 0) -> np.ndarray:
        """frames: uint8 RGB [B, H, W, 3] or [H, W, 3] -> uint8 [B, sH, sW, 3] (or [sH, sW, 3]).

        tile: input pixels per tile side (0 = whole frame); tile_pad: context around each tile (below
        `config.receptive_radius`, e.g. upstream's 10 for x4plus, seams differ slightly from the whole frame, as
        upstream's do); pre_pad: reflect padding at the bottom/right, cropped off again (upstream's option)."""
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim not in (3, 4) \
                or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 RGB [B, H, W, 3] or [H, W, 3], got "
                             f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}")
        single = frames.ndim == 3
        batch = frames[None] if single else frames
        count, height, width = batch.shape[:3]
        if min(height, width) < 4:
            raise ValueError(f"frames must be at least 4x4 pixels, got {height}x{width}")
        s = self.scale
        out = np.empty((count, height * s, width * s, 3), np.uint8)
        for index in range(count):
            image = torch.from_numpy(np.ascontiguousarray(batch[index])).to(self.device)
            image = image.permute(2, 0, 1)[None].float() / 255.0  # [1, 3, H, W] in [0, 1]
            result = self.upscale_tensor(image, tile, tile_pad, pre_pad)  # [1, 3, sH, sW]
            out[index] = (result[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return out[0] if single else out

    @torch.inference_mode()
    def upscale_tensor(self, images: Tensor, tile: int = 0, tile_pad: int = DEFAULT_TILE_PAD,
                       pre_pad: int = 0) -> Tensor:
        """images: float [B, C, H, W] in [0, 1] -> float [B, C, sH, sW] on `self.device` (not clamped)."""
        images = images.to(self.device, torch.float32)
        if tile < 0 or tile_pad < 0 or pre_pad < 0:
            raise ValueError(f"tile, tile_pad and pre_pad must be >= 0, got {tile}, {tile_pad}, {pre_pad}")
        height, width = images.shape[-2:]
        pre_pad = min(pre_pad, height - 1, width - 1)  # reflect padding needs a longer side
        padded = F.pad(images, (0, pre_pad, 0, pre_pad), mode="reflect") if pre_pad else images
        multiple = self.config.input_multiple
        extra_h, extra_w = (-padded.shape[-2]) % multiple, (-padded.shape[-1]) % multiple
        if extra_h or extra_w:  # pixel-unshuffle needs sides divisible by its factor
            padded = F.pad(padded, (0, extra_w, 0, extra_h), mode="reflect")
        result = self._tiled(padded, tile, tile_pad) if tile else self.network(padded)
        return result[..., : height * self.scale, : width * self.scale]

    def _tiled(self, images: Tensor, tile: int, tile_pad: int) -> Tensor:
        """The network run tile by tile, each with `tile_pad` pixels of context; images [B, C, H, W] ->
        [B, C, sH, sW]. Tile sizes and offsets are rounded up to the unshuffle factor so tiles see the same
        pixel grouping as the whole frame."""
        multiple, s = self.config.input_multiple, self.scale
        tile, tile_pad = -(-tile // multiple) * multiple, -(-tile_pad // multiple) * multiple
        height, width = images.shape[-2:]
        out = images.new_zeros(images.shape[0], self.config.num_out_ch, height * s, width * s)
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                context_top, context_left = max(top - tile_pad, 0), max(left - tile_pad, 0)
                window = images[..., context_top: min(bottom + tile_pad, height),
                                context_left: min(right + tile_pad, width)]
                result = self.network(window)  # [B, C, s*window_h, s*window_w]
                y, x = (top - context_top) * s, (left - context_left) * s
                out[..., top * s: bottom * s, left * s: right * s] = \
                    result[..., y: y + (bottom - top) * s, x: x + (right - left) * s]
        return out
