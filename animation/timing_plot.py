"""A PNG that shows why lip sync looks the way it does: waveform, words, phones, viseme weights, openness.

All panels share one time axis (seconds), so a wrong phone boundary, a missing closure or a mouth that opens
in a pause can be seen at a glance. Phone bars are coloured by their viseme class with the same colours as
the stacked viseme weights; thin black ticks under the weights mark the frames forced closed for p/b/m.
Uses matplotlib's Agg canvas directly (no pyplot state, no display needed).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from animation.coarticulation import (CoarticulationOptions, bilabial_closure_frames, filled_track,
                                      viseme_weights)
from animation.loudness import OpennessOptions, frame_rms, loudness_gain, mouth_openness
from animation.visemes import SHAPES, VISEMES
from audio.speech import Speech, load_timing

# One colour per viseme: closures dark, lip-teeth/tongue consonants cool, r and vowels warm, rounded purple.
VISEME_COLOURS: dict[str, str] = {
    "sil": "#d9d9d9", "PP": "#1b1b1b", "FF": "#bcbd22", "TH": "#b15928", "DD": "#1f78b4", "kk": "#a6cee3",
    "CH": "#33a02c", "SS": "#b2df8a", "nn": "#17becf", "RR": "#fb9a99", "aa": "#e31a1c", "E": "#ff7f00",
    "ih": "#fdbf6f", "oh": "#cab2d6", "ou": "#9467bd",
}


@dataclass(frozen=True)
class TimingPlotOptions:
    """Image size in pixels (width None: 320 px per second of speech, clamped to 1400..6000) and an
    optional (start_s, end_s) window to zoom into; the signals are always computed on the whole clip."""

    width_px: int | None = None
    height_px: int = 1000
    dpi: int = 100
    time_range: tuple[float, float] | None = None

    def width_for(self, duration_s: float) -> int:
        if self.width_px is not None:
            return int(self.width_px)
        return int(np.clip(320 * duration_s + 300, 1400, 6000))


def _waveform_envelope(wave: np.ndarray, sample_rate: int, n_bins: int) -> tuple[np.ndarray, ...]:
    """Min/max of the waveform in `n_bins` equal time bins (drawing every sample is slow and unreadable)."""
    n_bins = max(1, min(n_bins, len(wave)))
    edges = np.linspace(0, len(wave), n_bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(wave, edges[:-1]) if len(wave) else np.zeros(1)
    hi = np.maximum.reduceat(wave, edges[:-1]) if len(wave) else np.zeros(1)
    times = (edges[:-1] + edges[1:]) / 2.0 / sample_rate
    return times, lo, hi


def _draw_segments(ax, segments, lane_y: float, height: float, colours, px_per_s: float, fontsize: float,
                   start_s: float, end_s: float) -> None:
    for seg, colour in zip(segments, colours):
        if seg.end_s < start_s or seg.start_s > end_s:
            continue
        ax.broken_barh([(seg.start_s, seg.duration_s)], (lane_y, height), facecolors=colour,
                       edgecolors="white", linewidth=0.8)
        label = seg.label.strip() or "␣"
        if seg.duration_s * px_per_s >= 0.62 * fontsize * (len(label) + 0.5):
            ax.text((seg.start_s + seg.end_s) / 2, lane_y + height / 2, label, ha="center", va="center",
                    fontsize=fontsize, clip_on=True)


def _class_at(track, time_s: float) -> str:
    """The resolved viseme class at a time (so stress marks and length marks show their real class)."""
    for seg in track:
        if seg.start_s <= time_s < seg.end_s:
            return seg.viseme
    return "sil"


def avatar_coarticulation(speech: Speech) -> CoarticulationOptions | None:
    """The coarticulation options `motion_from_speech` uses for this speech's phone-based mouth: p/b/m closures held
    (`MotionOptions.closure_hold`) where its phones are known, else the defaults (None)."""
    from animation.motion import MotionOptions, phone_mouth_coarticulation

    return phone_mouth_coarticulation(speech, MotionOptions().closure_hold)


def plot_timing(speech: Speech, fps: float, path: str | Path, options: TimingPlotOptions | None = None,
                coarticulation: CoarticulationOptions | None = None,
                openness: OpennessOptions | None = None) -> Path:
    """Write the timing PNG of `speech` at video rate `fps` to `path`; returns the path.

    Panels top to bottom: waveform (with word boundaries), word and phone bars (phones coloured by viseme),
    stacked viseme weights per frame (with the p/b/m closure frames marked), mouth openness and loudness.
    coarticulation None: the avatar's own (closures held through known p/b/m, `MotionOptions.closure_hold`).
    """
    options = options or TimingPlotOptions()
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    duration = speech.duration_s
    n_frames = int(round(duration * fps))
    coarticulation = coarticulation or avatar_coarticulation(speech)
    weights = viseme_weights(speech.phones, speech.phone_set, fps, n_frames, coarticulation)  # [T, V]
    opening = mouth_openness(weights, speech.waveform, speech.sample_rate, fps, openness)  # [T]
    opts_open = openness or OpennessOptions()
    gain = loudness_gain(frame_rms(speech.waveform, speech.sample_rate, fps, n_frames, opts_open.window_frames),
                         opts_open)
    track = filled_track(speech.phones, speech.phone_set, n_frames / fps)
    closures = bilabial_closure_frames(track, fps, n_frames, coarticulation and coarticulation.closure_hold)
    centres = (np.arange(n_frames) + 0.5) / fps
    start_s, end_s = options.time_range or (0.0, max(duration, 1e-3))
    if not end_s > start_s:
        raise ValueError(f"time_range must have end > start, got {options.time_range}")

    width, height = options.width_for(end_s - start_s), int(options.height_px)
    fig = Figure(figsize=(width / options.dpi, height / options.dpi), dpi=options.dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [1.6, 1.3, 2.4, 1.3]})
    ax_wave, ax_seg, ax_vis, ax_open = axes
    px_per_s = width * 0.82 / (end_s - start_s)
    label_size = 9

    times, lo, hi = _waveform_envelope(speech.waveform, speech.sample_rate, int(4 * width))
    ax_wave.fill_between(times, lo, hi, color="#4c72b0", linewidth=0)
    for word in speech.words:
        ax_wave.axvline(word.start_s, color="#888888", linewidth=0.6, linestyle=":")
    ax_wave.set_ylabel("waveform")
    shown_text = repr(speech.text[:120]) if speech.text.strip() else "(no transcript)"
    ax_wave.set_title(f"{shown_text}  ·  timing: {speech.source or 'unknown'}, phones: {speech.phone_set}"
                      f", {fps:g} fps, {n_frames} frames"
                      + "".join(f"\nnote: {note}" for note in speech.notes[:2]), fontsize=11, loc="left")

    phone_colours = [VISEME_COLOURS[_class_at(track, (p.start_s + p.end_s) / 2)] for p in speech.phones]
    _draw_segments(ax_seg, speech.words, 1.1, 0.8, ["#c6dbef"] * len(speech.words), px_per_s, label_size + 1,
                   start_s, end_s)
    _draw_segments(ax_seg, speech.phones, 0.1, 0.8, phone_colours, px_per_s, label_size, start_s, end_s)
    ax_seg.set_ylim(0, 2)
    ax_seg.set_yticks([0.5, 1.5], ["phones", "words"])

    if n_frames:
        edges = np.arange(n_frames + 1) / fps  # each frame drawn over its own time span
        ax_vis.stackplot(edges, np.vstack([weights, weights[-1:]]).T, colors=[VISEME_COLOURS[v] for v in VISEMES],
                         step="post",
                         labels=[f"{v}: {SHAPES[v].description.split(':')[0]}" for v in VISEMES], linewidth=0)
        ax_vis.plot(centres[closures], np.full(len(closures), -0.04), "|", color="black", markersize=8,
                    label="p/b/m closure frame")
    ax_vis.set_ylim(-0.08, 1.0)
    ax_vis.set_ylabel("viseme weights")
    # One legend for the whole figure, outside on the right, so it never squeezes the panels.
    fig.legend(*ax_vis.get_legend_handles_labels(), loc="outside right center", fontsize=8, frameon=False,
               title="viseme (shape: phones)", title_fontsize=9)

    ax_open.plot(centres, gain, color="#999999", linewidth=1.0, linestyle="--", label="loudness (0..1)")
    ax_open.plot(centres, opening, color="#c0392b", linewidth=1.8, label="mouth openness")
    ax_open.set_ylim(-0.02, 1.05)
    ax_open.set_ylabel("openness")
    ax_open.set_xlabel("time (s)")
    ax_open.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax_open.set_xlim(start_s, end_s)
    for ax in axes:
        ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
        ax.tick_params(labelsize=9)
    fig.savefig(path, dpi=options.dpi)
    return path


def speech_from_files(timing_path: str | Path, audio_path: str | Path) -> Speech:
    """A Speech from a timing.json (`app.py speak/timing`) and the audio it describes.

    The timing must describe this very waveform (for uploads: the prepared audio that the timing command
    aligned, not the raw upload, if trimming moved it); a duration mismatch is reported in `notes`.
    """
    from audio.io import decode_audio  # ffmpeg only when plotting from files

    data = load_timing(timing_path)
    sample_rate = int(data["sample_rate"])
    wave, notes = decode_audio(audio_path, target_sr=sample_rate)
    speech = Speech(wave, sample_rate, data.get("text", ""), words=data["words"], phones=data["phones"],
                    phone_set=data["phone_set"], source=data.get("source", ""), notes=list(notes))
    expected = float(data.get("duration_s", speech.duration_s))
    if abs(expected - speech.duration_s) > 0.05:
        speech.notes.append(f"audio lasts {speech.duration_s:.2f} s but the timing was made for {expected:.2f} s")
    return speech


def add_plot_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `plot-timing TIMING AUDIO --out PNG` (for app.py; also `python -m animation.timing_plot`)."""
    cmd = subparsers.add_parser("plot-timing", help="timing JSON + audio -> PNG of phones, visemes, openness",
                                description="Draw waveform, words, phones, viseme weights and mouth openness.")
    cmd.add_argument("timing", type=Path, help="timing JSON written by `speak --timing` or `timing`")
    cmd.add_argument("audio", type=Path, help="the audio the timing describes")
    cmd.add_argument("--out", type=Path, required=True, help="output PNG")
    cmd.add_argument("--fps", type=float, default=25.0, help="video frame rate (default 25)")
    cmd.add_argument("--start", type=float, default=None, help="zoom: first second to show")
    cmd.add_argument("--end", type=float, default=None, help="zoom: last second to show")
    cmd.set_defaults(handler=run_plot_command)


def run_plot_command(args: argparse.Namespace) -> int:
    speech = speech_from_files(args.timing, args.audio)
    window = None
    if args.start is not None or args.end is not None:
        window = (args.start or 0.0, args.end if args.end is not None else speech.duration_s)
    plot_timing(speech, args.fps, args.out, TimingPlotOptions(time_range=window))
    for note in speech.notes:
        print(f"note: {note}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    import sys

    parser = argparse.ArgumentParser(prog="python -m animation.timing_plot")
    add_plot_command(parser.add_subparsers(dest="command", required=True))
    argv = sys.argv[1:]
    parsed = parser.parse_args(["plot-timing", *argv] if argv[:1] != ["plot-timing"] else argv)
    try:
        sys.exit(parsed.handler(parsed))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
