"""The Wav2Lip generator network in plain torch, and its typed config; used by `render.wav2lip`.

What it is: a U-Net that redraws the mouth of a 96x96 face for 0.2 s of speech. The face encoder reads 6
channels (the face with its lower half blacked out, then a reference face, both BGR in [0, 1]) down to 1x1 in
seven blocks; the audio encoder reads one mel window [1, 80, 16] down to a 512-d embedding; the decoder starts
from that embedding and goes back up to 96x96, concatenating the face encoder's output of the same size after
every block (skip connections); the output block gives BGR in [0, 1] (sigmoid). Every conv is conv + BatchNorm +
ReLU ("ConvBlock", optionally adding its input before the ReLU), the decoder's up-steps are transposed convs +
BatchNorm + ReLU ("TransposedConvBlock"). Weights are loaded, never trained, here.

What matches upstream (Rudrabha/Wav2Lip models/wav2lip.py `Wav2Lip` and models/conv.py `Conv2d`,
`Conv2dTranspose`): every module, parameter and buffer name, shape and order of `state_dict()` (352 tensors,
36,320,837 numbers with the BatchNorm statistics, 36,298,035 parameters at width 1.0), kernel sizes, strides,
paddings, output paddings, where the residual additions are, and the forward pass for 4-D input (bit-identical to
upstream's module on random weights, BatchNorm statistics included; checked outside this repo, and a test holds
upstream's output on drawn weights). Written from scratch from the layer list; the classes are named for what
they do (upstream: Conv2d -> ConvBlock, Conv2dTranspose -> TransposedConvBlock, Wav2Lip -> Wav2LipNet).
What differs: `Wav2LipConfig.width` scales every hidden channel count (1.0 = upstream; tests build tiny models
with the same key names); only 4-D input (upstream also folds a time axis [B, T, ...] into the batch, which its
inference never uses); no discriminator (Wav2Lip_disc_qual is for training).
Speed on this CPU: see `render.wav2lip`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

FACE_SIZE = 96  # the network's face crops are FACE_SIZE x FACE_SIZE; the encoder reaches exactly 1x1
MEL_BANDS = 80  # mel bands of one audio window
MEL_WINDOW = 16  # mel columns per window (0.2 s at 80 columns per second)
FACE_CHANNELS = 6  # masked face (3, BGR) + reference face (3, BGR)

# Layer lists at width 1.0 (upstream's channel counts). Each stage: (out_channels, kernel, stride, padding,
# residual 3x3 ConvBlocks after the first conv). Strides are (rows, cols) where they differ.
FACE_ENCODER_STAGES = (
    (16, 7, 1, 3, 0),  # 96x96
    (32, 3, 2, 1, 2),  # 48x48
    (64, 3, 2, 1, 3),  # 24x24
    (128, 3, 2, 1, 2),  # 12x12
    (256, 3, 2, 1, 2),  # 6x6
    (512, 3, 2, 1, 1),  # 3x3
)  # then a last stage: 3x3 conv without padding (3x3 -> 1x1) and a 1x1 conv, both 512 channels
AUDIO_ENCODER_STAGES = (
    (32, 3, 1, 1, 2),  # [80, 16]
    (64, 3, (3, 1), 1, 2),  # [27, 16]
    (128, 3, 3, 1, 2),  # [9, 6]
    (256, 3, (3, 2), 1, 1),  # [3, 3]
)  # then 3x3 conv without padding (-> 1x1) and a 1x1 conv, both 512 channels: the audio embedding
BOTTLENECK_CHANNELS = 512
# Decoder after its first 1x1 ConvBlock (512 -> 512 on the audio embedding): (out_channels, stride, padding,
# output_padding, residual ConvBlocks). Each block's input = previous block's output + the skip connection.
DECODER_STAGES = (
    (512, 1, 0, 0, 1),  # 1x1 -> 3x3
    (512, 2, 1, 1, 2),  # 6x6
    (384, 2, 1, 1, 2),  # 12x12
    (256, 2, 1, 1, 2),  # 24x24
    (128, 2, 1, 1, 2),  # 48x48
    (64, 2, 1, 1, 2),  # 96x96
)
OUTPUT_HIDDEN_CHANNELS = 32


@dataclass(frozen=True)
class Wav2LipConfig:
    """Size of the network: `width` multiplies every hidden channel count (1.0 = upstream's Wav2Lip)."""

    width: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)):
            raise ValueError(f"Wav2Lip config: width must be a number, got {self.width!r}")
        if not 0.0 < self.width <= 4.0:
            raise ValueError(f"Wav2Lip config: width must be in (0, 4], got {self.width}")

    def channels(self, upstream_channels: int) -> int:
        """Hidden channels at this width for a layer that has `upstream_channels` at width 1.0 (at least 1)."""
        return max(1, round(upstream_channels * self.width))

    @staticmethod
    def from_dict(values: dict) -> "Wav2LipConfig":
        known = {f.name for f in fields(Wav2LipConfig)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Wav2Lip config: unknown fields {sorted(unknown)} (known: {sorted(known)})")
        return Wav2LipConfig(**values)

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Module):
    """conv + BatchNorm (+ the input, when `residual`) + ReLU; x [B, C_in, H, W] -> [B, C_out, H', W'].
    Key names: conv_block.0 (conv), conv_block.1 (BatchNorm), as upstream's models/conv.py Conv2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int | tuple[int, int],
                 padding: int, residual: bool = False) -> None:
        super().__init__()
        if residual and (in_channels != out_channels or stride != 1):
            raise ValueError("a residual ConvBlock keeps its channels and size")
        self.conv_block = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
                                        nn.BatchNorm2d(out_channels))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_block(x)
        return self.act(y + x if self.residual else y)


class TransposedConvBlock(nn.Module):
    """transposed conv + BatchNorm + ReLU; x [B, C_in, H, W] -> [B, C_out, H', W'] (upstream's Conv2dTranspose)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
                 output_padding: int = 0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(out_channels))
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv_block(x))


