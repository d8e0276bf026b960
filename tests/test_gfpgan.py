"""GFPGAN face restorer (render.gfpgan) and its 5-point alignment (render.face_align): a tiny GFPGANv1Clean built
here, saved as safetensors (with and without the upstream "params_ema." prefix), loaded through the folder API
and run on small frames; the real-size v1.3/v1.4 layout checked against a fingerprint taken from upstream's
arch files; refused with a clear message when the weights are absent or do not fit."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from render import face_align, gfpgan
from render.gfpgan import GFPGAN, GFPGANConfig, GFPGANv1Clean

# 64 px faces, 16-d styles, 1/16 of the channels (decoder 32 -> 16, U-Net 16 -> 8), 2 style MLP layers.
TINY = GFPGANConfig(out_size=64, num_style_feat=16, channel_multiplier=1, narrow=1 / 16, num_mlp=2)

# Real GFPGANv1.3 / v1.4 (GFPGANv1Clean as GFPGANer builds it: out_size 512, num_style_feat 512,
# channel_multiplier 2, narrow 1, 8 MLP layers, different_w, sft_half). Read off upstream's
# gfpganv1_clean_arch.py instantiated outside this repo: state_dict() count, total elements, sample shapes.
REAL_TENSORS, REAL_ELEMENTS = 285, 87_143_276
REAL_SHAPES = {
    "conv_body_first.weight": (32, 3, 1, 1),
    "conv_body_down.0.conv1.weight": (32, 32, 3, 3),
    "conv_body_down.6.skip.weight": (256, 256, 1, 1),
    "final_conv.weight": (256, 256, 3, 3),
    "final_linear.weight": (8192, 4096),
    "conv_body_up.6.conv2.weight": (32, 64, 3, 3),
    "toRGB.6.weight": (3, 32, 1, 1),
    "condition_scale.6.2.weight": (32, 32, 3, 3),
    "condition_shift.0.0.weight": (256, 256, 3, 3),
    "stylegan_decoder.style_mlp.15.weight": (512, 512),
    "stylegan_decoder.constant_input.weight": (1, 512, 4, 4),
    "stylegan_decoder.style_conv1.modulated_conv.weight": (1, 512, 512, 3, 3),
    "stylegan_decoder.style_convs.13.modulated_conv.weight": (1, 64, 64, 3, 3),
    "stylegan_decoder.to_rgbs.6.modulated_conv.weight": (1, 3, 64, 1, 1),
    "stylegan_decoder.noises.noise14": (1, 1, 512, 512),
    "stylegan_decoder.to_rgb1.bias": (1, 3, 1, 1),
}


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    network = GFPGANv1Clean(TINY)
    with torch.no_grad():  # upstream starts noise strengths and biases at 0; make every tensor matter
        for name, parameter in network.named_parameters():
            if name.endswith("bias") or parameter.numel() == 1:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return {key: value.contiguous() for key, value in network.state_dict().items()}


def save_tiny(folder: Path, prefix: str = "params_ema.", name: str = "GFPGANv1.4.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({prefix + key: value for key, value in tiny_state_dict().items()}, str(folder / name))
    return folder


def similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """[2, 3] rotation by `angle` radians, uniform `scale`, then `shift`."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def face_landmarks(matrix: np.ndarray) -> np.ndarray:
    """The 512 FFHQ template placed in a frame by `matrix` -> [5, 2]."""
    return face_align.transform_points(face_align.FFHQ_TEMPLATE_512, matrix)


