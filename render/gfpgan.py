"""Optional GFPGAN face restorer for rendered video frames, with local weights (never downloaded).

What it is: `GFPGAN.load()` reads GFPGAN v1.3 / v1.4 weights into `render.gfpgan_arch.GFPGANv1Clean`;
`GFPGAN.restore(frames, landmarks, strength)` aligns each frame's face by its 5 landmarks to the 512x512 FFHQ
template (`render.face_align`), restores the crop and pastes it back with a feathered mask, mixed by strength.

Model folder (default `models/gfpgan/`, or `$TALKING_AVATAR_GFPGAN_DIR`, or a path given by the caller):
    *.safetensors   the upstream checkpoint converted to safetensors (GFPGANv1.4.pth -> GFPGANv1.4.safetensors,
                    once: `python app.py models convert ...`, or elsewhere; the project never unpickles files),
                    keys with or without the "params_ema." / "params." prefix, e.g.
                        sd = torch.load("GFPGANv1.4.pth", map_location="cpu", weights_only=True)["params_ema"]
                        safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, "x.safetensors")
                    With several files: GFPGANv1.4, else GFPGANv1.3, else the last name in sorted order.
    config.json     optional, fields of `GFPGANConfig` overriding what is inferred from the weights (out_size,
                    num_style_feat, channel_multiplier, narrow, num_mlp, sft_half, different_w are read from
                    the shapes; input_is_latent cannot be and defaults to True, as GFPGANer).

What matches upstream (GFPGANer with arch "clean", channel_multiplier 2): the network (bit-identical, see
`render.gfpgan_arch`), strict key loading of "params_ema", the input normalisation ((x / 255 - 0.5) / 0.5, RGB)
and the output conversion (clamp to [-1, 1], round). What differs, on purpose: the stored noise buffers are
always used (randomize_noise=False) so consecutive frames do not flicker; alignment by least squares and a
mirrored crop border (see `render.face_align`); no face detector (the caller gives landmarks); frames are RGB.
Speed on this CPU (2 cores, float32, torch's default 2 threads, 512x512 frame): about 2.0-2.3 s per frame
(4 CPU-seconds), 3.8 s on one thread; when other work keeps the cores busy, 2 threads can slow to ~7 s (use 1).
Loading the 349 MB checkpoint takes ~1 s; a frame peaks at ~0.7 GB above the weights.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from render import face_align
from render.local_weights import (check_fits, find_safetensors, keep_prefixed, model_dir, pickle_hint,
                                  read_safetensors)
from render.gfpgan_arch import GFPGANConfig, GFPGANv1Clean

__all__ = ["GFPGAN", "GFPGANConfig", "GFPGANv1Clean", "default_model_dir", "find_weights", "missing_message"]

MODEL_DIR_ENV = "TALKING_AVATAR_GFPGAN_DIR"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "gfpgan"
CHECKPOINT_PREFIXES = ("params_ema.", "params.")  # upstream .pth wrappers, flattened into the key names
PREFERRED_STEMS = ("GFPGANv1.4", "GFPGANv1.3")


# ---- weights ------------------------------------------------------------------------------------------------

def default_model_dir() -> Path:
    return model_dir(MODEL_DIR_ENV, DEFAULT_MODEL_DIR)


def find_weights(where: str | Path | None = None) -> Path | None:
    """The safetensors file at `where` (a file, or a folder: default `default_model_dir()`; there GFPGANv1.4,
    else GFPGANv1.3, else the last in sorted order), or None. Cheap: nothing is read."""
    return find_safetensors(Path(where) if where is not None else default_model_dir(), "GFPGAN",
                            preferred=PREFERRED_STEMS)


def missing_message(where: str | Path | None = None) -> str:
    """One sentence: where GFPGAN weights were looked for and what to put there."""
    where = Path(where).expanduser() if where is not None else default_model_dir()
    return (f"GFPGAN weights not found in {where}{pickle_hint(where)}: put GFPGANv1.4 (or v1.3) converted to "
            f"safetensors there, e.g. {where / 'GFPGANv1.4.safetensors'} (python app.py models convert GFPGANv1.4.pth "
            f"{where / 'GFPGANv1.4.safetensors'}; or set {MODEL_DIR_ENV}). Nothing is downloaded.")


def strip_checkpoint_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keep the "params_ema." weights (else "params."), without the prefix; plain keys pass unchanged."""
    return keep_prefixed(state, CHECKPOINT_PREFIXES)


