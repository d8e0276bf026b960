"""Avatar folder save/load round trip and validation of damaged folders."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from avatar.model import FORMAT_VERSION, Avatar
from avatar.rig import Intrinsics


_NEUTRAL = []


def astronaut_neutral() -> torch.Tensor:
    """FaceMesh landmarks of skimage's astronaut photo [478, 3], in metres (cached per test session)."""
    if not _NEUTRAL:
        from avatar.mesh_plot import sample_landmarks

        _NEUTRAL.append((sample_landmarks() * 0.063 / 60.0).float())
    return _NEUTRAL[0]


def make_avatar(n: int = 50, k: int = 4, t: int = 6) -> Avatar:
    from avatar.mesh import build_rig, build_topology

    g = torch.Generator().manual_seed(1)
    neutral = astronaut_neutral()
    rig = build_rig(neutral)
    topology = build_topology(rig.resolution)
    faces = topology.faces.shape[0]
    return Avatar(
        name="synthetic",
        camera=Intrinsics(60.0, 60.0, 16.0, 16.0, 32, 32),
        gaussians={
            "parent": torch.randint(faces, (n,), generator=g),
            "local_means": torch.randn(n, 3, generator=g),
            "local_quats": torch.randn(n, 4, generator=g),
            "local_log_scales": torch.randn(n, 3, generator=g),
            "opacity_logits": torch.randn(n, generator=g),
            "colors": torch.rand(n, 3, generator=g),
        },
        neutral=neutral,
        expression_basis=torch.randn(k, 478, 3, generator=g) * 1e-3,
        faces=topology.faces,
        face_part=topology.face_part,
        mesh_rig=rig.to_tensors(),
        mesh_rig_meta=rig.metadata(),
        rotations=torch.eye(3).repeat(t, 1, 1),
        translations=torch.randn(t, 3, generator=g),
        expression_coeffs=torch.randn(t, k, generator=g),
        background=torch.randint(0, 255, (32, 32, 3), dtype=torch.uint8, generator=g),
        fps=25.0,
        config={"preset": "tiny"},
        stats={"iterations": 10},
        metrics={"psnr": 30.0},
        parts=["face", "teeth"],
    )


def test_round_trip_is_exact(tmp_path):
    avatar = make_avatar()
    avatar.save(tmp_path / "a")
    loaded = Avatar.load(tmp_path / "a")
    for key, value in avatar.gaussians.items():
        assert torch.equal(loaded.gaussians[key], value), key
    for key in ("neutral", "expression_basis", "faces", "face_part", "rotations", "translations", "expression_coeffs", "background"):
        assert torch.equal(getattr(loaded, key), getattr(avatar, key)), key
    assert loaded.camera == avatar.camera
    assert (loaded.fps, loaded.config, loaded.stats, loaded.metrics, loaded.parts) == (
        avatar.fps, avatar.config, avatar.stats, avatar.metrics, avatar.parts)
    meta = json.loads((tmp_path / "a" / "avatar.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["num_gaussians"] == 50


def test_constructor_rejects_bad_tensors():
    avatar = make_avatar()
    with pytest.raises(ValueError, match="local_means"):
        Avatar(**{**avatar.__dict__, "gaussians": {**avatar.gaussians, "local_means": torch.zeros(3, 3)}})
    bad = avatar.gaussians["colors"].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Avatar(**{**avatar.__dict__, "gaussians": {**avatar.gaussians, "colors": bad}})
    with pytest.raises(ValueError, match="parent"):
        Avatar(**{**avatar.__dict__, "gaussians": {**avatar.gaussians, "parent": avatar.gaussians["parent"] + 100000}})
    with pytest.raises(ValueError, match="topology"):
        Avatar(**{**avatar.__dict__, "faces": avatar.faces.flip(-1)})


def test_avatar_renders_its_training_poses():
    avatar = make_avatar(n=400)
    vertices = avatar.camera_vertices(torch.eye(3)[None], torch.tensor([[0.0, 0.0, 0.5]]), torch.zeros(1, 4))
    assert vertices.shape == (1, avatar.faces.max() + 1, 3)
    out = avatar.render(vertices[0], torch.zeros(3), backend="cpu")
    assert out.color.shape == (32, 32, 3) and torch.isfinite(out.color).all()


def test_load_reports_damage_clearly(tmp_path):
    folder = make_avatar().save(tmp_path / "a")
    meta = json.loads((folder / "avatar.json").read_text())
    (folder / "avatar.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format version"):
        Avatar.load(folder)
    (folder / "avatar.json").write_text(json.dumps(meta))
    tensors = load_file(str(folder / "gaussians.safetensors"))
    tensors["opacity_logits"] = tensors["opacity_logits"][:-1].contiguous()
    save_file(tensors, str(folder / "gaussians.safetensors"))
    with pytest.raises(ValueError, match="opacity_logits"):
        Avatar.load(folder)
    (folder / "gaussians.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        Avatar.load(folder)
    (folder / "gaussians.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="gaussians.safetensors"):
        Avatar.load(folder)
    with pytest.raises(FileNotFoundError, match="not an avatar folder"):
        Avatar.load(tmp_path / "missing")


def test_failed_save_keeps_the_previous_avatar(tmp_path):
    folder = make_avatar().save(tmp_path / "a")
    broken = make_avatar()
    broken.gaussians["colors"] = torch.zeros(2, 3)  # invalid: save validates first
    with pytest.raises(ValueError):
        broken.save(folder)
    assert Avatar.load(folder).num_gaussians == 50
