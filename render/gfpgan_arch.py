"""The GFPGANv1Clean network (GFPGAN v1.3 / v1.4) in plain torch, and its typed config; used by `render.gfpgan`.

What it is: a U-Net of ResBlocks with bilinear down/up-sampling reads an aligned face in [-1, 1]; its
bottleneck gives one style latent per decoder layer (final_conv, final_linear, "different_w") and each up level
gives SFT conditions (condition_scale / condition_shift) for half of the channels ("sft_half") of a StyleGAN2
decoder (stylegan_decoder: style_mlp, constant_input, style_conv1, to_rgb1, style_convs, to_rgbs, noises;
modulated convs with demodulation, bilinear upsampling). Weights are loaded, never trained, here.

What matches upstream (TencentARC/GFPGAN gfpgan/archs/gfpganv1_clean_arch.py + stylegan2_clean_arch.py, as
GFPGANer builds them): every module, parameter and buffer name, shape and order of `state_dict()` (285 tensors,
87,143,276 numbers at the default config), and the forward pass with randomize_noise=False, which is
bit-identical to upstream's on random weights (checked for out_size 32..512, with/without sft_half,
different_w, input_is_latent). Written from scratch; class names differ where they explain more
(StyleGAN2DecoderSFT = StyleGAN2GeneratorCSFT). Not computed: the toRGB side outputs (return_rgb; the weights
are kept so checkpoints load strictly), random noise (the stored noise buffers are always used: video frames
must not flicker), style mixing and truncation (unused by GFPGAN).
Speed on this CPU (2 cores, float32): one 512x512 face in about 2 s (see `render.gfpgan`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GFPGANConfig:
    """Hyper-parameters of GFPGANv1Clean; the defaults are GFPGANv1.3 / v1.4 as GFPGANer builds them."""

    out_size: int = 512
    num_style_feat: int = 512
    channel_multiplier: int = 2
    narrow: float = 1.0
    num_mlp: int = 8
    input_is_latent: bool = True
    different_w: bool = True
    sft_half: bool = True

    def __post_init__(self) -> None:
        kinds = {"int": (int,), "float": (int, float), "bool": (bool,)}
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, kinds[field.type]) or (field.type != "bool" and isinstance(value, bool)):
                raise ValueError(f"GFPGAN config: {field.name} must be {field.type}, got {value!r}")
        if self.out_size < 8 or self.out_size > 1024 or self.out_size & (self.out_size - 1):
            raise ValueError(f"GFPGAN out_size must be a power of two in [8, 1024], got {self.out_size}")
        if self.num_style_feat < 1 or self.num_mlp < 0 or self.channel_multiplier <= 0 or self.narrow <= 0:
            raise ValueError(f"GFPGAN config out of range: {self}")
        for resolution in self.resolutions():
            decoder, encoder = self.decoder_channels(resolution), self.encoder_channels(resolution)
            if encoder < 1 or (self.sft_half and decoder // 2 != encoder):
                raise ValueError(f"GFPGAN config {self} gives {decoder} decoder / {encoder} encoder channels at "
                                 f"{resolution}px; SFT needs at least 1 and (with sft_half) half as many")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def num_latent(self) -> int:
        """Style latents the decoder reads: 2 per resolution from 4 px to out_size."""
        return self.log_size * 2 - 2

    def resolutions(self) -> list[int]:
        """Decoder levels after the 4x4 constant: 8, 16, ..., out_size."""
        return [2 ** level for level in range(3, self.log_size + 1)]

    def _channels(self, resolution: int, narrow: float) -> int:
        base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}[resolution]
        return int(base * (self.channel_multiplier if resolution >= 64 else 1) * narrow)

    def decoder_channels(self, resolution: int) -> int:
        return self._channels(resolution, self.narrow)

    def encoder_channels(self, resolution: int) -> int:
        """The U-Net uses half of the decoder's channels (upstream's unet_narrow = narrow * 0.5)."""
        return self._channels(resolution, self.narrow * 0.5)

    @staticmethod
    def from_dict(values: dict) -> "GFPGANConfig":
        known = {f.name for f in fields(GFPGANConfig)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"GFPGAN config: unknown fields {sorted(unknown)} (known: {sorted(known)})")
        return GFPGANConfig(**values)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- network (names follow gfpganv1_clean_arch.py / stylegan2_clean_arch.py) ----------------------------------

class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv (no bias): per-sample weights = weight * style, optionally demodulated.
    x [B, C_in, H, W], style [B, num_style_feat] -> [B, C_out, H', W'] (H' = 2H when upsampling)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.out_channels, self.kernel_size = out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.modulation = nn.Linear(num_style_feat, in_channels)
        nn.init.ones_(self.modulation.bias)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
                                   / math.sqrt(in_channels * kernel_size ** 2))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        batch, in_channels = x.shape[:2]
        weight = self.weight * self.modulation(style).view(batch, 1, in_channels, 1, 1)  # [B, C_out, C_in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8).view(batch, -1, 1, 1, 1)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        grouped = weight.view(batch * self.out_channels, in_channels, self.kernel_size, self.kernel_size)
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), grouped, padding=self.kernel_size // 2, groups=batch)
        return out.view(batch, self.out_channels, *out.shape[2:])  # one group per sample: its own weights


class StyleConv(nn.Module):
    """Modulated 3x3 conv * sqrt(2) + weight * noise + bias, leaky ReLU 0.2."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, upsample: bool) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat, True, upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
        out = self.modulated_conv(x, style) * math.sqrt(2.0) + self.weight * noise + self.bias
        return F.leaky_relu(out, 0.2)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, plus the bilinearly upsampled previous RGB."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, previous_rgb: Tensor | None = None) -> Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if previous_rgb is None:
            return out
        if self.upsample:
            previous_rgb = F.interpolate(previous_rgb, scale_factor=2, mode="bilinear", align_corners=False)
        return out + previous_rgb


