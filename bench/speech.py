"""Speech benchmark: TTS speed, pocketsphinx speed, and timing accuracy on real reference alignments.

    python -m bench.speech [--json] [--data DIR]

- tts_rtf: Piper (joe voice) wall seconds per second of audio on a ~45 s paragraph, after a warm-up call.
- align_x_realtime / recognize_x_realtime: seconds of audio per wall second of `forced_align` /
  `recognize_phones` (decoder construction included), pooled over the reference clips. The `_cpu` variants
  divide by this process's CPU time instead of wall time: pocketsphinx is single-threaded, so on a shared,
  overloaded machine they estimate the speed an idle core would give. The targets apply to the wall figures.
- word_boundary_median_ms: median |start| and |end| error of forced-aligned words against the reference
  alignments in ../shared/data/aligned (MFA TextGrids, the LibriTTS MFA CSV, GRID .align), all words pooled.
- viseme_agreement_text / _notext: fraction of 100 fps frames over the reference speech span whose viseme
  class (animation.visemes) matches the reference, for forced alignment / phone recognition; frame-weighted
  over the clips that have phone alignments.
- piper_vs_alignment_ms: median |word start| difference between Piper's own timing and forced alignment of
  Piper's audio (same text).
Targets (issue 3): tts_rtf <= 0.1, both speeds >= 20x, boundary <= 30 ms, agreement >= 0.80 / >= 0.65.
Timings depend on machine load: say how loaded the machine was when quoting them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from bench.common import emit, format_table, json_flag_parser

DEFAULT_DATA = Path(os.environ.get("TALKING_AVATAR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" /
                                   "data"))
PARAGRAPH = (
    "The studio turns a short selfie video into a talking avatar. First it tracks the face in every frame and "
    "learns how the head moves. Then it trains thousands of small coloured blobs that follow the face mesh. "
    "When you type a script, the voice reads it aloud, and each sound is timed to the hundredth of a second. "
    "Those timings drive the lips: closed for p, b and m, rounded for oo and w, open for ah. Finally, the "
    "frames are rendered on the processor and joined with the audio into a video you can download. The "
    "whole process runs offline, with nothing fetched from the internet, on an ordinary laptop."
)
PIPER_SENTENCES = ("Please call Stella and ask her to bring these things with her from the store. "
                   "We measured everything twice, and the results surprised everyone in the room. "
                   "The quick brown fox jumps over the lazy dog while the farmer watches from his porch.")


def tts_figures() -> dict:
    """Piper real-time factor, and Piper's word starts against forced alignment of its own audio."""
    from audio.align import time_speech
    from audio.io import AudioOptions
    from audio.tts import PiperEngine, tts_real_time_factor

    engine = PiperEngine()
    engine.synthesize("Warm up.")
    cpu_start = time.process_time()
    rtf = tts_real_time_factor(engine, PARAGRAPH)
    cpu_s = time.process_time() - cpu_start
    speech = engine.synthesize(PIPER_SENTENCES)
    start = time.perf_counter()
    timed = time_speech(speech.waveform, speech.text, speech.sample_rate, audio_options=AudioOptions(trim=False))
    time_speech_x = speech.duration_s / (time.perf_counter() - start)
    if timed.source != "forced_alignment":
        raise RuntimeError(f"forced alignment of Piper's own audio failed: {timed.notes}")
    starts = [abs(a.start_s - b.start_s) for a, b in zip(speech.words, timed.words) if a.label == b.label]
    paragraph_s = engine.synthesize(PARAGRAPH).duration_s  # durations are stochastic: close enough for CPU rtf
    return {"tts_rtf": rtf, "tts_rtf_cpu": cpu_s / paragraph_s, "piper_vs_alignment_ms": 1000.0 * float(np.median(starts)),
            "time_speech_x_realtime": time_speech_x}


def main() -> None:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    args = parser.parse_args()
    from audio.reference_alignments import score_references

    summary = score_references(args.data)
    audio_s = sum(c.duration_s for c in summary.clips)
    result = {
        **tts_figures(),
        "align_x_realtime": audio_s / sum(c.align_s for c in summary.clips),
        "recognize_x_realtime": audio_s / sum(c.recognize_s for c in summary.clips),
        "align_x_realtime_cpu": audio_s / sum(c.align_cpu_s for c in summary.clips),
        "recognize_x_realtime_cpu": audio_s / sum(c.recognize_cpu_s for c in summary.clips),
        "word_boundary_median_ms": summary.word_boundary_median_ms,
        "viseme_agreement_text": summary.viseme_agreement_text,
        "viseme_agreement_notext": summary.viseme_agreement_notext,
    }
    rows = [{"clip": c.name, "audio_s": c.duration_s, "boundary_median_ms": 1000 * float(np.median(c.boundary_errors_s)),
             "agree_text_%": 100 * c.agreement_text if c.agreement_text is not None else "-",
             "agree_notext_%": 100 * c.agreement_notext if c.agreement_notext is not None else "-",
             "align_x_rt": c.duration_s / c.align_s, "recognize_x_rt": c.duration_s / c.recognize_s}
            for c in summary.clips]
    targets = {"tts_rtf": "<= 0.1", "align_x_realtime": ">= 20", "recognize_x_realtime": ">= 20",
               "word_boundary_median_ms": "<= 30", "viseme_agreement_text": ">= 0.80",
               "viseme_agreement_notext": ">= 0.65", "piper_vs_alignment_ms": "<= 30",
               "time_speech_x_realtime": "-", "tts_rtf_cpu": "-", "align_x_realtime_cpu": "-",
               "recognize_x_realtime_cpu": "-"}
    summary_rows = [{"figure": k, "value": f"{v:.3f}", "target": targets[k]} for k, v in result.items()]
    table = (format_table(rows, list(rows[0])) + "\n\n" + format_table(summary_rows, ["figure", "value", "target"])
             + f"\n(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    emit(result, table, args.json)


if __name__ == "__main__":
    main()
