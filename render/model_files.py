"""Optional model weights: which are present, and upstream `.pth` checkpoints converted to safetensors.

    python app.py models                                   # what is in models/ and what each enables
    python app.py models convert GFPGANv1.4.pth models/gfpgan/GFPGANv1.4.safetensors

The project never unpickles a file at run time; weights are read from `.safetensors` only. Upstream GFPGAN and
Real-ESRGAN publish `.pth` files (pickles), so `convert` reads one once, with PyTorch's restricted loader
(`weights_only=True`: tensors and plain containers only, no code runs), keeps the tensors of its state dict
("params_ema" first, then "params" or "state_dict", as upstream stores them) and writes them as safetensors.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

STATE_DICT_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "ema_model_state_dict")
MAX_CHECKPOINT_BYTES = 2_000_000_000


@dataclass(frozen=True)
class OptionalModel:
    name: str
    enables: str
    find: Callable[[], Path | None]  # the weights file (or folder) found, None if absent
    folder: Callable[[], Path]
    expects: str


def optional_models() -> list[OptionalModel]:
    from audio import f5tts
    from render import gfpgan, realesrgan, wav2lip

    def f5_found():
        found = f5tts.find_model()
        return None if found is None else found.model

    return [
        OptionalModel("Real-ESRGAN", "say --enhance upscale (sharper upscaling than Lanczos)",
                      realesrgan.find_weights, realesrgan.default_model_dir,
                      "RealESRGAN_x4plus or realesr-general-x4v3 as .safetensors"),
        OptionalModel("Wav2Lip", "say --enhance lips (2D lip sync redrawn over the avatar's mouth)",
                      wav2lip.find_weights, wav2lip.default_model_dir, "wav2lip_gan or wav2lip as .safetensors"),
        OptionalModel("GFPGAN", "say --enhance face (restored eyes, teeth and skin)",
                      gfpgan.find_weights, gfpgan.default_model_dir, "GFPGANv1.4 (or v1.3) as .safetensors"),
        OptionalModel("F5-TTS", "voice speak --backend f5tts (zero-shot voice cloning)",
                      f5_found, f5tts.default_model_dir,
                      "config.json, vocab.txt, model*.safetensors, vocoder*.safetensors"),
    ]


def state_dict_of(checkpoint) -> dict:
    """The tensors of an upstream checkpoint: its "params_ema" / "params" / "state_dict" entry if it has one,
    else the checkpoint itself; non-tensor entries are dropped. ValueError if no tensor is left."""
    import torch

    if not isinstance(checkpoint, dict):
        raise ValueError(f"the checkpoint is a {type(checkpoint).__name__}, not a dictionary of tensors")
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    tensors = {str(k): v.detach().contiguous().clone() for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError("the checkpoint holds no tensors")
    return tensors


def convert_checkpoint(source: Path, target: Path, overwrite: bool = False) -> int:
    """Upstream `.pth` -> `.safetensors` (see the module docstring); returns the number of tensors written.
    Nothing is written when anything fails; an existing target is kept unless `overwrite`."""
    import pickle

    import torch
    from safetensors.torch import save_file

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    if source.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{source.name} is {source.stat().st_size / 1e9:.1f} GB; the limit is "
                         f"{MAX_CHECKPOINT_BYTES / 1e9:.0f} GB")
    if target.suffix != ".safetensors":
        raise ValueError(f"the output should end in .safetensors, got {target.name}")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {target.parent}")
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; pass --overwrite to replace it")
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{source.name} is not a PyTorch checkpoint of plain tensors ({first_line})") from None
    tensors = state_dict_of(checkpoint)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(temporary))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return len(tensors)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="optional model weights: list them, convert .pth files",
                                   description="List the optional models found in models/, or convert an "
                                               "upstream .pth checkpoint to .safetensors.")
    actions = models.add_subparsers(dest="models_action", metavar="ACTION")
    convert = actions.add_parser("convert", help="upstream .pth -> .safetensors (tensors only, no code runs)")
    convert.add_argument("source", type=Path, help="the .pth file (e.g. GFPGANv1.4.pth, RealESRGAN_x4plus.pth)")
    convert.add_argument("target", type=Path, help="the .safetensors file to write")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing target")
    models.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    if getattr(args, "models_action", None) == "convert":
        count = convert_checkpoint(args.source, args.target, args.overwrite)
        print(f"wrote {args.target} ({count} tensors)")
        return 0
    for model in optional_models():
        found = model.find()
        state = f"found: {found}" if found is not None else f"absent: put {model.expects} in {model.folder()}"
        print(f"{model.name:12} {model.enables}\n{'':12} {state}")
    print("Nothing is downloaded; convert upstream .pth files with: "
          "python app.py models convert IN.pth OUT.safetensors")
    return 0
