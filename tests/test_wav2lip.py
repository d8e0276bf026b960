"""Wav2Lip lip sync (render.wav2lip, render.wav2lip_arch): a tiny Wav2LipNet built here (1/16 of the channels,
upstream's key names), saved as safetensors with and without upstream's "module." / "state_dict." prefixes, loaded
through the folder API and run on small frames; the real-size layout checked against a fingerprint of upstream's
state dict and its forward pass against upstream's output; the mel spectrogram and per-frame windows checked
against values from upstream's audio.py / inference.py; clear refusals when weights are absent or do not fit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from render import wav2lip
from render.wav2lip import Wav2Lip, Wav2LipConfig, Wav2LipNet, mel_spectrogram, mel_windows

TINY = Wav2LipConfig(width=1 / 16)  # 1 -> 32 channels in the encoders, 32 -> 4 in the decoder

# Upstream's Wav2Lip() (Rudrabha/Wav2Lip models/wav2lip.py + models/conv.py, instantiated outside this repo):
# state_dict() tensors, numbers (BatchNorm statistics and counters included), parameters, sample shapes.
REAL_TENSORS, REAL_ELEMENTS, REAL_PARAMETERS = 352, 36_320_837, 36_298_035
REAL_SHAPES = {
    "face_encoder_blocks.0.0.conv_block.0.weight": (16, 6, 7, 7),
    "face_encoder_blocks.2.3.conv_block.1.running_var": (64,),
    "face_encoder_blocks.6.1.conv_block.0.weight": (512, 512, 1, 1),
    "audio_encoder.0.conv_block.0.weight": (32, 1, 3, 3),
    "audio_encoder.9.conv_block.0.weight": (256, 128, 3, 3),
    "audio_encoder.12.conv_block.0.weight": (512, 512, 1, 1),
    "face_decoder_blocks.0.0.conv_block.0.weight": (512, 512, 1, 1),
    "face_decoder_blocks.1.0.conv_block.0.weight": (1024, 512, 3, 3),  # transposed conv: [in, out, k, k]
    "face_decoder_blocks.3.0.conv_block.0.weight": (768, 384, 3, 3),
    "face_decoder_blocks.6.2.conv_block.1.num_batches_tracked": (),
    "output_block.0.conv_block.0.weight": (32, 80, 3, 3),
    "output_block.1.weight": (3, 32, 1, 1),
    "output_block.1.bias": (3,),
}


def drawn_state(config: Wav2LipConfig, seed: int = 7) -> dict[str, torch.Tensor]:
    """Weights drawn in state-dict order (the same order as upstream's), BatchNorm statistics included, so that
    eval-mode normalisation matters: conv N(0, 1/fan), BN scale 1 + N(0, 0.1), others N(0, 0.1), var U(0.75, 1.25)."""
    rng = np.random.default_rng(seed)
    with torch.device("meta"):
        layout = Wav2LipNet(config).state_dict()
    state = {}
    for key, value in layout.items():
        shape = tuple(value.shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
            continue
        if len(shape) == 4:
            drawn = rng.normal(0.0, (1.0 / np.prod(shape[1:])) ** 0.5, shape)
        elif key.endswith("running_var"):
            drawn = rng.uniform(0.75, 1.25, shape)
        else:
            drawn = rng.normal(0.0, 0.1, shape) + (1.0 if key.endswith("conv_block.1.weight") else 0.0)
        state[key] = torch.from_numpy(drawn.astype(np.float32))
    return state


def save_tiny(folder: Path, prefix: str = "module.", name: str = "wav2lip_gan.safetensors",
              state: dict[str, torch.Tensor] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = drawn_state(TINY) if state is None else state
    save_file({prefix + key: value.contiguous() for key, value in state.items()}, str(folder / name))
    return folder


def random_frames(count: int, height: int = 90, width: int = 110, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def random_mels(count: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, (count, 80, 16)).clip(-4, 4).astype(np.float32)


def speech_like(sample_rate: int, seconds: float = 1.3) -> np.ndarray:
    """[S] float32: 20 harmonics of a wavering 120 Hz pitch under a syllable-rate envelope, plus quiet 5.5 and
    7.2 kHz tones (no randomness, so upstream's mel of it could be recorded)."""
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    phase = 2 * np.pi * 120 * t - (40 / 1.5) * np.cos(2 * np.pi * 1.5 * t)  # pitch 120 +- 40 Hz
    voiced = sum(np.sin(k * phase) / k for k in range(1, 21)) * (0.55 + 0.45 * np.sin(2 * np.pi * 2.5 * t)) ** 2
    return (0.25 * voiced + 0.02 * np.sin(2 * np.pi * 5500 * t) + 0.01 * np.sin(2 * np.pi * 7200 * t)
            ).astype(np.float32)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and torch's 2 OpenMP threads crawl when the 2 cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Wav2Lip:
    return Wav2Lip.load(save_tiny(tmp_path_factory.mktemp("wav2lip")))


# ---- folder API -----------------------------------------------------------------------------------------------

def test_absent_weights_are_refused_with_a_clear_message(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"Wav2Lip weights not found in .*nothing: put upstream wav2lip_gan "
                                                r"\(or wav2lip\) converted to safetensors there.*python app\.py "
                                                r"models convert wav2lip_gan\.pth .*Nothing is downloaded"):
        Wav2Lip.load(tmp_path / "nothing")
    assert wav2lip.find_weights(tmp_path / "nothing") is None
    pickled_only = tmp_path / "pth"
    pickled_only.mkdir()
    (pickled_only / "wav2lip_gan.pth").write_bytes(b"not read")  # never unpickled: only safetensors count
    assert wav2lip.find_weights(pickled_only) is None
    with pytest.raises(FileNotFoundError, match=r"found \['wav2lip_gan\.pth'\]: convert them to") as refused:
        Wav2Lip.load(pickled_only)
    assert str(refused.value) == wav2lip.missing_message(pickled_only)  # the cheap check says the same
    assert "\n" not in str(refused.value)
    (pickled_only / "wav2lip_gan.safetensors").write_bytes(b"truncated download")
    with pytest.raises(ValueError, match=r"wav2lip_gan\.safetensors is not a readable safetensors file"):
        Wav2Lip.load(pickled_only)
    monkeypatch.setenv(wav2lip.MODEL_DIR_ENV, str(tmp_path / "from_env"))
    assert wav2lip.default_model_dir() == tmp_path / "from_env"
    with pytest.raises(FileNotFoundError, match=f"not found in {tmp_path / 'from_env'}.*TALKING_AVATAR_WAV2LIP_DIR"):
        Wav2Lip.load()
    assert wav2lip.find_weights() is None and "from_env" in wav2lip.missing_message()
    monkeypatch.delenv(wav2lip.MODEL_DIR_ENV)
    assert wav2lip.default_model_dir() == Path(wav2lip.__file__).resolve().parents[1] / "models" / "wav2lip"


@pytest.mark.parametrize("prefix", ["module.", "", "state_dict.module."])
def test_tiny_weights_load_with_or_without_the_upstream_prefix(tmp_path, prefix):
    folder = save_tiny(tmp_path / "wav2lip", prefix)
    model = Wav2Lip.load(folder)
    assert model.config == TINY  # the width is read off the weights
    assert model.device == torch.device("cpu")
    expected, loaded = drawn_state(TINY), model.network.state_dict()
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    assert Wav2Lip.load(folder / "wav2lip_gan.safetensors").config == TINY  # a file path works too
    described = model.describe()
    assert described.startswith("Wav2Lip 96px (width 0.0625)") and "wav2lip_gan.safetensors" in described
    assert model.parameter_count == sum(v.numel() for k, v in expected.items() if "running" not in k
                                        and "num_batches" not in k)
    out = model.sync(random_frames(2), np.array([[20, 10, 80, 80], [25, 5, 90, 85]], float), random_mels(2))
    assert out.shape == (2, 90, 110, 3) and out.dtype == np.uint8


def test_gan_weights_are_preferred_names_pick_a_file_and_counters_may_be_absent(tmp_path, monkeypatch):
    plain = drawn_state(TINY, seed=3)
    save_tiny(tmp_path, name="wav2lip.safetensors", state=plain)
    save_tiny(tmp_path, name="wav2lip_gan.safetensors")
    assert wav2lip.find_weights(tmp_path).name == "wav2lip_gan.safetensors"  # sorted last
    chosen = Wav2Lip.load(tmp_path, name="wav2lip")
    assert chosen.weights.name == "wav2lip.safetensors"
    key = "output_block.1.weight"
    torch.testing.assert_close(chosen.network.state_dict()[key], plain[key], rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match=r"no Wav2Lip weights called 'lipgan'.*wav2lip\.safetensors"):
        Wav2Lip.load(tmp_path, name="lipgan")
    monkeypatch.setenv(wav2lip.MODEL_DIR_ENV, str(tmp_path))
    assert Wav2Lip.load().weights.name == "wav2lip_gan.safetensors"
    without_counters = {k: v for k, v in plain.items() if not k.endswith("num_batches_tracked")}
    model = Wav2Lip.from_state_dict(without_counters)  # e.g. a checkpoint re-exported without BN counters
    assert model.config == TINY and model.describe().endswith("weights from memory")


def test_an_upstream_style_checkpoint_converts_and_loads(tmp_path):
    """Upstream's train script saves {"state_dict": DataParallel keys, "optimizer": Adam state, "global_step",
    "global_epoch"}; `python app.py models convert` keeps the state dict (weights_only loading) and we load it."""
    from render.model_files import convert_checkpoint

    network = Wav2LipNet(TINY)
    network.load_state_dict(drawn_state(TINY))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    network(torch.rand(2, 1, 80, 16), torch.rand(2, 6, 96, 96)).mean().backward()  # BatchNorm counters move
    optimizer.step()
    trained = {f"module.{key}": value.clone() for key, value in network.state_dict().items()}
    torch.save({"state_dict": trained, "optimizer": optimizer.state_dict(), "global_step": 3000,
                "global_epoch": 7}, tmp_path / "wav2lip_gan.pth")
    folder = tmp_path / "wav2lip"
    folder.mkdir()
    assert convert_checkpoint(tmp_path / "wav2lip_gan.pth", folder / "wav2lip_gan.safetensors") == len(trained)
    model = Wav2Lip.load(folder)
    for key, value in model.network.state_dict().items():
        torch.testing.assert_close(value, trained[f"module.{key}"], rtol=0, atol=0)


def test_weights_that_do_not_fit_are_refused_naming_the_keys(tmp_path):
    state = drawn_state(TINY)
    state["audio_encoder.3.conv_block.0.weight_renamed"] = state.pop("audio_encoder.3.conv_block.0.weight")
    state["output_block.1.bias"] = torch.zeros(4)
    save_tiny(tmp_path / "broken", state=state)
    with pytest.raises(ValueError, match=r"wav2lip_gan\.safetensors is not a Wav2Lip generator of width 0\.0625: "
                                         r"1 missing keys \(e\.g\. \['audio_encoder\.3\.conv_block\.0\.weight'\]\), "
                                         r"1 unexpected \(e\.g\. \['audio_encoder\.3\.conv_block\.0\.weight_renamed"
                                         r"'\]\), 1 of another shape \(e\.g\. \['output_block\.1\.bias \(4,\) vs "
                                         r"\(3,\)'\]"):
        Wav2Lip.load(tmp_path / "broken")
    save_file({"model.encoder.weight": torch.zeros(4, 3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match=r"foreign\.safetensors: not Wav2Lip generator weights.*"
                                         r"model\.encoder\.weight"):
        Wav2Lip.load(tmp_path / "foreign.safetensors")
    # 352 tensors at width 1, less the one given, less 50 BatchNorm counters (filled in when absent)
    with pytest.raises(ValueError, match="the state dict is not a Wav2Lip generator of width 1: 301 missing keys"):
        Wav2Lip.from_state_dict({wav2lip.WIDEST_KEY: torch.zeros(512, 512, 3, 3)})


def test_real_size_layout_has_upstreams_keys_and_shapes():
    assert Wav2LipConfig() == Wav2LipConfig(width=1.0)
    with torch.device("meta"):  # shapes only, nothing allocated
        network = Wav2LipNet()
    state = network.state_dict()
    assert len(state) == REAL_TENSORS
    assert sum(value.numel() for value in state.values()) == REAL_ELEMENTS
    assert sum(p.numel() for p in network.parameters()) == REAL_PARAMETERS
    assert {key: tuple(state[key].shape) for key in REAL_SHAPES} == REAL_SHAPES
    assert next(iter(state)) == "face_encoder_blocks.0.0.conv_block.0.weight"
    assert list(state)[-1] == "output_block.1.bias"
    assert wav2lip.infer_config(state) == Wav2LipConfig()
    assert wav2lip.infer_config(wav2lip.strip_checkpoint_prefix({f"module.{k}": v for k, v in state.items()})) \
        == Wav2LipConfig()
    with pytest.raises(ValueError, match="width must be in"):
        Wav2LipConfig(width=0)


# Upstream's own Wav2Lip() (run once outside the repo) with drawn_state(Wav2LipConfig(), seed=7) on the inputs
# below: output shape, mean, std and four values at (face, channel, row, column).
UPSTREAM_OUTPUT = ((2, 3, 96, 96), 0.42754567, 0.15883021, [0.3576402, 0.39968485, 0.54284304, 0.25243244])


def test_real_size_forward_reproduces_upstreams_output():
    network = Wav2LipNet()
    network.load_state_dict(drawn_state(Wav2LipConfig(), seed=7))
    rng = np.random.default_rng(8)
    faces = torch.from_numpy(rng.random((2, 6, 96, 96)).astype(np.float32))
    faces[:, :3, 48:] = 0.0
    mels = torch.from_numpy(rng.normal(0.0, 1.5, (2, 1, 80, 16)).astype(np.float32))
    with torch.inference_mode():
        out = network.eval()(mels, faces)
    shape, mean, std, values = UPSTREAM_OUTPUT
    assert tuple(out.shape) == shape
    picked = [out[f, c, i, j].item() for f, c, i, j in [(0, 0, 0, 0), (0, 1, 40, 70), (1, 2, 95, 95), (1, 0, 60, 10)]]
    np.testing.assert_allclose([out.mean().item(), out.std().item(), *picked], [mean, std, *values], atol=2e-5)


# ---- mel spectrogram and windows ------------------------------------------------------------------------------

# Upstream's audio.melspectrogram (librosa 0.8.1, reflect-padded STFT as its pinned 0.7; resampled to 16 kHz with
# librosa.resample(res_type="kaiser_best"), as librosa.load does) of speech_like(rate), run outside the repo:
# shape, mean, std and values at (band, column).
UPSTREAM_MELS = {
    16000: ((80, 105), -1.8537408, 1.6923306, {(0, 0): -0.574998, (12, 30): -0.7236053, (30, 61): -1.118504,
                                               (45, 77): 0.08376407, (74, 50): -4.0, (78, 103): -0.2664548}),
    44100: ((80, 105), -1.855479, 1.6881121, {(0, 0): -0.6374414, (12, 30): -0.7235817, (30, 61): -1.1184678,
                                              (45, 77): 0.08378856, (74, 50): -4.0, (78, 103): -0.5172755}),
}


@pytest.mark.parametrize("rate", sorted(UPSTREAM_MELS))
def test_mel_spectrogram_reproduces_upstreams(rate):
    shape, mean, std, values = UPSTREAM_MELS[rate]
    mel = mel_spectrogram(speech_like(rate), rate)
    assert mel.shape == shape and mel.dtype == np.float32
    tolerance = 1e-5 if rate == 16000 else 2e-3  # our polyphase resampler vs resampy: the same filter, not bits
    np.testing.assert_allclose([mel.mean(), mel.std()], [mean, std], atol=tolerance)
    np.testing.assert_allclose([mel[band, column] for band, column in values], list(values.values()), atol=tolerance)


def test_mel_spectrogram_shape_silence_and_a_tone():
    one_second = np.zeros(16000, np.float32)
    silence = mel_spectrogram(one_second, 16000)
    assert silence.shape == (80, 81)  # 1 + 16000 // 200 centred frames
    assert np.all(silence == -4.0)
    assert mel_spectrogram(np.zeros(37920), 16000).shape == (80, 190)
    assert mel_spectrogram(np.zeros(44100, np.float32), 44100).shape == (80, 81)  # resampled to 16 kHz first
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)).astype(np.float32)
    mel = mel_spectrogram(tone, 16000)
    band_of_1khz = int(np.argmax(mel[:, 40]))
    centres = wav2lip._slaney_mel_to_hz(np.linspace(wav2lip._hz_to_slaney_mel(55.0),
                                                    wav2lip._hz_to_slaney_mel(7600.0), 82))[1:-1]
    assert abs(centres[band_of_1khz] - 1000.0) < 60.0
    assert mel[band_of_1khz, 5:-5].min() > 2.0 and np.all(mel <= 4.0)
    assert np.median(mel[band_of_1khz + 10:, 5:-5]) < -3.0  # far above the tone: near silence
    resampled = mel_spectrogram((0.5 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000)).astype(np.float32),
                                48000)
    assert resampled.shape == (80, 81) and int(np.argmax(resampled[:, 40])) == band_of_1khz
    np.testing.assert_allclose(resampled[:, 5:-5], mel[:, 5:-5], atol=0.05)
    for bad in (np.zeros((2, 100), np.float32), np.zeros(0, np.float32), np.zeros(100, np.int16)):
        with pytest.raises(ValueError, match="waveform must be"):
            mel_spectrogram(bad, 16000)
    with pytest.raises(ValueError, match="NaN"):
        mel_spectrogram(np.full(100, np.nan), 16000)


@pytest.mark.parametrize("fps, starts", [
    (25, [0, 3, 6, 9, 12, 16, 19, 22, 24, 24, 24, 24]),  # int(t * 3.2); 25 + 16 > 40 columns: the last window
    (30, [0, 2, 5, 8, 10, 13, 16, 18, 21, 24, 24, 24]),  # int(t * (80 / 30)): 26 + 16 > 40
])
def test_mel_windows_follow_upstreams_indexing_and_clamp_at_the_end(fps, starts):
    mel = np.arange(80 * 40, dtype=np.float32).reshape(80, 40)  # each column identifiable
    windows = mel_windows(mel, fps, len(starts))
    assert windows.shape == (len(starts), 80, 16) and windows.dtype == np.float32
    for window, start in zip(windows, starts):
        np.testing.assert_array_equal(window, mel[:, start:start + 16])
    assert mel_windows(mel, fps, 0).shape == (0, 80, 16)


def test_mel_windows_of_a_short_mel_are_padded_with_silence():
    short = np.zeros((80, 10), np.float32)
    windows = mel_windows(short, 25, 3)
    assert windows.shape == (3, 80, 16)
    assert np.all(windows[:, :, :10] == 0.0) and np.all(windows[:, :, 10:] == -4.0)
    with pytest.raises(ValueError, match=r"mel must be \[80, M\]"):
        mel_windows(np.zeros((40, 20), np.float32), 25, 3)
    with pytest.raises(ValueError, match="fps must be positive"):
        mel_windows(short, 0, 3)


# ---- sync -----------------------------------------------------------------------------------------------------

BOXES = np.array([[20, 10, 80, 80], [30, 20, 78, 68], [15, 0, 95, 90]], float)  # (x0, y0, x1, y1)


def lower_part(height: int, width: int, box: np.ndarray) -> np.ndarray:
    """[height, width] bool: the rows of `box` below its middle (centre > middle), its columns."""
    x0, y0, x1, y1 = (int(v) for v in box)
    inside = np.zeros((height, width), bool)
    inside[y0 + -(-(y1 - y0) // 2):y1, x0:x1] = True
    return inside


def test_sync_changes_only_the_lower_half_of_each_box(tiny_model):
    frames, mels = random_frames(3), random_mels(3)
    out = tiny_model.sync(frames, BOXES, mels)
    assert out.shape == frames.shape and out.dtype == np.uint8 and out is not frames
    for k in range(3):
        changed = np.any(out[k] != frames[k], axis=-1)
        allowed = lower_part(90, 110, BOXES[k])
        assert not changed[~allowed].any()  # nothing above the middle of the box, nothing outside it
        assert changed[allowed].mean() > 0.8  # the mouth region is redrawn
        mask = wav2lip.lower_half_mask(*(int(BOXES[k][3] - BOXES[k][1]), int(BOXES[k][2] - BOXES[k][0])))
        assert mask.min() == 0.0 and mask.max() == 1.0 and (mask == 1.0).sum() > 0.15 * mask.size


def test_strength_zero_returns_the_frames_and_strength_mixes(tiny_model):
    frames, mels = random_frames(3), random_mels(3)
    untouched = tiny_model.sync(frames, BOXES, mels, strength=0.0)
    assert np.array_equal(untouched, frames) and untouched is not frames
    full = tiny_model.sync(frames, BOXES, mels, strength=1.0).astype(int)
    half = tiny_model.sync(frames, BOXES, mels, strength=0.5).astype(int)
    step_full, step_half = np.abs(full - frames).sum(), np.abs(half - frames).sum()
    assert 0.45 < step_half / step_full < 0.55


def test_sync_is_deterministic_and_independent_of_batching(tiny_model, tmp_path):
    frames, mels = random_frames(3), random_mels(3)
    out = tiny_model.sync(frames, BOXES, mels)
    assert np.array_equal(out, tiny_model.sync(frames, BOXES, mels))
    assert np.array_equal(out, Wav2Lip.load(save_tiny(tmp_path)).sync(frames, BOXES, mels))  # same weights
    one_by_one = tiny_model.sync(frames, BOXES, mels, batch_size=1)
    assert np.abs(one_by_one.astype(int) - out).max() <= 1  # float rounding may cross a .5
    other_audio = tiny_model.sync(frames, BOXES, random_mels(3, seed=9))
    assert not np.array_equal(out, other_audio)  # the mouth follows the audio


def test_network_sees_bgr_and_its_face_is_pasted_in_place(tiny_model):
    """A 96x96 box needs no resizing: inside the mask's full-weight core the output is the network's face for
    the frame's crop in BGR order, converted back to RGB, exactly."""
    frames, mels = random_frames(1, 120, 130), random_mels(1)
    box = np.array([[17, 11, 113, 107]], float)
    out = tiny_model.sync(frames, box, mels)
    crop_bgr = np.ascontiguousarray(frames[:, 11:107, 17:113, ::-1])
    expected = np.clip(np.rint(tiny_model.predict_faces(crop_bgr, mels)[0, ..., ::-1]), 0, 255)
    core = wav2lip.lower_half_mask(96, 96) == 1.0
    np.testing.assert_array_equal(out[0, 11:107, 17:113][core], expected[core].astype(np.uint8))
    swapped = np.clip(np.rint(tiny_model.predict_faces(np.ascontiguousarray(crop_bgr[..., ::-1]), mels)[0]), 0, 255)
    assert not np.array_equal(out[0, 11:107, 17:113][core], swapped[core].astype(np.uint8))


def test_boxes_outside_the_frame_are_clipped_and_faceless_frames_pass(tiny_model):
    frames, mels = random_frames(3), random_mels(3)
    boxes = np.array([[-30, 40, 40, 120], [np.nan] * 4, [200, 10, 260, 70]], float)  # partly out, none, all out
    out = tiny_model.sync(frames, boxes, mels)
    changed = np.any(out[0] != frames[0], axis=-1)
    allowed = lower_part(90, 110, np.array([0, 40, 40, 90]))  # the box clipped to the frame
    assert changed.any() and not changed[~allowed].any()
    assert np.array_equal(out[1], frames[1]) and np.array_equal(out[2], frames[2])


def test_bad_input_is_refused(tiny_model):
    frames, mels = random_frames(3), random_mels(3)
    with pytest.raises(ValueError, match="uint8 RGB"):
        tiny_model.sync(frames.astype(np.float32), BOXES, mels)
    with pytest.raises(ValueError, match=r"boxes must be \[B, 4\]"):
        tiny_model.sync(frames, BOXES[:2], mels)
    with pytest.raises(ValueError, match="x1 > x0"):
        tiny_model.sync(frames, BOXES[:, [2, 1, 0, 3]], mels)
    nan_corner = BOXES.copy()
    nan_corner[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tiny_model.sync(frames, nan_corner, mels)
    with pytest.raises(ValueError, match=r"mels must be finite \[B, 80, 16\]"):
        tiny_model.sync(frames, BOXES, mels[:, :, :12])
    with pytest.raises(ValueError, match="strength"):
        tiny_model.sync(frames, BOXES, mels, strength=1.5)
