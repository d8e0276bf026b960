"""A tiny synthetic avatar for the talking tests: Gaussians on the astronaut's face mesh, no training.

It renders in milliseconds at 64x64, has a real extended-mesh rig and a small random expression basis and
pose track, so motion, pipeline and studio tests exercise the real code paths.
"""
from __future__ import annotations

import math

import torch

from avatar.model import Avatar
from avatar.rig import Intrinsics


def tiny_avatar(name: str = "tiny", size: int = 64, k: int = 4, t: int = 50, gaussians_per_face: int = 1) -> Avatar:
    from avatar.mesh import build_rig, build_topology
    from avatar.mesh_plot import sample_landmarks

    g = torch.Generator().manual_seed(3)
    neutral = (sample_landmarks() * 0.063 / 60.0).float()
    neutral = neutral - neutral.mean(0)
    rig = build_rig(neutral)
    topology = build_topology(rig.resolution)
    faces = topology.faces.shape[0]
    parent = torch.arange(faces).repeat_interleave(gaussians_per_face)
    n = parent.shape[0]
    palette = {"face": (0.85, 0.65, 0.5), "shell": (0.3, 0.2, 0.1), "upper_teeth": (0.95, 0.95, 0.9),
               "lower_teeth": (0.95, 0.95, 0.9), "tongue": (0.8, 0.3, 0.3), "mouth_cavity": (0.15, 0.02, 0.02),
               "neck": (0.8, 0.6, 0.45), "eyes": (0.2, 0.3, 0.6)}
    from avatar.mesh import PARTS

    part_colors = torch.tensor([palette.get(p, (0.5, 0.5, 0.5)) for p in PARTS])
    colors = part_colors[topology.face_part[parent]] + torch.rand(n, 3, generator=g) * 0.05
    # The face 0.5 m in front of the camera of the face looking at it (OpenCV: +z forward, y down).
    rotation = torch.eye(3)  # the landmarks are in image-like axes (x right, y down, z away)
    angles = torch.randn(t, 3, generator=g) * 0.02
    rotations = torch.stack([_rodrigues(a) @ rotation for a in angles])
    translations = torch.tensor([0.0, 0.0, 0.5]) + torch.randn(t, 3, generator=g) * 0.002
    return Avatar(
        name=name, camera=Intrinsics(size * 2.0, size * 2.0, size / 2, size / 2, size, size),
        gaussians={"parent": parent, "local_means": torch.zeros(n, 3), "local_quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                   "local_log_scales": torch.full((n, 3), math.log(0.6)), "opacity_logits": torch.full((n,), 3.0),
                   "colors": colors},
        neutral=neutral, expression_basis=torch.randn(k, 478, 3, generator=g) * 1e-3, faces=topology.faces,
        face_part=topology.face_part, mesh_rig=rig.to_tensors(), mesh_rig_meta=rig.metadata(),
        rotations=rotations, translations=translations, expression_coeffs=torch.randn(t, k, generator=g),
        background=torch.full((size, size, 3), 90, dtype=torch.uint8), fps=25.0, config={"preset": "synthetic"},
    )


def _rodrigues(v: torch.Tensor) -> torch.Tensor:
    angle = v.norm()
    if float(angle) < 1e-12:
        return torch.eye(3)
    k = v / angle
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return torch.eye(3) + torch.sin(angle) * kx + (1 - torch.cos(angle)) * kx @ kx


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StudioServer:
    """The real studio (`python app.py --port P`) in a subprocess over data folder `home`; stopped on exit."""

    def __init__(self, home, timeout_s: float = 90.0) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.timeout_s = timeout_s
        self.process = None

    def __enter__(self) -> "StudioServer":
        import os
        import subprocess
        import sys
        import time
        import urllib.request
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "TALKING_AVATAR_HOME": str(self.home), "GRADIO_ANALYTICS_ENABLED": "False",
               "OMP_WAIT_POLICY": "PASSIVE", "TALKING_AVATAR_GFPGAN_DIR": str(Path(self.home) / "no-models"),
               "TALKING_AVATAR_REALESRGAN_DIR": str(Path(self.home) / "no-models"),
               "TALKING_AVATAR_WAV2LIP_DIR": str(Path(self.home) / "no-models")}
        self.log = open(Path(self.home) / "server.log", "w")
        self.process = subprocess.Popen([sys.executable, str(root / "app.py"), "--port", str(self.port)], cwd=root,
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the studio exited early: {(Path(self.home) / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError("the studio did not answer in time")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait()
        self.log.close()


def studio_home(tmp_path):
    """A data folder holding the tiny avatar (named 'tiny')."""
    home = tmp_path / "home"
    tiny_avatar(size=64).save(home / "avatars" / "tiny")
    return home
