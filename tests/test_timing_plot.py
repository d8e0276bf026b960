"""The timing PNG: written, of the asked size, with something drawn in it."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from animation.timing_plot import TimingPlotOptions, plot_timing
from audio.speech import Segment, Speech

SR = 16000


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def synthetic_speech(phone_set: str = "arpabet") -> Speech:
    """'bob moved' as tones: voiced stretches for vowels, silence for the closures."""
    phones = [("B", 0.30, 0.36), ("AA1", 0.36, 0.55), ("B", 0.55, 0.60), ("SIL", 0.60, 0.95),
              ("M", 0.95, 1.02), ("UW1", 1.02, 1.25), ("V", 1.25, 1.32), ("D", 1.32, 1.40)]
    if phone_set == "ipa":
        ipa = {"B": "b", "AA1": "ˈɑː", "SIL": ".", "M": "m", "UW1": "uː", "V": "v", "D": "d"}
        phones = [(ipa[p], s, e) for p, s, e in phones]
    t = np.arange(int(1.7 * SR)) / SR
    voiced = np.zeros_like(t)
    for label, start, end in phones:
        if label in ("AA1", "UW1", "ˈɑː", "uː", "V", "v", "M", "m"):
            voiced[(t >= start) & (t < end)] = 0.4
    wave = (voiced * np.sin(2 * np.pi * 140 * t)).astype(np.float32)
    return Speech(wave, SR, "bob moved", words=[Segment("bob", 0.30, 0.60), Segment("moved", 0.95, 1.40)],
                  phones=[Segment(*p) for p in phones], phone_set=phone_set, source="synthetic")


@pytest.mark.parametrize("phone_set", ["arpabet", "ipa"])
def test_plot_writes_png_of_requested_size(tmp_path: Path, phone_set: str) -> None:
    out = plot_timing(synthetic_speech(phone_set), 25.0, tmp_path / "timing.png",
                      TimingPlotOptions(width_px=1200, height_px=800, dpi=100))
    assert out.is_file() and out.stat().st_size > 20_000
    assert png_size(out) == (1200, 800)
    pixels = imread(out)[..., :3]
    # not a blank canvas: many distinct colours (stacked visemes, bars, curves)
    assert len(np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)) > 50


def test_plot_default_width_grows_with_duration_and_zoom(tmp_path: Path) -> None:
    speech = synthetic_speech()
    out = plot_timing(speech, 30.0, tmp_path / "auto.png")
    assert png_size(out) == (TimingPlotOptions().width_for(speech.duration_s), 1000)
    zoom = plot_timing(speech, 30.0, tmp_path / "zoom.png", TimingPlotOptions(time_range=(0.2, 0.7)))
    assert zoom.stat().st_size > 10_000
    with pytest.raises(ValueError, match="time_range"):
        plot_timing(speech, 30.0, tmp_path / "bad.png", TimingPlotOptions(time_range=(1.0, 0.5)))


def test_plot_of_silence_without_phones(tmp_path: Path) -> None:
    speech = Speech(np.zeros(SR // 2, np.float32), SR, "", phone_set="ipa")
    out = plot_timing(speech, 25.0, tmp_path / "empty.png", TimingPlotOptions(width_px=800, height_px=600))
    assert png_size(out) == (800, 600)


def test_the_plot_shows_closures_as_the_avatar_holds_them() -> None:
    """Known phones (Piper, forced alignment) get the avatar's held p/b/m closures; recognised ones the defaults."""
    from animation.motion import MotionOptions
    from animation.timing_plot import avatar_coarticulation

    wave = np.zeros(16000, np.float32)
    phones = [Segment("AA1", 0.1, 0.3), Segment("P", 0.3, 0.42), Segment("AA1", 0.42, 0.6)]
    known = Speech(wave, 16000, "pa", [], phones, "arpabet", "piper")
    heard = Speech(wave, 16000, "pa", [], phones, "arpabet", "recognition")
    assert avatar_coarticulation(known).closure_hold == MotionOptions().closure_hold == 0.5
    assert avatar_coarticulation(heard) is None
