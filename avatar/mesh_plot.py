"""Debug views of the extended mesh: front and side projections with part colours (PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avatar.mesh import PARTS, build_rig, build_topology, extend_vertices, head_axes

PART_COLOURS = {
    "face": "#f2c9a0", "shell": "#8a6a4a", "upper_teeth": "#ffffff", "lower_teeth": "#dddddd",
    "tongue": "#d0505a", "mouth_cavity": "#401018", "neck": "#c9a27a", "eyes": "#6a8fd0",
}


def sample_landmarks(path: str | None = None) -> Tensor:
    """Neutral landmarks [478, 3]: from a .npy file, or FaceMesh on skimage's astronaut photo
    (x, y, z scaled by the image width/height so the units are isotropic pixels)."""
    if path:
        landmarks = torch.from_numpy(np.load(path, allow_pickle=False)).to(torch.float64)
        if tuple(landmarks.shape) != (478, 3):
            raise ValueError(f"{path} must hold a [478, 3] array, got {list(landmarks.shape)}")
        return landmarks
    import mediapipe as mp
    import skimage.data

    image = skimage.data.astronaut()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise ValueError("FaceMesh found no face in the astronaut photo")
    h, w = image.shape[:2]
    points = [[p.x * w, p.y * h, p.z * w] for p in result.multi_face_landmarks[0].landmark]
    return torch.tensor(points, dtype=torch.float64)


def _draw(ax, points2d: np.ndarray, depth: np.ndarray, faces: np.ndarray, parts: np.ndarray, title: str) -> None:
    from matplotlib.collections import PolyCollection

    order = np.argsort(depth[faces].mean(1))  # painter's algorithm: far first
    colours = [PART_COLOURS[PARTS[p]] for p in parts[order]]
    ax.add_collection(PolyCollection(points2d[faces[order]], facecolors=colours, edgecolors="k", linewidths=0.15))
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.axis("off")


def plot_extended_mesh(neutral_landmarks: Tensor, out_png: str | Path, jaw_open: float = 0.35) -> None:
    """Front, side and back views of the neutral mesh, plus a front view with the jaw opened by
    `jaw_open` x the eye-corner distance (chin/lower-lip landmarks moved down)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    topology = build_topology()
    rig = build_rig(neutral_landmarks)
    origin, axes, unit = head_axes(neutral_landmarks)
    opened = neutral_landmarks.clone()
    canonical = (neutral_landmarks - origin) @ axes / unit
    # Crude jaw opening for the picture: landmarks below the lip line (lower lip, chin) move down.
    weight = torch.clamp((canonical[13, 1] - canonical[:, 1]) / 0.1, 0, 1)
    opened = opened - (weight * jaw_open * unit)[:, None] * axes[:, 1]
    faces = topology.faces.numpy()
    parts = topology.face_part.numpy()
    fig, grid = plt.subplots(1, 4, figsize=(20, 6))
    for ax, landmarks, view, title in (
        (grid[0], neutral_landmarks, "front", "front (neutral)"),
        (grid[1], neutral_landmarks, "side", "side (neutral, face to the right)"),
        (grid[2], neutral_landmarks, "back", "back"),
        (grid[3], opened, "front", f"front, jaw open {jaw_open:.2f} units (zoom on mouth)"),
    ):
        v = ((extend_vertices(landmarks, rig) - origin) @ axes / unit).numpy()  # canonical a, b, c
        if view == "front":
            mask = np.ones(len(faces), bool)
            _draw(ax, v[:, [0, 1]], v[:, 2], faces[mask], parts[mask], title)
        elif view == "side":
            _draw(ax, v[:, [2, 1]], v[:, 0], faces, parts, title)
        else:
            _draw(ax, v[:, [0, 1]] * [-1, 1], -v[:, 2], faces, parts, title)
        if "zoom" in title:
            ax.set_xlim(-0.6, 0.6)
            ax.set_ylim(-1.4, -0.2)
    fig.legend(handles=[Patch(color=PART_COLOURS[p], label=p) for p in PARTS], loc="lower center", ncol=len(PARTS))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