def _encoder_stage(in_channels: int, out_channels: int, kernel_size: int, stride: int | tuple[int, int],
                   padding: int, residuals: int) -> list[nn.Module]:
    layers: list[nn.Module] = [ConvBlock(in_channels, out_channels, kernel_size, stride, padding)]
    layers += [ConvBlock(out_channels, out_channels, 3, 1, 1, residual=True) for _ in range(residuals)]
    return layers


class Wav2LipNet(nn.Module):
    """mel windows [B, 1, 80, 16] + faces [B, 6, 96, 96] (masked BGR, reference BGR, in [0, 1])
    -> faces [B, 3, 96, 96] BGR in [0, 1]. Argument order as upstream's forward(audio, faces)."""

    def __init__(self, config: Wav2LipConfig = Wav2LipConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        bottleneck = c(BOTTLENECK_CHANNELS)

        face_blocks, skip_channels, previous = [], [], FACE_CHANNELS
        for out_channels, kernel, stride, padding, residuals in FACE_ENCODER_STAGES:
            face_blocks.append(nn.Sequential(*_encoder_stage(previous, c(out_channels), kernel, stride, padding,
                                                             residuals)))
            previous = c(out_channels)
            skip_channels.append(previous)
        face_blocks.append(nn.Sequential(ConvBlock(previous, bottleneck, 3, 1, 0),  # 3x3 -> 1x1
                                         ConvBlock(bottleneck, bottleneck, 1, 1, 0)))
        skip_channels.append(bottleneck)
        self.face_encoder_blocks = nn.ModuleList(face_blocks)

        audio_layers, previous = [], 1
        for out_channels, kernel, stride, padding, residuals in AUDIO_ENCODER_STAGES:
            audio_layers += _encoder_stage(previous, c(out_channels), kernel, stride, padding, residuals)
            previous = c(out_channels)
        audio_layers += [ConvBlock(previous, bottleneck, 3, 1, 0), ConvBlock(bottleneck, bottleneck, 1, 1, 0)]
        self.audio_encoder = nn.Sequential(*audio_layers)

        decoder_blocks = [nn.Sequential(ConvBlock(bottleneck, bottleneck, 1, 1, 0))]
        previous = bottleneck + skip_channels.pop()  # after each block: concatenated with a skip connection
        for out_channels, stride, padding, output_padding, residuals in DECODER_STAGES:
            width = c(out_channels)
            layers: list[nn.Module] = [TransposedConvBlock(previous, width, 3, stride, padding, output_padding)]
            layers += [ConvBlock(width, width, 3, 1, 1, residual=True) for _ in range(residuals)]
            decoder_blocks.append(nn.Sequential(*layers))
            previous = width + skip_channels.pop()
        self.face_decoder_blocks = nn.ModuleList(decoder_blocks)

        self.output_block = nn.Sequential(ConvBlock(previous, c(OUTPUT_HIDDEN_CHANNELS), 3, 1, 1),
                                          nn.Conv2d(c(OUTPUT_HIDDEN_CHANNELS), 3, 1, 1, 0),
                                          nn.Sigmoid())

    def forward(self, mels: Tensor, faces: Tensor) -> Tensor:
        """mels [B, 1, 80, 16], faces [B, 6, 96, 96] -> [B, 3, 96, 96] in [0, 1]."""
        if faces.ndim != 4 or tuple(faces.shape[1:]) != (FACE_CHANNELS, FACE_SIZE, FACE_SIZE):
            raise ValueError(f"faces must be [B, {FACE_CHANNELS}, {FACE_SIZE}, {FACE_SIZE}], got {tuple(faces.shape)}")
        if mels.ndim != 4 or tuple(mels.shape[1:]) != (1, MEL_BANDS, MEL_WINDOW) or len(mels) != len(faces):
            raise ValueError(f"mels must be [B, 1, {MEL_BANDS}, {MEL_WINDOW}] with B = {len(faces)}, got "
                             f"{tuple(mels.shape)}")
        skips = []  # the face encoder's outputs, 96x96 first, 1x1 last
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = self.audio_encoder(mels)  # [B, 512w, 1, 1]
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)
