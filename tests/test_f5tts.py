"""F5-TTS-style backend (audio.f5tts): a tiny model built here, saved as safetensors, found, loaded and run
end to end; refused with a clear message when the weights are absent or do not fit the config."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audio import f5tts
from audio.tts import SpeakOptions

TINY = {"arch": {"dim": 32, "depth": 2, "heads": 2, "ff_mult": 2, "text_dim": 16, "conv_layers": 1},
        "mel_spec": {"target_sample_rate": 16000, "n_mel_channels": 20, "hop_length": 160, "win_length": 640,
                     "n_fft": 640},
        "vocoder": {"dim": 24, "intermediate_dim": 48, "num_layers": 1}}
VOCAB = list(" abcdefghijklmnopqrstuvwxyz.,'")
FAST = f5tts.SampleOptions(steps=4, cfg_strength=2.0)


def build_tiny_model(folder: Path, prefix: str = "ema_model.transformer.") -> Path:
    torch.manual_seed(0)
    config = f5tts.F5Config.from_dict(TINY)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    model = f5tts.DiT(config.arch, config.mel.n_mel_channels, len(VOCAB))
    save_file({prefix + k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "model_1200.safetensors"))
    vocoder = f5tts.Vocoder(config.vocoder, config.mel)
    save_file({k: v.contiguous() for k, v in vocoder.state_dict().items()}, str(folder / "vocoder.safetensors"))
    return folder


def reference_wav(path: Path, seconds: float = 1.0, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    wave_ = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 4 * t)) / 2
    wave_ += np.random.default_rng(0).normal(0, 0.01, len(t))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes((wave_ * 32767).astype("<i2").tobytes())
    return path


def test_absent_weights_are_refused_with_a_clear_message(tmp_path):
    assert f5tts.find_model(tmp_path / "nothing") is None
    with pytest.raises(FileNotFoundError, match="F5-TTS weights not found.*config.json, vocab.txt"):
        f5tts.F5TTSEngine.load(tmp_path / "nothing")
    partial = build_tiny_model(tmp_path / "partial")
    (partial / "vocoder.safetensors").unlink()
    assert f5tts.find_model(partial) is None


def test_present_weights_are_selected_and_generate_the_expected_length(tmp_path):
    folder = build_tiny_model(tmp_path / "f5")
    files = f5tts.find_model(folder)
    assert files is not None and files.model.name == "model_1200.safetensors"
    engine = f5tts.F5TTSEngine.load(folder)
    assert engine.sample_rate == 16000
    reference = np.random.default_rng(2).normal(0, 0.1, 16000).astype(np.float32)  # 1 s -> 101 frames
    ref_frames = 16000 // 160 + 1
    out = engine.generate(reference, "hello there", reference_text="a reference", sample=FAST)
    expected = engine.frames_for(ref_frames, "a reference", "hello there", 1.0)
    assert expected == int(ref_frames * len("hello there") / len("a reference"))
    assert out.shape == (expected * 160,) and np.all(np.isfinite(out))
    faster = engine.generate(reference, "hello there", reference_text="a reference", speed=2.0, sample=FAST)
    assert len(faster) == int(ref_frames * len("hello there") / len("a reference") / 2.0) * 160
    again = engine.generate(reference, "hello there", reference_text="a reference", sample=FAST)
    np.testing.assert_array_equal(out, again)  # seeded: reproducible


def test_weights_are_really_loaded(tmp_path):
    folder = build_tiny_model(tmp_path / "f5", prefix="")
    engine = f5tts.F5TTSEngine.load(folder)
    from safetensors.torch import load_file

    saved = load_file(str(folder / "model_1200.safetensors"))
    for name, value in engine.model.state_dict().items():
        torch.testing.assert_close(value, saved[name])


def test_mismatched_checkpoint_is_refused(tmp_path):
    folder = build_tiny_model(tmp_path / "f5")
    bigger = dict(TINY, arch=dict(TINY["arch"], dim=48))
    (folder / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(ValueError, match="does not fit the model"):
        f5tts.F5TTSEngine.load(folder)
    (folder / "config.json").write_text(json.dumps(dict(TINY, arch=dict(TINY["arch"], wings=2))))
    with pytest.raises(ValueError, match="unknown ArchConfig fields"):
        f5tts.F5TTSEngine.load(folder)


def test_speech_from_a_reference_file(tmp_path):
    engine = f5tts.F5TTSEngine.load(build_tiny_model(tmp_path / "f5"))
    speech = engine.synthesize_with_reference("Hello there.", reference_wav(tmp_path / "ref.wav"),
                                              SpeakOptions(), sample=FAST, time_output=False)
    assert speech.sample_rate == 16000 and speech.text == "Hello there."
    hop = 160
    assert len(speech.waveform) % hop == 0
    expected_frames = int(len("Hello there.") / f5tts.CHARS_PER_SECOND * 16000 / hop)
    assert len(speech.waveform) == expected_frames * hop
    assert np.max(np.abs(speech.waveform)) == pytest.approx(0.9, abs=1e-5)


def test_log_mel_frame_count_and_vocoder_length():
    config = f5tts.F5Config.from_dict(TINY)
    mel = f5tts.log_mel_spectrogram(torch.zeros(1600), config.mel)
    assert mel.shape == (11, 20) and torch.allclose(mel, torch.full_like(mel, float(np.log(1e-5))))
    vocoder = f5tts.Vocoder(config.vocoder, config.mel)
    assert vocoder(torch.zeros(1, 7, 20)).shape == (1, 7 * 160)
