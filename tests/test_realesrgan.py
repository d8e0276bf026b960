"""Real-ESRGAN upscaler (render.realesrgan): tiny models of both upstream architectures built here, saved as
safetensors, found, inferred and run; the real-size configs checked against a fingerprint of upstream's state dicts;
tiled inference checked against the whole frame; clear errors for absent, corrupt or foreign weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from render import realesrgan as esr

TINY_RRDB_X4 = esr.ESRGANConfig("rrdb", 4, num_feat=8, num_block=1, num_grow_ch=4)
TINY_RRDB_X2 = esr.ESRGANConfig("rrdb", 2, num_feat=8, num_block=1, num_grow_ch=4)
TINY_SRVGG_X4 = esr.ESRGANConfig("srvgg", 4, num_feat=8, num_conv=2)

# Derived from upstream (basicsr 1.4.2 RRDBNet, realesrgan 0.3.0 SRVGGNetCompact, built with the arguments of
# upstream's inference_realesrgan.py): tensors, parameters, and a few keys with their shapes.
UPSTREAM_FINGERPRINTS = {
    "RealESRGAN_x4plus": (702, 16697987, {"conv_first.weight": (64, 3, 3, 3),
                                          "body.0.rdb1.conv1.weight": (32, 64, 3, 3),
                                          "body.22.rdb3.conv5.weight": (64, 192, 3, 3),
                                          "conv_up2.weight": (64, 64, 3, 3), "conv_last.bias": (3,)}),
    "RealESRGAN_x2plus": (702, 16703171, {"conv_first.weight": (64, 12, 3, 3),
                                          "body.22.rdb3.conv5.weight": (64, 192, 3, 3)}),
    "RealESRGAN_x4plus_anime_6B": (192, 4467779, {"body.5.rdb3.conv5.weight": (64, 192, 3, 3)}),
    "realesr-general-x4v3": (101, 1213296, {"body.0.weight": (64, 3, 3, 3), "body.1.weight": (64,),
                                            "body.65.weight": (64,), "body.66.weight": (48, 64, 3, 3)}),
    "realesr-animevideov3": (53, 621424, {"body.33.weight": (64,), "body.34.weight": (48, 64, 3, 3)}),
}


def random_network(config: esr.ESRGANConfig, seed: int = 0) -> torch.nn.Module:
    """Random weights large enough that every layer changes the output (PReLU slopes included)."""
    torch.manual_seed(seed)
    network = esr.build_network(config)
    for parameter in network.parameters():
        fan_in = parameter[0].numel() if parameter.ndim == 4 else 1
        parameter.data.normal_(0.0, (2.0 / fan_in) ** 0.5 if parameter.ndim == 4 else 0.2)
    return network.eval()


def save_weights(folder: Path, state: dict[str, torch.Tensor], name: str = "weights.safetensors",
                 prefix: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({prefix + key: value.contiguous() for key, value in state.items()}, str(folder / name))
    return folder / name


def random_frames(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_absent_weights_are_refused_with_a_clear_message(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"Real-ESRGAN weights not found in .*nothing: put upstream "
                                                r"realesr-general-x4v3 .* or RealESRGAN_x4plus converted to "
                                                r"\.safetensors there \(python app.py models convert .*Nothing is "
                                                r"downloaded"):
        esr.RealESRGAN.load(tmp_path / "nothing")
    assert esr.find_weights(tmp_path / "nothing") is None
    assert esr.missing_message(tmp_path / "nothing").startswith(f"Real-ESRGAN weights not found in {tmp_path}")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "RealESRGAN_x4plus.pth").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match=r"RealESRGAN_x4plus\.pth.*convert them to safetensors"):
        esr.RealESRGAN.load(tmp_path / "pickled")
    monkeypatch.setenv(esr.MODEL_DIR_ENV, str(tmp_path / "configured"))
    assert esr.find_weights() is None
    with pytest.raises(FileNotFoundError, match=f"not found in {tmp_path / 'configured'}"):
        esr.RealESRGAN.load()


@pytest.mark.parametrize("config, prefix", [(TINY_RRDB_X4, "params_ema."), (TINY_SRVGG_X4, ""),
                                            (TINY_RRDB_X2, "params.")])
def test_tiny_models_load_infer_their_architecture_and_upscale(tmp_path, config, prefix):
    network = random_network(config)
    save_weights(tmp_path, network.state_dict(), "tiny.safetensors", prefix)
    model = esr.RealESRGAN.load(tmp_path)
    assert model.config == config and model.scale == config.scale
    for key, value in network.state_dict().items():  # the saved weights, not a fresh initialisation
        torch.testing.assert_close(model.network.state_dict()[key], value, rtol=0, atol=0)
    frames = random_frames(2, 12, 18)
    out = model.upscale(frames)
    assert out.dtype == np.uint8 and out.shape == (2, 12 * config.scale, 18 * config.scale, 3)
    single = model.upscale(frames[1])
    np.testing.assert_array_equal(single, out[1])
    assert 0 < out.std()  # not a constant image
    described = model.describe()
    assert f"x{config.scale}" in described and "tiny.safetensors" in described
    assert ("RRDBNet" if config.arch == "rrdb" else "SRVGGNetCompact") in described


def test_x2_rrdb_is_inferred_from_twelve_input_channels_and_takes_odd_sizes(tmp_path):
    state = random_network(TINY_RRDB_X2).state_dict()
    assert state["conv_first.weight"].shape[1] == 12  # 3 channels x 2x2 pixel-unshuffle, as upstream's x2plus
    save_weights(tmp_path, state, prefix="params_ema.")
    model = esr.RealESRGAN.load(tmp_path)
    assert model.scale == 2 and model.config.input_multiple == 2 and model.config.num_block == 1
    assert model.upscale(random_frames(13, 17)).shape == (26, 34, 3)  # reflect-padded to even, cropped back


def test_params_ema_is_preferred_and_names_pick_the_file(tmp_path, monkeypatch):
    ema, plain = random_network(TINY_SRVGG_X4, seed=1).state_dict(), random_network(TINY_SRVGG_X4, seed=2).state_dict()
    save_file({**{f"params_ema.{k}": v for k, v in ema.items()}, **{f"params.{k}": v for k, v in plain.items()}},
              str(tmp_path / "b_srvgg.safetensors"))
    save_weights(tmp_path, random_network(TINY_RRDB_X4).state_dict(), "a_rrdb.safetensors")
    assert esr.RealESRGAN.load(tmp_path).weights.name == "b_srvgg.safetensors"  # no upstream name: sorted last
    chosen = esr.RealESRGAN.load(tmp_path, name="b_srvgg")
    assert chosen.config.arch == "srvgg"
    torch.testing.assert_close(chosen.network.state_dict()["body.0.weight"], ema["body.0.weight"], rtol=0, atol=0)
    assert esr.RealESRGAN.load(tmp_path, name="b_srvgg.safetensors").weights.name == "b_srvgg.safetensors"
    with pytest.raises(FileNotFoundError, match=r"no Real-ESRGAN weights called 'x4plus'.*a_rrdb\.safetensors"):
        esr.RealESRGAN.load(tmp_path, name="x4plus")
    assert esr.RealESRGAN.load(tmp_path / "b_srvgg.safetensors").config.arch == "srvgg"  # a file, not a folder
    save_weights(tmp_path, random_network(TINY_SRVGG_X4).state_dict(), "realesr-general-x4v3.safetensors")
    save_weights(tmp_path, random_network(TINY_RRDB_X4).state_dict(), "RealESRGAN_x4plus.safetensors")
    monkeypatch.setenv(esr.MODEL_DIR_ENV, str(tmp_path))
    assert esr.find_weights() == tmp_path / "realesr-general-x4v3.safetensors"  # the video-fast release first
    assert esr.RealESRGAN.load().config.arch == "srvgg"
    assert esr.RealESRGAN.load(name="RealESRGAN_x4plus").config.arch == "rrdb"


def test_corrupt_foreign_and_mismatched_files_raise_value_errors(tmp_path):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match=r"broken\.safetensors is not a readable safetensors file"):
        esr.RealESRGAN.load(tmp_path / "corrupt")
    save_weights(tmp_path / "foreign", {"encoder.weight": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match=r"neither RRDBNet .* nor SRVGGNetCompact .*encoder\.weight"):
        esr.RealESRGAN.load(tmp_path / "foreign")
    state = random_network(TINY_RRDB_X4).state_dict()
    del state["conv_body.weight"]
    state["conv_hr.weight"] = torch.zeros(8, 7, 3, 3)
    state["conv_extra.weight"] = torch.zeros(1)
    save_weights(tmp_path / "mismatched", state, prefix="params_ema.")
    with pytest.raises(ValueError, match=r"1 missing keys \(e\.g\. \['conv_body\.weight'\]\), 1 unexpected "
                                         r"\(e\.g\. \['conv_extra\.weight'\]\), 1 of another shape \(e\.g\. "
                                         r"\['conv_hr\.weight \(8, 7, 3, 3\) vs \(8, 8, 3, 3\)'\]"):
        esr.RealESRGAN.load(tmp_path / "mismatched")


def test_config_json_overrides_what_cannot_be_inferred(tmp_path):
    leaky = esr.ESRGANConfig("srvgg", 4, num_feat=8, num_conv=2, act_type="leakyrelu")
    network = random_network(leaky)
    save_weights(tmp_path, network.state_dict())
    assert esr.RealESRGAN.load(tmp_path).config.act_type == "relu"  # no PReLU weights: relu unless told
    (tmp_path / "config.json").write_text('{"act_type": "leakyrelu"}')
    model = esr.RealESRGAN.load(tmp_path)
    assert model.config == leaky
    images = torch.rand(1, 3, 10, 12)
    with torch.inference_mode():
        torch.testing.assert_close(model.upscale_tensor(images), network(images))
    (tmp_path / "config.json").write_text('{"upscale": 4}')
    with pytest.raises(ValueError, match=r"config\.json: expected an object of ESRGANConfig fields, unknown "
                                         r"\['upscale'\]"):
        esr.RealESRGAN.load(tmp_path)


def test_bad_frames_are_refused(tmp_path):
    save_weights(tmp_path, random_network(TINY_SRVGG_X4).state_dict())
    model = esr.RealESRGAN.load(tmp_path)
    for bad in (random_frames(8, 8).astype(np.float32), random_frames(2, 8, 8)[..., :2], np.zeros((8, 8), np.uint8),
                [[0, 0, 0]]):
        with pytest.raises(ValueError, match=r"frames must be uint8 RGB \[B, H, W, 3\]"):
            model.upscale(bad)
    with pytest.raises(ValueError, match="at least 4x4"):
        model.upscale(random_frames(3, 8))


@pytest.mark.parametrize("config, height, width, tile", [(TINY_SRVGG_X4, 40, 52, 12), (TINY_RRDB_X4, 64, 76, 16),
                                                         (TINY_RRDB_X2, 120, 126, 30)])
def test_tiled_inference_equals_the_whole_frame(config, height, width, tile):
    model = esr.RealESRGAN(random_network(config), config)
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(3))
    assert 2 * model.config.receptive_radius + tile < max(height, width)  # some tiles really see only a part
    whole = model.upscale_tensor(images, tile=0)
    tiled = model.upscale_tensor(images, tile=tile, tile_pad=config.receptive_radius)
    assert whole.shape == tiled.shape == (2, 3, height * config.scale, width * config.scale)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    seams = model.upscale_tensor(images, tile=tile, tile_pad=0)  # no context: the check above can fail
    assert (seams - whole).abs().max() > 1e-2
    frames = (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    tiled_frames = model.upscale(frames, tile=tile, tile_pad=config.receptive_radius, pre_pad=5)
    whole_frames = model.upscale(frames, tile=0, pre_pad=5)
    assert np.abs(tiled_frames.astype(int) - whole_frames).max() <= 1  # float rounding may cross a .5


def test_srvgg_with_zeroed_last_conv_is_nearest_upsampling(tmp_path):
    state = random_network(TINY_SRVGG_X4).state_dict()
    last = f"body.{2 * TINY_SRVGG_X4.num_conv + 2}"
    state[f"{last}.weight"].zero_(), state[f"{last}.bias"].zero_()
    save_weights(tmp_path, state, prefix="params_ema.")
    model = esr.RealESRGAN.load(tmp_path)
    frames = random_frames(2, 9, 13)
    nearest = frames.repeat(4, axis=1).repeat(4, axis=2)
    np.testing.assert_array_equal(model.upscale(frames, tile=0), nearest)
    np.testing.assert_array_equal(model.upscale(frames, tile=5, tile_pad=1, pre_pad=3), nearest)


def test_rrdb_with_an_identity_path_is_nearest_upsampling(tmp_path):
    """conv_first/up1/up2/hr/last pass the image through channels 0-2 and conv_body is zero (the RRDB trunk adds
    nothing): the output must be the input upsampled x4 by nearest neighbour, exactly."""
    state = random_network(TINY_RRDB_X4).state_dict()
    for key, value in state.items():
        if key.startswith("conv_"):
            value.zero_()
    for name in ("conv_first", "conv_up1", "conv_up2", "conv_hr", "conv_last"):
        for channel in range(3):
            state[f"{name}.weight"][channel, channel, 1, 1] = 1.0
    save_weights(tmp_path, state)
    frames = random_frames(1, 10, 14)
    out = esr.RealESRGAN.load(tmp_path).upscale(frames, tile=6, tile_pad=2)
    np.testing.assert_array_equal(out, frames.repeat(4, axis=1).repeat(4, axis=2))


@pytest.mark.parametrize("name", sorted(UPSTREAM_FINGERPRINTS))
def test_real_size_configs_have_upstreams_keys_and_shapes(name):
    count, parameters, samples = UPSTREAM_FINGERPRINTS[name]
    config = esr.UPSTREAM_CONFIGS[name]
    with torch.device("meta"):  # shapes only
        state = esr.build_network(config).state_dict()
    assert (len(state), sum(v.numel() for v in state.values())) == (count, parameters)
    assert {key: tuple(state[key].shape) for key in samples} == samples
    assert esr.infer_config(state) == config
    assert esr.infer_config(esr.strip_checkpoint_prefix({f"params_ema.{k}": v for k, v in state.items()})) == config
    assert esr.ESRGANConfig() == esr.UPSTREAM_CONFIGS["RealESRGAN_x4plus"]


# Outputs of upstream's own RRDBNet / SRVGGNetCompact (run once outside the repo) on the weights and input below:
# output shape, mean, std and four values at (channel, row, column).
UPSTREAM_GOLDEN = {
    "rrdb x2": (TINY_RRDB_X2, (1, 3, 16, 20), 0.289262, 1.408463, [-0.351931, 0.31514, 0.312313, -2.293306]),
    "srvgg x4": (TINY_SRVGG_X4, (1, 3, 32, 40), 0.541480, 0.450656, [0.340639, 0.778165, 0.050353, 0.918533]),
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_GOLDEN))
def test_forward_reproduces_upstreams_output(name):
    config, shape, mean, std, values = UPSTREAM_GOLDEN[name]
    network = esr.build_network(config).eval()
    rng = np.random.default_rng(7)  # weights drawn in state-dict order: the same order as upstream's
    network.load_state_dict({k: torch.from_numpy(rng.normal(0.0, (2.0 / v[0].numel()) ** 0.5 if v.ndim == 4 else 0.2,
                                                            tuple(v.shape)).astype(np.float32))
                             for k, v in network.state_dict().items()})
    images = torch.from_numpy(np.random.default_rng(8).random((1, 3, 8, 10)).astype(np.float32))
    with torch.inference_mode():
        out = network(images)
    assert tuple(out.shape) == shape
    picked = [out[0, c, i, j].item() for c, i, j in [(0, 0, 0), (1, 5, 7), (2, 15, 19), (0, 9, 3)]]
    np.testing.assert_allclose([out.mean().item(), out.std().item(), *picked], [mean, std, *values], atol=2e-5)
