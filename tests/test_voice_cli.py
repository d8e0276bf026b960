"""`voice add`, `voice list` and `voice speak --voice` (audio.voice_cli) through an argparse parser like app.py's.
The successful add -> list -> speak path runs in tests/test_voice.py (one voice fit per test run)."""
from __future__ import annotations

import argparse
import pytest

from audio import voice_cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py")
    voice_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def run(*argv: str) -> int:
    args = parse(*argv)
    return args.handler(args)


def test_list_on_an_empty_library(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TALKING_AVATAR_HOME", str(tmp_path))
    assert run("voice", "list") == 0
    assert "no voices" in capsys.readouterr().out


def test_say_with_unknown_voice_or_bad_output_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKING_AVATAR_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no voice named 'ghost'"):
        run("voice", "speak", "--voice", "ghost", "--text", "Hello.", "--out", str(tmp_path / "a.wav"))
    with pytest.raises(ValueError, match="should end in .wav"):
        run("voice", "speak", "--voice", "ghost", "--text", "Hello.", "--out", str(tmp_path / "a.mp3"))
    with pytest.raises(FileNotFoundError, match="reference clip not found"):
        run("voice", "add", str(tmp_path / "missing.wav"), "--name", "x")
