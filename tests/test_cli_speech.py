"""`app.py speak` and `app.py timing` end to end through `app.main`."""
from __future__ import annotations

import importlib.util
import wave

import numpy as np
import pytest

import app
from audio.speech import load_timing

pytest.importorskip("piper")


def test_speak_writes_wav_and_timing(tmp_path, capsys):
    wav, timing = tmp_path / "speech.wav", tmp_path / "timing.json"
    code = app.main(["speak", "--text", "Hello there, Dr. Jones. It's 3:30pm! 😀", "--out", str(wav),
                     "--timing", str(timing), "--speed", "1.2"])
    assert code == 0
    with wave.open(str(wav), "rb") as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 22050)
        frames = audio.getnframes()
        pcm = np.frombuffer(audio.readframes(frames), dtype="<i2")
    assert frames > 22050 and np.abs(pcm).max() > 20000
    data = load_timing(timing)
    assert data["source"] == "piper" and data["phone_set"] == "ipa"
    assert [w.label for w in data["words"]] == ["hello", "there", "doctor", "jones", "it's", "three", "thirty",
                                                "pm"]
    assert data["phones"][-1].end_s == pytest.approx(frames / 22050, abs=1e-4)
    assert any("😀" in note for note in data["notes"])
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "note:" in captured.err
    assert not list(tmp_path.glob(".*.tmp"))  # temporary files renamed away


def test_speak_reads_a_text_file(tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("First line.\nSecond line.", encoding="utf-8")
    wav = tmp_path / "out.wav"
    assert app.main(["speak", "--text-file", str(script), "--out", str(wav)]) == 0
    assert wav.stat().st_size > 44


@pytest.mark.parametrize("argv, message", [
    (["speak", "--text", "   ", "--out", "{dir}/s.wav"], "empty"),
    (["speak", "--text", "Привет, как у тебя дела?", "--out", "{dir}/s.wav"], "Cyrillic"),
    (["speak", "--text", "Hi.", "--out", "{dir}/s.mp3"], ".wav"),
    (["speak", "--text", "Hi.", "--out", "{dir}/s.wav", "--speed", "9"], "speed"),
    (["speak", "--text-file", "{dir}/missing.txt", "--out", "{dir}/s.wav"], "not found"),
    (["speak", "--text", "Hi.", "--out", "{dir}/no/such/folder/s.wav"], "folder"),
])
def test_speak_bad_input_exits_2_and_keeps_the_old_output(tmp_path, capsys, argv, message):
    old = tmp_path / "s.wav"
    old.write_bytes(b"previous result")
    code = app.main([arg.replace("{dir}", str(tmp_path)) for arg in argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert old.read_bytes() == b"previous result"


def test_failed_synthesis_never_overwrites_the_output(tmp_path, monkeypatch):
    from audio import tts

    def broken(self, text, options=None, progress=None):
        raise ValueError("synthesis failed on purpose")

    monkeypatch.setattr(tts.PiperEngine, "synthesize", broken)
    old = tmp_path / "s.wav"
    old.write_bytes(b"previous result")
    assert app.main(["speak", "--text", "Hello.", "--out", str(old)]) == 2
    assert old.read_bytes() == b"previous result"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(importlib.util.find_spec("audio.align") is None, reason="audio.align not written yet")
def test_timing_command_aligns_speech_with_its_text(tmp_path):
    wav, timing = tmp_path / "speech.wav", tmp_path / "timing.json"
    assert app.main(["speak", "--text", "The cat sat on the mat.", "--out", str(wav)]) == 0
    assert app.main(["timing", str(wav), "--text", "The cat sat on the mat.", "--out", str(timing)]) == 0
    data = load_timing(timing)
    assert [w.label.lower() for w in data["words"]] == ["the", "cat", "sat", "on", "the", "mat"]
    assert data["phone_set"] == "arpabet"


def test_timing_command_missing_audio_exits_2(tmp_path, capsys):
    code = app.main(["timing", str(tmp_path / "nothing.wav"), "--out", str(tmp_path / "t.json")])
    assert code == 2
    assert "not found" in capsys.readouterr().err