class NormStyleCode(nn.Module):
    """Pixel norm of style codes over dim 1 (no parameters; index 0 of style_mlp, as upstream)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class StyleGAN2DecoderSFT(nn.Module):
    """StyleGAN2GeneratorCSFT: the StyleGAN2 generator whose features are modulated by the U-Net's SFT
    conditions. latent [B, num_latent, num_style_feat], conditions: 2 per level ([B, C, r, r] scale, shift)
    -> image [B, 3, out_size, out_size] in about [-1, 1]."""

    def __init__(self, config: GFPGANConfig) -> None:
        super().__init__()
        nsf, channels = config.num_style_feat, config.decoder_channels
        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(config.num_mlp):
            mlp += [nn.Linear(nsf, nsf), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*mlp)
        self.constant_input = nn.Module()  # upstream's ConstantInput: only a learnt 4x4 "weight"
        self.constant_input.weight = nn.Parameter(torch.randn(1, channels(4), 4, 4))
        self.style_conv1 = StyleConv(channels(4), channels(4), nsf, upsample=False)
        self.to_rgb1 = ToRGB(channels(4), nsf, upsample=False)
        self.style_convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        num_layers = (config.log_size - 2) * 2 + 1
        for index in range(num_layers):  # noise0 at 4 px, then two per resolution
            resolution = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f"noise{index}", torch.randn(1, 1, resolution, resolution))
        self.num_layers, self.sft_half = num_layers, config.sft_half
        in_channels = channels(4)
        for resolution in config.resolutions():
            out_channels = channels(resolution)
            self.style_convs.append(StyleConv(in_channels, out_channels, nsf, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, nsf, upsample=False))
            self.to_rgbs.append(ToRGB(out_channels, nsf, upsample=True))
            in_channels = out_channels

    def forward(self, latent: Tensor, conditions: list[Tensor]) -> Tensor:
        noise = [getattr(self.noises, f"noise{index}") for index in range(self.num_layers)]  # fixed: no flicker
        out = self.constant_input.weight.repeat(latent.shape[0], 1, 1, 1)
        out = self.style_conv1(out, latent[:, 0], noise[0])
        rgb = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            first, second = self.style_convs[2 * level], self.style_convs[2 * level + 1]
            i = 2 * level + 1  # upstream's latent / noise / condition index
            out = first(out, latent[:, i], noise[i])
            scale, shift = conditions[i - 1], conditions[i]  # the U-Net gives every level its SFT pair
            if self.sft_half:  # SFT on the second half of the channels only
                kept, modulated = torch.split(out, out.shape[1] // 2, dim=1)
                out = torch.cat([kept, modulated * scale + shift], dim=1)
            else:
                out = out * scale + shift
            out = second(out, latent[:, i + 1], noise[i + 1])
            rgb = to_rgb(out, latent[:, i + 2], rgb)
        return rgb


class ResBlock(nn.Module):
    """conv3x3, lrelu, bilinear resample (x0.5 or x2), conv3x3, lrelu; plus 1x1 conv of the resampled input."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = scale_factor

    def forward(self, x: Tensor) -> Tensor:
        def resample(t: Tensor) -> Tensor:
            return F.interpolate(t, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

        out = F.leaky_relu(self.conv2(resample(F.leaky_relu(self.conv1(x), 0.2))), 0.2)
        return out + self.skip(resample(x))


def _sft_branch(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, out_channels, 3, 1, 1))


