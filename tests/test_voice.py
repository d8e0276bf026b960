"""Voice profiles (audio.voice): reference checks with clear messages, the library left unchanged on bad
input, and a real clip learned, saved, loaded and used (shared data; Piper and Resemblyzer on the CPU)."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from audio import voice
from audio.voice_convert import SAMPLE_RATE

LJ = "speech/ljspeech_LJ001-0001.wav"  # 9.7 s, female
LIBRI = "speech/librispeech_61-70968-0000.flac"  # 4.9 s, male


def write_wav(path: Path, samples: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def encoder():
    return voice.speaker_encoder()


@pytest.fixture(scope="module")
def clips(shared_data):
    from audio.io import decode_audio

    return {name: decode_audio(shared_data / name, SAMPLE_RATE)[0] for name in (LJ, LIBRI)}


def assert_refused(clip: Path, home: Path, encoder, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        voice.add_voice(clip, "alice", engine=object(), encoder=encoder, home=home)  # engine unused: fails first
    assert voice.list_voices(home) == []
    assert not voice.voices_dir(home).exists() or not any(voice.voices_dir(home).iterdir())


def test_too_short_reference_is_refused(tmp_path, shared_data, encoder):
    assert_refused(shared_data / LIBRI, tmp_path, encoder, "of speech; record at least 5 s")


def test_silent_reference_is_refused(tmp_path, encoder):
    assert_refused(write_wav(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE * 8)), tmp_path, encoder, "silent")


def test_noise_is_refused(tmp_path, encoder):
    noise = np.random.default_rng(0).normal(0.0, 0.1, SAMPLE_RATE * 8)
    assert_refused(write_wav(tmp_path / "noise.wav", noise), tmp_path, encoder, "does not sound like speech")


def test_music_is_refused(tmp_path, encoder):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    notes = [220, 247, 262, 294, 330, 349, 392, 440]
    music = np.concatenate([sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 6)) * np.exp(-0.5 * t)
                            for f in notes])
    assert_refused(write_wav(tmp_path / "music.wav", 0.2 * music), tmp_path, encoder, "music")


def test_two_speakers_are_refused(tmp_path, clips, encoder):
    both = np.concatenate([clips[LJ][: len(clips[LJ]) // 2], clips[LIBRI]])
    assert_refused(write_wav(tmp_path / "two.wav", both), tmp_path, encoder, "more than one speaker")


def test_clipped_reference_is_refused(tmp_path, clips, encoder):
    loud = clips[LJ] / np.max(np.abs(clips[LJ])) * 4.0
    assert_refused(write_wav(tmp_path / "clipped.wav", loud), tmp_path, encoder, "clipped")


def test_quiet_reference_is_refused(tmp_path, clips, encoder):
    quiet = clips[LJ] / np.max(np.abs(clips[LJ])) * 0.015
    assert_refused(write_wav(tmp_path / "quiet.wav", quiet), tmp_path, encoder, "too quiet")


def test_corrupt_file_is_refused(tmp_path, encoder):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(np.random.default_rng(1).integers(0, 255, 500)))
    assert_refused(bad, tmp_path, encoder, "decode|corrupt|not an audio")


def test_bad_name_is_refused_before_any_work(tmp_path, encoder):
    with pytest.raises(ValueError, match="must not contain"):
        voice.add_voice(tmp_path / "missing.wav", "../evil", engine=object(), encoder=encoder, home=tmp_path)


def test_voice_is_learned_saved_and_used(tmp_path, monkeypatch, capsys, shared_data, encoder):
    """One real clip end to end through the CLI (voice add, voice list, voice speak): saved files, round trip, the
    converted Piper speech sounds more like the reference than the plain voice does (Resemblyzer, against the
    clip itself), and the timing JSON follows the speaking-rate change."""
    import json

    from audio.tts import PiperEngine, SpeakOptions
    from audio.io import resample_to
    from tests.test_voice_cli import run

    monkeypatch.setenv("TALKING_AVATAR_HOME", str(tmp_path))
    assert run("voice", "add", str(shared_data / LJ), "--name", "lj") == 0
    assert run("voice", "list") == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("lj\t")
    folder = voice.voice_path("lj")
    assert {p.name for p in folder.iterdir()} == {"voice.json", "voice.safetensors", "reference.wav"}
    assert voice.list_voices() == ["lj"]
    profile = voice.load_profile("lj")
    assert profile.reference.speech_s >= 5.0 and profile.fit.chosen in profile.fit.scores
    assert profile.fit.word_errors[profile.fit.chosen] <= profile.fit.plain_word_error + 0.08 or \
        profile.fit.chosen == min(profile.fit.word_errors, key=profile.fit.word_errors.get)
    with pytest.raises(ValueError, match="exists already"):
        voice.add_voice(shared_data / LJ, "lj", engine=object(), encoder=encoder)
    with pytest.raises(FileNotFoundError, match="no voice named 'bob'"):
        voice.load_profile("bob")

    engine = PiperEngine()
    target = voice.embed(encoder, voice.load_reference(folder / "reference.wav")[1])
    # Piper's output is stochastic, so compare the mean over three sentences (one sentence flaked at +0.02).
    gains = []
    for sentence in ("We walked along the river and talked about the garden.",
                     "The morning train was late again, so we took the bus.",
                     "Please remember to close the windows before you leave."):
        plain = engine.synthesize(sentence, SpeakOptions(noise_w_scale=0))
        cloned = profile.convert(plain)
        plain_similarity = float(voice.embed(encoder, resample_to(plain.waveform, plain.sample_rate)) @ target)
        gains.append(float(voice.embed(encoder, cloned.waveform) @ target) - plain_similarity)
    assert sum(gains) / len(gains) > 0.05, gains
    factor = cloned.duration_s / plain.duration_s
    assert factor == pytest.approx(1.0 / profile.params.rate, rel=2e-3)
    assert [w.label for w in cloned.words] == [w.label for w in plain.words]
    for before, after in zip(plain.phones, cloned.phones):
        assert after.start_s == pytest.approx(before.start_s * factor, abs=1e-9)

    out, timing = tmp_path / "say.wav", tmp_path / "say.json"
    assert run("voice", "speak", "--voice", "lj", "--text", "Good morning, Bob.", "--out", str(out), "--timing", str(timing)) == 0
    with wave.open(str(out)) as handle:
        assert handle.getframerate() == SAMPLE_RATE
        duration = handle.getnframes() / SAMPLE_RATE
    data = json.loads(timing.read_text())
    assert data["duration_s"] == pytest.approx(duration, abs=1e-4)
    assert data["phones"][-1][2] == pytest.approx(duration, abs=1e-3)
    assert len(data["words"]) == 3
    with pytest.raises(FileNotFoundError, match="F5-TTS weights not found"):
        run("voice", "speak", "--voice", "lj", "--backend", "f5tts", "--model-dir", str(tmp_path / "none"), "--text", "Hi.",
            "--out", str(tmp_path / "f5.wav"))


def test_bench_independent_check_identifies_speakers_by_mfcc_statistics():
    """bench.voice's second, encoder-free check: halves of the same synthetic 'speaker' (pitch + timbre) are
    nearest to each other, and a third voice is no closer to either."""
    from bench.voice import independent_scores, mfcc_statistics

    rng = np.random.default_rng(0)

    def speaker(f0_hz: float, tilt: float, seconds: float) -> np.ndarray:
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        phase = 2 * np.pi * np.cumsum(f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 2.5 * t))) / SAMPLE_RATE
        wave = sum(np.sin(k * phase) * k ** -tilt for k in range(1, 40) if k * f0_hz < SAMPLE_RATE / 2)
        wave = wave * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2) + 0.01 * rng.normal(size=t.size)
        return (0.3 * wave / np.max(np.abs(wave))).astype(np.float32)

    low, high, other = speaker(110.0, 1.6, 2.0), speaker(220.0, 0.6, 2.0), speaker(160.0, 1.1, 1.0)
    assert mfcc_statistics(low).shape == (2 * (19),)
    halves = [low[SAMPLE_RATE:], high[SAMPLE_RATE:]]
    scores = independent_scores([low[:SAMPLE_RATE], high[:SAMPLE_RATE]], other, halves)
    assert scores["mfcc_id_cloned"] == 1.0
    assert scores["mfcc_ratio_cloned"] < 0.5 < scores["mfcc_ratio_plain"]
    assert scores["f0_error_st_cloned"] < 0.5 < scores["f0_error_st_plain"]
    with pytest.raises(ValueError, match="held-out"):
        independent_scores([low], other, halves)