def infer_config(state: dict[str, Tensor], overrides: dict | None = None) -> GFPGANConfig:
    """Hyper-parameters read from the weights' keys and shapes (defaults where a key is absent), then
    `overrides` (e.g. config.json). input_is_latent cannot be seen in the weights: default True as GFPGANer."""
    inferred: dict = {}
    downs = {key.split(".")[1] for key in state if key.startswith("conv_body_down.")}
    if downs:
        inferred["out_size"] = 2 ** (len(downs) + 2)
    mlp = [key for key in state if key.startswith("stylegan_decoder.style_mlp.") and key.endswith(".weight")]
    if mlp:
        inferred["num_mlp"] = len(mlp)
    modulation = state.get("stylegan_decoder.style_conv1.modulated_conv.modulation.weight")
    if modulation is not None and modulation.ndim == 2:
        inferred["num_style_feat"] = int(modulation.shape[1])
    constant = state.get("stylegan_decoder.constant_input.weight")
    if constant is not None and constant.ndim == 4:
        inferred["narrow"] = constant.shape[1] / 512
        level_64 = state.get("stylegan_decoder.style_convs.6.modulated_conv.weight")  # first conv at 64 px
        if level_64 is not None and level_64.ndim == 5:
            multiplier = level_64.shape[1] / (256 * inferred["narrow"])
            inferred["channel_multiplier"] = int(multiplier) if multiplier == int(multiplier) else multiplier
    scale_in, scale_out = (state.get(f"condition_scale.0.{i}.weight") for i in (0, 2))
    if scale_in is not None and scale_out is not None:
        inferred["sft_half"] = bool(scale_out.shape[0] == scale_in.shape[0])
    linear = state.get("final_linear.weight")
    if linear is not None and "out_size" in inferred and "num_style_feat" in inferred:
        num_latent = int(math.log2(inferred["out_size"])) * 2 - 2
        inferred["different_w"] = bool(linear.shape[0] == num_latent * inferred["num_style_feat"])
    inferred.update(overrides or {})
    return GFPGANConfig.from_dict(inferred)


def check_state_dict(state: dict[str, Tensor], expected: dict[str, Tensor], source: str) -> None:
    """ValueError naming the first missing / unexpected / wrongly shaped keys, if any."""
    check_fits(expected, state, source, "a GFPGANv1Clean checkpoint for this config")


# ---- restorer -----------------------------------------------------------------------------------------------

