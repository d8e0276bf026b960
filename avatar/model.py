"""The trained avatar: Gaussians bound to an extended face mesh, its rig, camera and idle tracks.

On disk an avatar is a folder:

    avatar.json               format_version, name, camera, config, training stats, held-out metrics, parts
    gaussians.safetensors     parent [N] int64, local_means [N,3], local_quats [N,4] (wxyz),
                              local_log_scales [N,3], opacity_logits [N], colors [N,3]
    rig.safetensors           neutral [478,3], expression_basis [K,478,3], faces [F,3] int64, face_part [F] int64,
                              mesh.* = the extended-mesh rig (`avatar.mesh.ExtendedMeshRig.to_tensors`)
    tracks.safetensors        rotations [T,3,3], translations [T,3], expression_coeffs [T,K] of the training video
    background.safetensors    plate [H,W,3] uint8

The saved `faces` must equal the topology that `avatar.mesh.build_topology` gives for the rig's resolution,
which catches a mesh-topology change between versions of the code.
Loading validates every shape, dtype, range and finiteness and never unpickles anything.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from avatar.library import atomic_folder
from avatar.rig import Intrinsics

FORMAT_VERSION = 1
NUM_LANDMARKS = 478
GAUSSIAN_KEYS = ("parent", "local_means", "local_quats", "local_log_scales", "opacity_logits", "colors")


@dataclass
class Avatar:
    """Everything needed to render the person: Gaussians (face-local), rig, camera, tracks, background."""

    name: str
    camera: Intrinsics  # of the avatar's crop; the camera sits at the origin looking down +z
    gaussians: dict[str, Tensor]  # GAUSSIAN_KEYS, see module docstring
    neutral: Tensor  # [478, 3] head-frame neutral landmarks
    expression_basis: Tensor  # [K, 478, 3]
    faces: Tensor  # [F, 3] int64, extended mesh
    face_part: Tensor  # [F] int64, index into avatar.mesh.PARTS
    mesh_rig: dict[str, Tensor]  # ExtendedMeshRig.to_tensors()
    mesh_rig_meta: dict[str, Any]  # ExtendedMeshRig.metadata()
    rotations: Tensor  # [T, 3, 3] head pose of the training video (head frame -> camera)
    translations: Tensor  # [T, 3]
    expression_coeffs: Tensor  # [T, K]
    background: Tensor  # [H, W, 3] uint8
    fps: float
    config: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        validate_avatar(self)

    @property
    def num_gaussians(self) -> int:
        return int(self.gaussians["parent"].shape[0])

    @property
    def num_expressions(self) -> int:
        return int(self.expression_basis.shape[0])

    def extended_rig(self):
        """The extended-mesh rig (`avatar.mesh.ExtendedMeshRig`), validated."""
        from avatar.mesh import ExtendedMeshRig

        return ExtendedMeshRig.from_tensors(self.mesh_rig, self.mesh_rig_meta)

    def camera_vertices(self, rotations: Tensor, translations: Tensor, coeffs: Tensor) -> Tensor:
        """Extended-mesh vertices in camera space [T, V, 3] for head poses and expression coefficients.

        rotations: [T, 3, 3] head -> camera; translations: [T, 3] metres; coeffs: [T, K] in this avatar's basis.
        """
        return posed_vertices(self.neutral, self.expression_basis, self.extended_rig(), rotations, translations, coeffs)

    def render(self, vertices: Tensor, background: Tensor, camera=None, backend: str = "auto",
               colors: Tensor | None = None):
        """Render one frame from camera-space vertices [V, 3] over background ([3] or [H, W, 3] float);
        colors [N, 3] replaces the Gaussians' own for this frame (e.g. `avatar.eyelids.colors_for_blink`)."""
        from render import render_gaussians

        from avatar.binding import bind_gaussians

        g = self.gaussians
        bound = bind_gaussians(vertices, self.faces, g["parent"], g["local_means"], g["local_quats"], g["local_log_scales"])
        return render_gaussians(bound.means, bound.quats, bound.log_scales, g["opacity_logits"],
                                g["colors"] if colors is None else colors, camera or self.camera.to_camera(),
                                background, backend=backend)

    def save(self, folder: Path, extra_files: dict[str, Path] | None = None) -> Path:
        """Write the avatar folder atomically (a failure leaves any previous avatar there untouched).

        extra_files: name -> existing file copied in as well (preview PNGs, curves).
        """
        validate_avatar(self)
        folder = Path(folder)
        with atomic_folder(folder) as staging:
            for file_name, source in (extra_files or {}).items():
                if "/" in file_name or file_name.startswith("."):
                    raise ValueError(f"extra file name {file_name!r} must be a plain file name")
                shutil.copyfile(source, staging / file_name)
            save_file({k: self.gaussians[k].detach().contiguous().cpu() for k in GAUSSIAN_KEYS}, str(staging / "gaussians.safetensors"))
            save_file(
                {"neutral": self.neutral.float().contiguous(), "expression_basis": self.expression_basis.float().contiguous(),
                 "faces": self.faces.long().contiguous(), "face_part": self.face_part.long().contiguous(),
                 **{f"mesh.{k}": v.contiguous() for k, v in self.mesh_rig.items()}},
                str(staging / "rig.safetensors"),
            )
            save_file(
                {"rotations": self.rotations.float().contiguous(), "translations": self.translations.float().contiguous(),
                 "expression_coeffs": self.expression_coeffs.float().contiguous()},
                str(staging / "tracks.safetensors"),
            )
            save_file({"plate": self.background.contiguous()}, str(staging / "background.safetensors"))
            meta = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "camera": self.camera.__dict__,
                "fps": self.fps,
                "num_gaussians": self.num_gaussians,
                "num_expressions": self.num_expressions,
                "parts": self.parts,
                "mesh_rig": self.mesh_rig_meta,
                "config": self.config,
                "stats": self.stats,
                "metrics": self.metrics,
            }
            (staging / "avatar.json").write_text(json.dumps(meta, indent=2, allow_nan=False))
        return folder

    @staticmethod
    def load(folder: Path) -> "Avatar":
        """Read and validate an avatar folder; raises FileNotFoundError or ValueError with a clear sentence."""
        folder = Path(folder)
        meta_path = folder / "avatar.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} is not an avatar folder (no avatar.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{meta_path} is not valid JSON: {error}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_path} must hold a JSON object")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{folder.name}: avatar format version {version!r} is not supported (this build reads {FORMAT_VERSION})")
        tensors = {}
        for file_name in ("gaussians", "rig", "tracks", "background"):
            path = folder / f"{file_name}.safetensors"
            if not path.is_file():
                raise FileNotFoundError(f"avatar {folder.name} is incomplete: {path.name} is missing")
            try:
                tensors[file_name] = load_file(str(path))
            except Exception as error:  # safetensors raises its own error types for corrupt headers
                raise ValueError(f"avatar {folder.name}: {path.name} is corrupt ({error})") from None
        try:
            fps = float(meta["fps"])
            name = str(meta["name"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{meta_path} lacks a valid field: {error}") from None
        for key in ("neutral", "expression_basis", "faces", "face_part"):
            if key not in tensors["rig"]:
                raise ValueError(f"avatar {folder.name}: rig.safetensors lacks '{key}'")
        for key in ("rotations", "translations", "expression_coeffs"):
            if key not in tensors["tracks"]:
                raise ValueError(f"avatar {folder.name}: tracks.safetensors lacks '{key}'")
        if "plate" not in tensors["background"]:
            raise ValueError(f"avatar {folder.name}: background.safetensors lacks 'plate'")
        return Avatar(
            name=name,
            camera=Intrinsics.from_dict(meta.get("camera") or {}),
            gaussians=dict(tensors["gaussians"]),
            neutral=tensors["rig"]["neutral"],
            expression_basis=tensors["rig"]["expression_basis"],
            faces=tensors["rig"]["faces"],
            face_part=tensors["rig"]["face_part"],
            mesh_rig={k[len("mesh."):]: v for k, v in tensors["rig"].items() if k.startswith("mesh.")},
            mesh_rig_meta=dict(meta.get("mesh_rig") or {}),
            rotations=tensors["tracks"]["rotations"],
            translations=tensors["tracks"]["translations"],
            expression_coeffs=tensors["tracks"]["expression_coeffs"],
            background=tensors["background"]["plate"],
            fps=fps,
            config=dict(meta.get("config") or {}),
            stats=dict(meta.get("stats") or {}),
            metrics=dict(meta.get("metrics") or {}),
            parts=list(meta.get("parts") or []),
        )


def posed_vertices(neutral: Tensor, basis: Tensor, rig, rotations: Tensor, translations: Tensor,
                   coeffs: Tensor, body_warps: Tensor | None = None) -> Tensor:
    """Camera-space extended-mesh vertices [T, V, 3]: (neutral + coeffs·basis) -> extend_vertices -> R v + t.

    neutral: [478, 3]; basis: [K, 478, 3]; rotations: [T, 3, 3]; translations: [T, 3]; coeffs: [T, K];
    body_warps: [T, 2, 3] tracked body motion (`avatar.body_tracking`); None = the rig's sway predicted from
    the head poses where it has one (animation), else the still body.
    """
    from avatar.mesh import extend_vertices

    t = rotations.shape[0]
    if rotations.shape != (t, 3, 3) or translations.shape != (t, 3) or coeffs.shape != (t, basis.shape[0]):
        raise ValueError(f"poses and coefficients must be [T, 3, 3], [T, 3], [T, {basis.shape[0]}]; got "
                         f"{tuple(rotations.shape)}, {tuple(translations.shape)}, {tuple(coeffs.shape)}")
    landmarks = neutral[None] + torch.einsum("tk,kvc->tvc", coeffs.float(), basis.float())
    if body_warps is None and rig.body_sway is not None:
        from avatar.body_tracking import sway_warps

        body_warps = sway_warps(rig.body_sway, rotations.float(), translations.float(), rig.body_rotation,
                                rig.body_translation)
    # With the poses the neck blends towards the rig's body pose (training builds its vertices here too), moved
    # by the frame's body warp when there is one: the shoulders follow the body, not the nodding head.
    head = extend_vertices(landmarks, rig, rotations.float(), translations.float(),
                           None if body_warps is None else body_warps.float())  # [T, V, 3]
    return head @ rotations.float().transpose(1, 2) + translations.float()[:, None, :]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_float(name: str, tensor: Tensor, shape: tuple) -> None:
    _require(isinstance(tensor, Tensor), f"avatar {name} must be a tensor")
    _require(tensor.dtype in (torch.float32, torch.float64), f"avatar {name} must be float32, got {tensor.dtype}")
    _require(tensor.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, tensor.shape)),
             f"avatar {name} must have shape {tuple('?' if s is None else s for s in shape)}, got {tuple(tensor.shape)}")
    _require(bool(torch.isfinite(tensor).all()), f"avatar {name} has NaN or infinite values")


