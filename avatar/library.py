"""The data folder that holds the avatar library, avatar names, and atomic folder saves.

The data folder is `$TALKING_AVATAR_HOME` when set, else `~/.talking_avatar`. Avatars live in
`<data folder>/avatars/NAME/`; training checkpoints in `<data folder>/checkpoints/NAME/`.

Saves are atomic at the folder level: everything is written into a hidden temporary folder beside the
target, then renamed into place, so a crash or a bad input never leaves a half-written avatar and never
loses the one that was there before.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DEFAULT_HOME = Path("~/.talking_avatar")
HOME_ENV = "TALKING_AVATAR_HOME"
MAX_NAME_LENGTH = 64
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def data_home() -> Path:
    """The data folder: `$TALKING_AVATAR_HOME` if set and non-empty, else `~/.talking_avatar` (expanded)."""
    configured = os.environ.get(HOME_ENV, "").strip()
    return (Path(configured) if configured else DEFAULT_HOME).expanduser()


def avatars_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "avatars"


def checkpoints_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "checkpoints"


def validate_name(name: str) -> str:
    """Return `name` stripped if it is a usable avatar name, else raise ValueError saying why.

    Allowed: 1-64 characters of letters, digits, `_`, `-`, `.`, starting with a letter or digit. That rules
    out path separators, `..`, hidden names and characters that are awkward in file names and URLs.
    """
    if not isinstance(name, str):
        raise ValueError(f"avatar name must be a string, got {type(name).__name__}")
    stripped = name.strip()
    if not stripped:
        raise ValueError("avatar name is empty; choose a name such as 'alice'")
    if "/" in stripped or "\\" in stripped or ".." in stripped:
        raise ValueError(f"avatar name {name!r} must not contain '/', '\\' or '..' (it would leave the data folder)")
    if len(stripped) > MAX_NAME_LENGTH:
        raise ValueError(f"avatar name is {len(stripped)} characters long; the limit is {MAX_NAME_LENGTH}")
    if not _NAME_PATTERN.match(stripped):
        raise ValueError(
            f"avatar name {name!r} has unsupported characters; use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return stripped


def check_upload(path: str | Path, max_bytes: int, kind: str = "uploads") -> Path:
    """An uploaded file that exists, is not empty and is at most `max_bytes` -> its Path (else a clear error that
    names the `kind` of upload, plural, e.g. "reference clips")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path.name} is empty")
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size / 1e6:.1f} MB; {kind} are limited to {max_bytes / 1e6:.0f} MB")
    return path


def avatar_path(name: str, home: Path | None = None) -> Path:
    """Folder of avatar `name` (validated; it need not exist)."""
    folder = avatars_dir(home) / validate_name(name)
    # Belt and braces: the validated name cannot escape, but check the resolved path anyway.
    root = avatars_dir(home).resolve()
    if root not in folder.resolve().parents:
        raise ValueError(f"avatar name {name!r} would leave the data folder")
    return folder


def checkpoint_path(name: str, home: Path | None = None) -> Path:
    return checkpoints_dir(home) / validate_name(name)


def avatar_exists(name: str, home: Path | None = None) -> bool:
    return (avatar_path(name, home) / "avatar.json").is_file()


def require_new_name(name: str, home: Path | None = None, overwrite: bool = False) -> str:
    """Validate `name` and, unless `overwrite`, refuse a name that an avatar already uses."""
    clean = validate_name(name)
    if not overwrite and avatar_exists(clean, home):
        raise ValueError(f"an avatar named {clean!r} exists already in {avatars_dir(home)}; choose another name")
    return clean


def list_avatars(home: Path | None = None) -> list[str]:
    """Names of the complete avatars (folders holding an avatar.json), sorted."""
    root = avatars_dir(home)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "avatar.json").is_file())


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder to write into; on success it replaces `target` in one rename.

    On any exception the temporary folder is deleted and `target` is untouched. When `target` exists it is
    first renamed aside and only deleted after the new folder is in place.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = target.parent / f".{target.name}.tmp-{tag}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = target.parent / f".{target.name}.old-{tag}"
    if target.exists():
        os.replace(target, previous)
    try:
        os.replace(staging, target)
    except BaseException:
        if previous.exists():
            os.replace(previous, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