def smooth_frames(count: int, height: int = 96, width: int = 128, period: float = 9.0) -> np.ndarray:
    """[count, H, W, 3] uint8 smooth colour patterns (bilinear resampling barely changes them; more so with a
    longer `period` in px / radian)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = []
    for k in range(count):
        channels = [127 + 100 * np.sin(x / (period + 2 * k + c) + y / (period + 4 + c) + c) for c in range(3)]
        frames.append(np.stack(channels, axis=-1))
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def frame_landmarks(count: int, scale: float = 0.15, centre: tuple[float, float] = (64.0, 48.0)) -> np.ndarray:
    """[count, 5, 2] slightly turned faces centred in a 128x96 frame; the crop square is 512 * scale px (77 px:
    inside the frame; at scale 0.3 it exceeds the frame on every side, as in a close-up)."""
    faces = []
    for k in range(count):
        placement = similarity(0.1 * (k - 1), scale, (0.0, 0.0))
        placement[:, 2] = np.asarray(centre) + (k - 1, 0) - placement[:, :2] @ (256.0, 256.0)
        faces.append(face_landmarks(placement))
    return np.stack(faces)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and torch's 2 OpenMP threads crawl when the 2 cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- folder API ---------------------------------------------------------------------------------------------

def test_absent_weights_are_refused_with_a_clear_message(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"GFPGAN weights not found in .*nothing.*GFPGANv1\.4.*safetensors"
                                                r".*Nothing is downloaded"):
        GFPGAN.load(tmp_path / "nothing")
    pickled_only = tmp_path / "pth"
    pickled_only.mkdir()
    (pickled_only / "GFPGANv1.4.pth").write_bytes(b"not read")  # never unpickled: only safetensors count
    assert gfpgan.find_weights(pickled_only) is None
    with pytest.raises(FileNotFoundError, match=r"found \['GFPGANv1\.4\.pth'\]: convert them to") as refused:
        GFPGAN.load(pickled_only)
    assert str(refused.value) == gfpgan.missing_message(pickled_only)  # the cheap check says the same
    (pickled_only / "GFPGANv1.4.safetensors").write_bytes(b"truncated download")
    with pytest.raises(ValueError, match="GFPGANv1.4.safetensors is not a readable safetensors file"):
        GFPGAN.load(pickled_only)
    monkeypatch.setenv(gfpgan.MODEL_DIR_ENV, str(tmp_path / "from_env"))
    assert gfpgan.default_model_dir() == tmp_path / "from_env"
    with pytest.raises(FileNotFoundError, match="from_env"):
        GFPGAN.load()
    assert gfpgan.find_weights() is None and "from_env" in gfpgan.missing_message()
    monkeypatch.delenv(gfpgan.MODEL_DIR_ENV)
    assert gfpgan.default_model_dir() == Path(gfpgan.__file__).resolve().parents[1] / "models" / "gfpgan"


@pytest.mark.parametrize("prefix", ["params_ema.", "params.", ""])
def test_tiny_weights_load_with_or_without_the_upstream_prefix(tmp_path, prefix):
    folder = save_tiny(tmp_path / "gfpgan", prefix)
    restorer = GFPGAN.load(folder)
    assert restorer.config == TINY  # every field inferred from the weights
    assert restorer.face_size == 64 and restorer.device == torch.device("cpu")
    expected = tiny_state_dict()
    loaded = restorer.network.state_dict()
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    assert GFPGAN.load(folder / "GFPGANv1.4.safetensors").config == TINY  # a file path works too
    assert restorer.describe().startswith("GFPGANv1Clean 64px") and "GFPGANv1.4.safetensors" in restorer.describe()
    assert restorer.parameter_count == sum(v.numel() for k, v in expected.items() if "noises" not in k)


def test_env_folder_config_json_and_checkpoint_choice(tmp_path, monkeypatch):
    folder = save_tiny(tmp_path / "gfpgan", name="GFPGANv1.3.safetensors")
    save_tiny(folder, name="GFPGANv1.4.safetensors")
    assert gfpgan.find_weights(folder).name == "GFPGANv1.4.safetensors"
    monkeypatch.setenv(gfpgan.MODEL_DIR_ENV, str(folder))
    (folder / "config.json").write_text(json.dumps({"input_is_latent": False}))
    assert GFPGAN.load().config == GFPGANConfig(**{**TINY.to_dict(), "input_is_latent": False})
    (folder / "config.json").write_text(json.dumps({"no_such_field": 1}))
    with pytest.raises(ValueError, match="unknown fields.*no_such_field"):
        GFPGAN.load()


def test_weights_that_do_not_fit_are_refused_naming_the_keys(tmp_path):
    state = tiny_state_dict()
    state["final_conv.weight_renamed"] = state.pop("final_conv.weight")
    state["stylegan_decoder.to_rgb1.bias"] = torch.zeros(1, 4, 1, 1)
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match=r"broken\.safetensors.*1 missing keys.*final_conv\.weight'.*1 unexpected"
                                         r".*final_conv\.weight_renamed.*1 of another shape.*to_rgb1\.bias"):
        GFPGAN.load(tmp_path)
    with pytest.raises(ValueError, match="the state dict is not a GFPGANv1Clean checkpoint.*missing keys"):
        GFPGAN.from_state_dict({"some.other.model": torch.zeros(3)})


def test_real_size_default_config_has_upstreams_keys_and_shapes():
    assert GFPGANConfig() == GFPGANConfig(out_size=512, num_style_feat=512, channel_multiplier=2)
    with torch.device("meta"):  # shapes only, nothing allocated
        state = GFPGANv1Clean(GFPGANConfig()).state_dict()
    assert len(state) == REAL_TENSORS
    assert sum(value.numel() for value in state.values()) == REAL_ELEMENTS
    for key, shape in REAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert next(iter(state)) == "conv_body_first.weight" and list(state)[-1] == "condition_shift.6.2.bias"
    assert gfpgan.infer_config(state) == GFPGANConfig()  # the real checkpoint needs no config.json


def test_config_rejects_impossible_layouts():
    with pytest.raises(ValueError, match="power of two"):
        GFPGANConfig(out_size=500)
    with pytest.raises(ValueError, match="channels"):
        GFPGANConfig(narrow=1 / 1024)
    with pytest.raises(ValueError, match="out_size must be int"):
        GFPGANConfig(out_size="512")  # e.g. a string in config.json


# ---- restore ------------------------------------------------------------------------------------------------

def test_restore_shape_strength_and_determinism(tmp_path):
    restorer = GFPGAN.load(save_tiny(tmp_path / "gfpgan"))
    frames, landmarks = smooth_frames(3), frame_landmarks(3)
    untouched = restorer.restore(frames, landmarks, strength=0.0)
    assert untouched.dtype == np.uint8 and np.array_equal(untouched, frames) and untouched is not frames
    restored = restorer.restore(frames, landmarks, strength=0.7)
    assert restored.shape == frames.shape and restored.dtype == np.uint8
    assert np.array_equal(restored, restorer.restore(frames, landmarks, strength=0.7))  # fixed noise
    assert np.array_equal(restored, GFPGAN.load(tmp_path / "gfpgan").restore(frames, landmarks, strength=0.7))
    one_by_one = np.concatenate([restorer.restore(frames[k:k + 1], landmarks[k:k + 1], 0.7) for k in range(3)])
    assert np.abs(one_by_one.astype(int) - restored).max() <= 1  # a frame does not depend on its neighbours
    for k in range(3):
        mask = face_align.paste_mask(face_align.estimate_similarity(landmarks[k], face_align.face_template(64)),
                                     64, frames.shape[1:3])
        changed = np.any(restored[k] != frames[k], axis=-1)
        assert (mask > 0.5).sum() > 1000 and (mask == 0).sum() > 3000
        assert changed[mask > 0.5].mean() > 0.5  # the face is replaced ...
        assert not changed[mask == 0].any()  # ... and nothing outside the feathered crop is touched
    full = restorer.restore(frames, landmarks, strength=1.0)
    partial_step = np.abs(restored.astype(int) - frames).sum()
    assert 0.6 < partial_step / np.abs(full.astype(int) - frames).sum() < 0.8


def test_restore_pastes_the_face_back_where_it_was(tmp_path, monkeypatch):
    restorer = GFPGAN.load(save_tiny(tmp_path / "gfpgan"))
    frames, landmarks = smooth_frames(2, period=30.0), frame_landmarks(2, scale=0.3)  # crop exceeds the frame
    monkeypatch.setattr(restorer, "restore_faces", lambda faces, batch_size=4: faces)  # an identity "restorer"
    identity = restorer.restore(frames, landmarks, strength=1.0)
    error = np.abs(identity.astype(int) - frames)
    assert error.max() <= 10 and error.mean() < 0.5  # in place, no grey rim along the edges (grey border: 82)
    monkeypatch.setattr(restorer, "restore_faces", lambda faces, batch_size=4: np.full_like(faces, 255))
    landmarks = frame_landmarks(2)  # crop inside the frame
    white = restorer.restore(frames, landmarks, strength=1.0)
    for k in range(2):
        eyes_and_mouth = np.rint(landmarks[k]).astype(int)
        assert np.all(white[k][eyes_and_mouth[:, 1], eyes_and_mouth[:, 0]] == 255)
        assert np.array_equal(white[k][:, :5], frames[k][:, :5])  # the frame's left edge is far from the face


def test_frames_without_a_face_pass_through_and_bad_input_is_refused(tmp_path):
    restorer = GFPGAN.load(save_tiny(tmp_path / "gfpgan"))
    frames, landmarks = smooth_frames(2), frame_landmarks(2)
    landmarks[1] = np.nan
    out = restorer.restore(frames, landmarks)
    assert np.array_equal(out[1], frames[1]) and not np.array_equal(out[0], frames[0])
    with pytest.raises(ValueError, match="uint8 RGB"):
        restorer.restore(frames.astype(np.float32), landmarks)
    with pytest.raises(ValueError, match="uint8 RGB"):
        restorer.restore(frames[0], landmarks)
    with pytest.raises(ValueError, match=r"\[B, 5, 2\]"):
        restorer.restore(frames, landmarks[:, :3])
    with pytest.raises(ValueError, match="strength"):
        restorer.restore(frames, frame_landmarks(2), strength=1.5)
    landmarks[0, 2] = np.inf
    with pytest.raises(ValueError, match="finite"):
        restorer.restore(frames, landmarks)
    with pytest.raises(ValueError, match="one point"):
        restorer.restore(frames, np.full((2, 5, 2), 40.0))


# ---- alignment geometry -------------------------------------------------------------------------------------

def test_template_is_facexlibs_ffhq_512():
    np.testing.assert_allclose(face_align.face_template(512)[0], [192.98138, 239.94708])
    np.testing.assert_allclose(face_align.face_template(256)[4], [313.08905 / 2, 371.15118 / 2])
    template = face_align.FFHQ_TEMPLATE_512
    assert template[0, 0] < template[1, 0] and template[3, 0] < template[4, 0]  # "left" = smaller x


def test_similarity_recovers_a_known_transform_and_inverts():
    truth = similarity(0.3, 1.7, (12.0, -40.0))
    source = np.random.default_rng(1).uniform(0, 200, (5, 2))
    estimated = face_align.estimate_similarity(source, face_align.transform_points(source, truth))
    np.testing.assert_allclose(estimated, truth, atol=1e-9)
    inverse = face_align.invert_affine(estimated)
    np.testing.assert_allclose(face_align.transform_points(face_align.transform_points(source, estimated), inverse),
                               source, atol=1e-9)
    with pytest.raises(ValueError, match="one point"):
        face_align.estimate_similarity(np.ones((5, 2)), face_align.face_template(64))


def test_warping_lands_known_points_on_the_template():
    height, width, face_size = 220, 260, 128
    placement = similarity(-0.2, 0.32, (60.0, 30.0))  # template (512 px) -> frame
    points = face_landmarks(placement)  # [5, 2], sub-pixel
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    frame = np.zeros((height, width), np.float64)
    for px, py in points:  # Gaussian dots (sigma 2 px) at the landmark positions
        frame += 250 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * 2.0 ** 2))
    frame = np.repeat(np.clip(np.rint(frame), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    template = face_align.face_template(face_size)
    matrix = face_align.estimate_similarity(points, template)
    crop = face_align.warp_to_face(frame, matrix, face_size)[..., 0].astype(np.float64)
    assert crop.shape == (face_size, face_size)
    cy, cx = np.mgrid[0:face_size, 0:face_size]
    for tx, ty in template:  # intensity centroid of each dot in the crop
        window = (np.abs(cx - tx) <= 6) & (np.abs(cy - ty) <= 6)
        weights = crop * window
        found = np.array([(weights * cx).sum(), (weights * cy).sum()]) / weights.sum()
        assert np.hypot(*(found - (tx, ty))) < 1.0


def test_crop_and_paste_back_round_trip():
    frame = smooth_frames(1, 120, 160)[0]
    matrix = face_align.estimate_similarity(face_landmarks(similarity(0.25, 0.35, (20.0, -30.0))),
                                            face_align.face_template(96))
    crop = face_align.warp_to_face(frame, matrix, 96)
    back = face_align.warp_to_frame(crop, matrix, frame.shape[:2])
    assert back.shape == (120, 160, 3) and back.dtype == np.float32
    mask = face_align.paste_mask(matrix, 96, frame.shape[:2])
    inside = mask > 0.99
    assert inside.sum() > 1000
    error = np.abs(back[inside] - frame[inside])
    assert error.mean() < 1.5 and error.max() < 12


def test_paste_mask_is_feathered_inside_the_crop():
    frame_size = (150, 200)
    matrix = face_align.estimate_similarity(face_landmarks(similarity(0.4, 0.3, (40.0, -20.0))),
                                            face_align.face_template(128))
    mask = face_align.paste_mask(matrix, 128, frame_size)
    assert mask.shape == frame_size and mask.dtype == np.float32 and 0 <= mask.min() and mask.max() <= 1
    covered = face_align.warp_to_frame(np.ones((128, 128), np.float32), matrix, frame_size) > 0
    assert np.all(mask[~covered] == 0)  # zero outside the crop square
    centre = np.rint(face_align.transform_points([[64, 64]], face_align.invert_affine(matrix))[0]).astype(int)
    assert mask[centre[1], centre[0]] == pytest.approx(1.0)
    assert ((mask > 0.02) & (mask < 0.98)).sum() > 200  # a soft band, not a hard edge
    steps = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert steps < 0.35


def test_blend_mixes_by_strength_and_mask():
    frame = np.full((4, 4, 3), 100, np.uint8)
    pasted = np.full((4, 4, 3), 200.0, np.float32)
    mask = np.zeros((4, 4), np.float32)
    mask[1:3, 1:3] = 1.0
    assert np.array_equal(face_align.blend(frame, pasted, mask, 0.0), frame)
    half = face_align.blend(frame, pasted, mask, 0.5)
    assert half[1, 1, 0] == 150 and half[0, 0, 0] == 100
    assert face_align.blend(frame, pasted, mask, 1.0)[2, 2, 1] == 200