class GFPGANv1Clean(nn.Module):
    """Aligned face [B, 3, S, S] in [-1, 1] -> restored face [B, 3, S, S] in about [-1, 1] (S = out_size)."""

    def __init__(self, config: GFPGANConfig) -> None:
        super().__init__()
        self.config = config
        unet, levels = config.encoder_channels, config.resolutions()  # levels: 8 .. S
        self.conv_body_first = nn.Conv2d(3, unet(config.out_size), 1)
        self.conv_body_down = nn.ModuleList(ResBlock(unet(r), unet(r // 2), 0.5) for r in reversed(levels))
        self.final_conv = nn.Conv2d(unet(8), unet(4), 3, 1, 1)
        self.conv_body_up = nn.ModuleList(ResBlock(unet(r // 2), unet(r), 2.0) for r in levels)
        self.toRGB = nn.ModuleList(nn.Conv2d(unet(r), 3, 1) for r in levels)  # upstream side output; unused
        latents = config.num_latent if config.different_w else 1
        self.final_linear = nn.Linear(unet(4) * 4 * 4, latents * config.num_style_feat)
        self.stylegan_decoder = StyleGAN2DecoderSFT(config)
        sft_out = [unet(r) * (1 if config.sft_half else 2) for r in levels]
        self.condition_scale = nn.ModuleList(_sft_branch(unet(r), n) for r, n in zip(levels, sft_out))
        self.condition_shift = nn.ModuleList(_sft_branch(unet(r), n) for r, n in zip(levels, sft_out))

    def forward(self, x: Tensor) -> Tensor:
        config = self.config
        feat = F.leaky_relu(self.conv_body_first(x), 0.2)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), 0.2)
        style = self.final_linear(feat.flatten(1))  # [B, latents * num_style_feat]
        if config.different_w:
            style = style.view(style.shape[0], -1, config.num_style_feat)
        conditions = []
        for skip, block, scale, shift in zip(skips, self.conv_body_up, self.condition_scale, self.condition_shift):
            feat = block(feat + skip)
            conditions += [scale(feat), shift(feat)]
        if not config.input_is_latent:
            style = self.stylegan_decoder.style_mlp(style)  # as upstream (its norm runs over dim 1)
        latent = style if style.ndim == 3 else style[:, None].repeat(1, config.num_latent, 1)
        return self.stylegan_decoder(latent, conditions)
