"""The embedded default avatar, so the studio works on a fresh machine before anyone uploads anything.

Built on first use through the photo-avatar path (`avatar.preprocess.preprocess_photo` +
`avatar.photo.build_photo_avatar`) from the portrait scikit-image ships (`skimage.data.astronaut()`, a
public-domain NASA photo of Eileen Collins), then cached in the data folder as the avatar "astronaut". A cached
one built by an older recipe (`RECIPE`: training settings it must have) is rebuilt once, in place.
"""
from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Callable

DEFAULT_NAME = "astronaut"
# training settings (`avatar.train.TrainConfig`) the cached default avatar must have been built with
RECIPE = {"frozen_parts": ["tongue"], "unseen_mouth_pixels": 1.0}
_BUILD_LOCK = threading.Lock()


def ensure_default_avatar(home: Path, progress: Callable[[str, float, dict], None] | None = None) -> Path:
    """Folder of the default avatar in `home`, building it (about a minute) if it is not there yet."""
    from avatar.library import avatar_path, checkpoint_path

    folder = avatar_path(DEFAULT_NAME, home)
    if _is_current(folder):
        return folder
    with _BUILD_LOCK:
        if _is_current(folder):
            return folder
        import numpy as np
        from PIL import Image
        from skimage import data

        from avatar.photo import build_photo_avatar
        from avatar.preprocess import preprocess_photo

        report = progress or (lambda stage, fraction, info: None)
        report("default avatar", 0.0, {"message": "building the default avatar (first use only, about a minute)"})
        with tempfile.TemporaryDirectory(prefix="default-avatar-") as scratch:
            photo = Path(scratch) / "astronaut.png"
            Image.fromarray(np.asarray(data.astronaut())).save(photo)
            clip = preprocess_photo(photo, show_bar=False)
            build_photo_avatar(clip, DEFAULT_NAME, folder, checkpoint_path(DEFAULT_NAME, home),
                               lambda stage, fraction, info=None: report("default avatar", fraction, {"step": stage}))
        report("default avatar", 1.0, {})
    return folder


def _is_current(folder: Path) -> bool:
    """Whether `folder` holds a default avatar built with the current `RECIPE`."""
    try:
        config = json.loads((folder / "avatar.json").read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(config, dict) and all(config.get(key) == value for key, value in RECIPE.items())