class GFPGAN:
    """Face restorer for video frames: `GFPGAN.load()`, then `restore(frames, landmarks, strength)`."""

    def __init__(self, network: GFPGANv1Clean, device: str | torch.device = "cpu",
                 weights: Path | None = None) -> None:
        self.device, self.weights = torch.device(device), weights
        self.network = network.to(device=self.device, dtype=torch.float32).eval()
        self.config = network.config
        self.face_size = self.config.out_size

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def describe(self) -> str:
        source = self.weights.name if self.weights is not None else "weights from memory"
        return (f"GFPGANv1Clean {self.face_size}px (channel multiplier {self.config.channel_multiplier:g}), "
                f"{self.parameter_count / 1e6:.2f} M parameters, {source}")

    @staticmethod
    def from_state_dict(state: dict[str, Tensor], config: GFPGANConfig | None = None,
                        device: str | torch.device = "cpu", weights: Path | None = None) -> "GFPGAN":
        """Build from a state dict (upstream key names, optional "params_ema." prefix); config inferred if None."""
        state = strip_checkpoint_prefix(state)
        config = config or infer_config(state)
        with torch.device("meta"):  # shapes only: the real tensors come from `state`
            network = GFPGANv1Clean(config)
        check_state_dict(state, network.state_dict(), weights.name if weights is not None else "the state dict")
        network.load_state_dict({key: value.float() for key, value in state.items()}, strict=True, assign=True)
        return GFPGAN(network, device, weights)

    @staticmethod
    def load(folder: str | Path | None = None, device: str | torch.device = "cpu") -> "GFPGAN":
        """Load from `folder` (or a .safetensors file); FileNotFoundError saying what to put there when absent,
        ValueError when the weights do not fit GFPGANv1Clean."""
        where = Path(folder).expanduser() if folder is not None else default_model_dir()
        checkpoint = find_weights(where)
        if checkpoint is None:
            raise FileNotFoundError(missing_message(where))
        config_path = checkpoint.parent / "config.json"
        overrides = {}
        if config_path.is_file():
            try:
                overrides = json.loads(config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"{config_path}: not valid JSON ({error})") from None
            if not isinstance(overrides, dict):
                raise ValueError(f"{config_path}: expected a JSON object of GFPGANConfig fields")
        state = strip_checkpoint_prefix(read_safetensors(checkpoint))
        try:
            config = infer_config(state, overrides)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{checkpoint.name}: {error}") from None
        return GFPGAN.from_state_dict(state, config, device, checkpoint)

    def restore_faces(self, faces: np.ndarray, batch_size: int = 4) -> np.ndarray:
        """Aligned faces [N, S, S, 3] uint8 RGB (S = face_size) -> restored [N, S, S, 3] uint8."""
        if faces.ndim != 4 or faces.shape[1:] != (self.face_size, self.face_size, 3) or faces.dtype != np.uint8:
            raise ValueError(f"faces must be uint8 [N, {self.face_size}, {self.face_size}, 3], got {faces.dtype} "
                             f"{faces.shape}")
        restored = np.empty_like(faces)
        with torch.inference_mode():
            for start in range(0, len(faces), batch_size):
                chunk = torch.from_numpy(faces[start:start + batch_size]).to(self.device)
                x = (chunk.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5  # [b, 3, S, S] in [-1, 1]
                y = self.network(x).clamp(-1.0, 1.0)
                pixels = torch.round((y + 1.0) * 0.5 * 255.0).to(torch.uint8).permute(0, 2, 3, 1)
                restored[start:start + len(chunk)] = pixels.cpu().numpy()
        return restored

    def restore(self, frames: np.ndarray, landmarks: np.ndarray, strength: float = 0.7,
                batch_size: int = 4) -> np.ndarray:
        """frames [B, H, W, 3] uint8 RGB, landmarks [B, 5, 2] pixel (x, y) (left eye, right eye, nose, left
        and right mouth corner; "left" = smaller x) -> [B, H, W, 3] uint8: each face restored and blended in,
        strength 0 = the frames unchanged, 1 = fully restored. A frame whose landmarks are all NaN (no face
        found) passes through unchanged."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB [B, H, W, 3], got {frames.dtype} {frames.shape}")
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.shape != (len(frames), 5, 2):
            raise ValueError(f"landmarks must be [B, 5, 2] = [{len(frames)}, 5, 2], got {landmarks.shape}")
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        no_face = np.all(np.isnan(landmarks), axis=(1, 2))
        if not np.all(np.isfinite(landmarks[~no_face])):
            raise ValueError("landmarks must be finite (or all NaN for a frame without a face)")
        output = frames.copy()
        with_face = np.flatnonzero(~no_face)
        if strength == 0.0 or len(with_face) == 0:
            return output
        template = face_align.face_template(self.face_size)
        matrices = [face_align.estimate_similarity(landmarks[index], template) for index in with_face]
        crops = np.stack([face_align.warp_to_face(frames[index], matrix, self.face_size)
                          for index, matrix in zip(with_face, matrices)])
        restored = self.restore_faces(crops, batch_size)
        frame_size = frames.shape[1:3]
        for index, matrix, face in zip(with_face, matrices, restored):
            pasted = face_align.warp_to_frame(face, matrix, frame_size)
            mask = face_align.paste_mask(matrix, self.face_size, frame_size)
            output[index] = face_align.blend(frames[index], pasted, mask, strength)
        return output
