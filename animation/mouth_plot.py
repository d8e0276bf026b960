"""A PNG of how far the mouth opens over a sentence's phone timing, to check a mouth driver by eye.

Three panels share one time axis (seconds): the waveform envelope; the phones as bars coloured by viseme class
(`animation.timing_plot.VISEME_COLOURS`), p/b/m labelled in bold; and one or more mouth-opening curves (inner-lip
gap over inter-ocular distance, per video frame), e.g. the audio -> mouth model against the phone-based
visemes. A good driver opens on vowels, closes on p/b/m and rests in pauses; this shows where it does not.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from animation.timing_plot import VISEME_COLOURS
from animation.visemes import BILABIAL_CLASS, viseme_class_of


def plot_mouth_opening(speech, fps: float, curves: dict[str, np.ndarray], path: str | Path,
                       title: str = "") -> Path:
    """Write the PNG. speech: `audio.speech.Speech` (waveform, phones); curves: label -> opening [T] at `fps`."""
    if not curves:
        raise ValueError("give at least one opening curve")
    lengths = {len(np.asarray(c)) for c in curves.values()}
    if len(lengths) != 1:
        raise ValueError(f"opening curves differ in length: {sorted(lengths)}")
    wave = np.asarray(speech.waveform, dtype=np.float64)
    duration = len(wave) / float(speech.sample_rate)
    figure = Figure(figsize=(max(8.0, 2.2 * duration), 6.0), dpi=100)
    FigureCanvasAgg(figure)
    envelope_ax, phone_ax, open_ax = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1, 0.6, 2]})
    bins = max(1, len(wave) // 160)
    chunks = np.array_split(np.abs(wave), bins)
    times = np.linspace(0, duration, bins)
    envelope_ax.fill_between(times, [-c.max() for c in chunks], [c.max() for c in chunks], color="#777777")
    envelope_ax.set_ylabel("audio")
    envelope_ax.set_yticks([])
    for phone in speech.phones:
        cls = viseme_class_of(phone.label, speech.phone_set)
        phone_ax.axvspan(phone.start_s, phone.end_s, color=VISEME_COLOURS.get(cls, "#ffffff"), alpha=0.8)
        if cls != "sil":
            bold = cls == BILABIAL_CLASS
            phone_ax.text(0.5 * (phone.start_s + phone.end_s), 0.5, phone.label, ha="center", va="center",
                          fontsize=9 if bold else 7, fontweight="bold" if bold else "normal",
                          color="white" if bold else "black")
        if cls == BILABIAL_CLASS:
            open_ax.axvspan(phone.start_s, phone.end_s, color="#1b1b1b", alpha=0.15)
    phone_ax.set_yticks([])
    phone_ax.set_ylabel("phones")
    for label, curve in curves.items():
        curve = np.asarray(curve, dtype=np.float64)
        open_ax.plot((np.arange(len(curve)) + 0.5) / fps, curve, label=label, lw=1.6)
    open_ax.set_ylabel("mouth opening\n(lip gap / eye distance)")
    open_ax.set_xlabel("seconds (grey bands: p/b/m)")
    open_ax.legend(loc="upper right", fontsize=8)
    open_ax.set_xlim(0, duration)
    if title:
        envelope_ax.set_title(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def plot_lipsync_tail(audio: np.ndarray, sample_rate: int, fps: float, scores: dict, path: str | Path,
                      title: str = "") -> Path:
    """The held-out tail's lip sync as a PNG: the real mouth's opening against the audio-driven render's (both
    tracked by FaceMesh, `animation.lipsync_metrics.lipsync_scores`), over the tail's recognised phones.

    audio: [S] mono tail audio at `sample_rate`; scores: `lipsync_scores` of the driven render against the real
    frames (its "open_real", "open_rendered" curves [T], and r with its interval and LMD for the title)."""
    from audio.align import time_speech

    speech = time_speech(np.asarray(audio, dtype=np.float32), None, sample_rate=sample_rate)
    heading = f"{title}: " if title else ""
    heading += f"opening r {scores['open_r']:.3f}"
    low, high = scores.get("open_r_interval", (np.nan, np.nan))
    if np.isfinite(low) and np.isfinite(high):
        heading += f" (90 % interval {low:.2f}-{high:.2f})"
    heading += f", LMD {scores['lmd_pct']:.2f} % (targets r >= 0.6, LMD <= 2.5 %)"
    curves = {"real video (tracked)": scores["open_real"],
              "driven by the audio alone (rendered, tracked)": scores["open_rendered"]}
    return plot_mouth_opening(speech, fps, curves, path, heading)
