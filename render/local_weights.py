"""Where optional models' weights live and how their files are checked: one rule for GFPGAN, Real-ESRGAN and
Wav2Lip (`render.gfpgan`, `render.realesrgan`, `render.wav2lip`).

- A model's folder is `<repo>/models/<name>/` unless its environment variable names another.
- Weights are `.safetensors` files only (the project never unpickles a file; `python app.py models convert`
  turns upstream `.pth` files into safetensors once). In a folder, the caller's `name` (file name or stem)
  wins, else the first of the model's preferred stems that is there, else the last file in sorted order.
- A folder that holds only `.pth` files gets a message that says so and how to convert them.
- A state dict must fit the network exactly: the error names the first missing, unexpected and wrongly shaped
  keys, so a wrong or truncated file is told apart from a wrong folder.
Nothing here reads a weights file's contents except `check_fits`' shapes; finding is cheap.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
CONVERT_HINT = "python app.py models convert IN.pth OUT.safetensors"


def model_dir(env_name: str, default: Path) -> Path:
    """`$env_name` if set (user paths expanded), else `default`."""
    configured = os.environ.get(env_name, "").strip()
    return Path(configured).expanduser() if configured else default


def find_safetensors(where: Path, label: str, name: str | None = None,
                     preferred: tuple[str, ...] = ()) -> Path | None:
    """The weights file at `where` (a .safetensors file, or a folder; see the module docstring for the choice in a
    folder); None if there is none. FileNotFoundError if `name` is given and not there. label: the model's
    name for messages (e.g. "Real-ESRGAN")."""
    where = Path(where).expanduser()
    if where.is_file():
        return where if where.suffix == ".safetensors" else None
    candidates = sorted(where.glob("*.safetensors")) if where.is_dir() else []
    if not candidates:
        return None
    if name is not None:
        for path in candidates:
            if name in (path.name, path.stem):
                return path
        raise FileNotFoundError(f"no {label} weights called {name!r} in {where}; there are "
                                f"{[p.name for p in candidates]}. Nothing is downloaded")
    by_stem = {path.stem: path for path in candidates}
    return next((by_stem[stem] for stem in preferred if stem in by_stem), candidates[-1])


def pickle_hint(where: Path) -> str:
    """' (found [...]: convert them ...)' when `where` is a folder holding .pth files, else ''."""
    pickles = sorted(p.name for p in Path(where).glob("*.pth")) if Path(where).is_dir() else []
    return f" (found {pickles}: convert them to safetensors, .pth is never unpickled)" if pickles else ""


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a .safetensors file; ValueError naming the file when it cannot be read as one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{Path(path).name} is not a readable safetensors file ({error})") from None


def keep_prefixed(state: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """The entries under the first of `prefixes` that any key has, without it (upstream's "params_ema." before
    "params."); a state with none of them is returned as it is."""
    for prefix in prefixes:
        if any(key.startswith(prefix) for key in state):
            return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return dict(state)


def check_fits(expected: dict[str, Tensor], state: dict[str, Tensor], source: str, what: str) -> None:
    """ValueError naming the first missing / unexpected / other-shaped keys if `state` does not fit the
    `expected` state dict. source: the file's name; what: the network, e.g. "a GFPGANv1Clean checkpoint"."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
             if key in state and tuple(state[key].shape) != tuple(value.shape)]
    if missing or unexpected or wrong:
        raise ValueError(f"{source} is not {what}: {len(missing)} missing keys (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} of another shape "
                         f"(e.g. {wrong[:3]})")