def validate_avatar(avatar: Avatar) -> None:
    """Check shapes, dtypes, index ranges and finiteness of every tensor; ValueError names the first problem."""
    _require(isinstance(avatar.name, str) and avatar.name != "", "avatar name must be a non-empty string")
    _require(math.isfinite(avatar.fps) and 1 <= avatar.fps <= 240, f"avatar fps must be in [1, 240], got {avatar.fps}")
    g = avatar.gaussians
    missing = [k for k in GAUSSIAN_KEYS if k not in g]
    _require(not missing, f"avatar Gaussians lack {missing}")
    parent = g["parent"]
    _require(parent.dtype == torch.int64 and parent.ndim == 1, f"avatar parent must be int64 [N], got {parent.dtype} {tuple(parent.shape)}")
    n = int(parent.shape[0])
    _require(n > 0, "avatar has no Gaussians")
    _check_float("local_means", g["local_means"], (n, 3))
    _check_float("local_quats", g["local_quats"], (n, 4))
    _check_float("local_log_scales", g["local_log_scales"], (n, 3))
    _check_float("opacity_logits", g["opacity_logits"], (n,))
    _check_float("colors", g["colors"], (n, 3))
    _check_float("neutral", avatar.neutral, (NUM_LANDMARKS, 3))
    _check_float("expression_basis", avatar.expression_basis, (None, NUM_LANDMARKS, 3))
    k = int(avatar.expression_basis.shape[0])
    faces = avatar.faces
    _require(faces.dtype == torch.int64 and faces.ndim == 2 and faces.shape[1] == 3 and faces.shape[0] > 0,
             f"avatar faces must be int64 [F, 3], got {faces.dtype} {tuple(faces.shape)}")
    _require(int(faces.min()) >= 0, "avatar faces have negative vertex indices")
    _require(avatar.face_part.dtype == torch.int64 and tuple(avatar.face_part.shape) == (faces.shape[0],),
             f"avatar face_part must be int64 [{faces.shape[0]}], got {avatar.face_part.dtype} {tuple(avatar.face_part.shape)}")
    _validate_mesh(avatar)
    _require(int(parent.min()) >= 0 and int(parent.max()) < faces.shape[0],
             f"avatar parent triangle indices must be in [0, {faces.shape[0]}), got [{int(parent.min())}, {int(parent.max())}]")
    _check_float("rotations", avatar.rotations, (None, 3, 3))
    t = int(avatar.rotations.shape[0])
    _require(t > 0, "avatar tracks are empty")
    _check_float("translations", avatar.translations, (t, 3))
    _check_float("expression_coeffs", avatar.expression_coeffs, (t, k))
    bg = avatar.background
    _require(bg.dtype == torch.uint8 and bg.ndim == 3 and bg.shape[2] == 3,
             f"avatar background must be uint8 [H, W, 3], got {bg.dtype} {tuple(bg.shape)}")
    _require(isinstance(avatar.camera, Intrinsics), "avatar camera must be an avatar.rig.Intrinsics")


def _validate_mesh(avatar: Avatar) -> None:
    """The extended-mesh rig must load and its topology must be the one the avatar was trained on."""
    from avatar.mesh import build_topology

    try:
        rig = avatar.extended_rig()
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"avatar extended-mesh rig is invalid: {error}") from None
    topology = build_topology(rig.resolution)
    _require(topology.faces.shape == avatar.faces.shape and torch.equal(topology.faces, avatar.faces),
             "avatar mesh topology differs from this version's extended mesh; retrain the avatar")
    _require(torch.equal(topology.face_part, avatar.face_part), "avatar face parts differ from the extended mesh")
