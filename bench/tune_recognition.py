"""Tune phone recognition (audio.align.recognize_phones) on speech that bench.speech does NOT score.

    python -m bench.tune_recognition [--cache DIR] [--data DIR] '{"topn": 4}' '{"lw": 2.5}' ...

Each argument is a JSON object of `RecognitionOptions` fields (an empty list tries the defaults). For each one
it prints the frame-level viseme agreement (as bench.speech computes it) and the speed (seconds of audio per
CPU second, decoder construction included: CPU time, because the machine is shared) on two tuning sets:

- piper: the joe voice reading TUNING_SENTENCES (written for this script, two per clip, at speeds 0.85, 1.0 and
  1.2), scored against Piper's own phone timing, which is exact. Piper times sounds by their true start;
  pocketsphinx (and MFA) time a 10 ms frame by the start of its 25.6 ms window, so their boundaries come ~20 ms
  earlier. The Piper reference is shifted by PIPER_SHIFT_S, measured once by forced alignment of these clips
  with their transcript (agreement 0.65 unshifted, 0.73 at -20 ms; recognition plays no part in that choice).
- speech: the clips of ../shared/data/speech with a transcript, except the LibriTTS clip (its audio is also a
  reference clip of bench.speech), scored against forced alignment of their transcript.

The reference clips in ../shared/data/aligned are never touched here: bench.speech reports them as held out.
Synthesised clips are cached (16 kHz WAV + timing JSON) in --cache so that repeated runs compare like with like.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.speech import DEFAULT_DATA

PIPER_SHIFT_S = -0.02
PIPER_SPEEDS = (0.85, 1.0, 1.2)
SPEECH_CLIPS = ("ljspeech_LJ001-0001.wav", "librispeech_61-70968-0000.flac", "jfk_inaugural_11s.flac")
TUNING_SENTENCES = (
    "My brother bought a bright blue boat before the summer was over.",
    "Would you rather walk through the woods or swim in the cool pool?",
    "She sells fresh fish at the shore every Thursday morning.",
    "The judge asked the witness to show the jury each page of the journal.",
    "Nobody knew how the old clock kept such perfect time for so long.",
    "Five of the violins were very valuable and four were quite cheap.",
    "Think about the thousand things that the author thought were worth mentioning.",
    "Please hand me the yellow mug that is sitting on the kitchen table.",
    "Our group of hikers reached the top of the ridge just after noon.",
    "The measure of a good leader is how she treats the people around her.",
    "Cats and dogs rarely agree about anything, especially about food.",
    "I usually eat oatmeal with apples and a little honey for breakfast.",
    "The engineer checked the bridge twice before opening it to traffic.",
    "Go home, open the window, and let the fresh air move through the room.",
    "Maybe the rain will stop by the time we arrive at the museum.",
    "Her voice was warm and calm as she read the story to the children.",
    "Zebras and giraffes wandered slowly across the dusty plain.",
    "Could you explain why the computer keeps making that strange noise?",
    "We watched the waves crash against the rocks until the sun went down.",
    "A quick lunch of soup and bread was all that we could manage.",
    "The committee will vote on the new budget proposal next Tuesday.",
    "Jimmy joined the choir because he loved to sing old gospel songs.",
    "Pull the rope hard, but push the boat gently away from the dock.",
    "Early in the evening the village square fills with music and laughter.",
    "The scientist measured the growth of each plant with great care.",
    "Thank you for waiting, the doctor will see you in a few minutes.",
    "You should never judge a book only by the picture on its cover.",
    "The orange van stopped beside the gate, and a man jumped out.",
    "Light travels much faster than sound, which is why we see lightning first.",
    "Every morning the baker opens his shop at exactly six o'clock.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "The playground was empty except for a boy on the swings.",
    "We need more paper, more pencils, and a much bigger whiteboard.",
    "Although it was late, the mayor agreed to answer a few more questions.",
    "The ship sailed north through the icy waters toward the pole.",
    "Ruth usually rides her bike to work unless it is snowing heavily.",
    "The owl hooted twice, and then the whole forest went quiet.",
    "Show me the shortest path from the station to the university.",
    "His uncle grows beans, peas, and potatoes in a small garden.",
    "Measure twice and cut once, as every careful carpenter will tell you.",
)


@dataclass
class TuningClip:
    """16 kHz waveform [S] with reference phones in `phone_set`."""

    name: str
    waveform: np.ndarray  # [S]
    phones: list
    phone_set: str


def _save(cache: Path, name: str, waveform: np.ndarray, phones: list, phone_set: str) -> None:
    from audio.io import write_wav_pcm16

    write_wav_pcm16(cache / f"{name}.wav", waveform, 16000)
    (cache / f"{name}.json").write_text(json.dumps(
        {"phone_set": phone_set, "phones": [[p.label, p.start_s, p.end_s] for p in phones]}))


def _load(cache: Path, name: str) -> TuningClip | None:
    from audio.io import AudioOptions, prepare_audio
    from audio.speech import Segment

    if not (cache / f"{name}.json").is_file():
        return None
    meta = json.loads((cache / f"{name}.json").read_text())
    waveform = prepare_audio(cache / f"{name}.wav", AudioOptions(trim=False)).waveform
    return TuningClip(name, waveform, [Segment(*p) for p in meta["phones"]], meta["phone_set"])


def build_sets(cache: Path, data: Path) -> dict[str, list[TuningClip]]:
    """The two tuning sets, synthesising / aligning what the cache lacks."""
    from audio.align import _prepare, time_speech
    from audio.io import AudioOptions
    from audio.speech import Segment

    cache.mkdir(parents=True, exist_ok=True)
    engine = None
    piper: list[TuningClip] = []
    for k in range(0, len(TUNING_SENTENCES), 2):
        name = f"piper_{k // 2:02d}"
        if _load(cache, name) is None:
            from audio.tts import PiperEngine, SpeakOptions

            engine = engine or PiperEngine()
            speech = engine.synthesize(" ".join(TUNING_SENTENCES[k:k + 2]),
                                       SpeakOptions(speed=PIPER_SPEEDS[(k // 2) % len(PIPER_SPEEDS)]))
            waveform = _prepare(speech.waveform, speech.sample_rate, AudioOptions(trim=False)).waveform
            _save(cache, name, waveform, speech.phones, "ipa")
        clip = _load(cache, name)
        clip.phones = [Segment(p.label, max(p.start_s + PIPER_SHIFT_S, 0.0), max(p.end_s + PIPER_SHIFT_S, 0.0))
                       for p in clip.phones]
        piper.append(clip)
    speech_set: list[TuningClip] = []
    for file in SPEECH_CLIPS:
        name = "speech_" + Path(file).stem
        if _load(cache, name) is None:
            path = data / "speech" / file
            timed = time_speech(path, path.with_suffix(".txt").read_text(encoding="utf-8"),
                                audio_options=AudioOptions(trim=False))
            if timed.source != "forced_alignment":
                raise RuntimeError(f"{file}: forced alignment failed: {timed.notes}")
            _save(cache, name, timed.waveform, timed.phones, "arpabet")
        speech_set.append(_load(cache, name))
    return {"piper": piper, "speech": speech_set}


def evaluate(clips: list[TuningClip], options) -> tuple[float, float]:
    """(frame-weighted viseme agreement, audio seconds per CPU second) of recognition over `clips`."""
    from audio.align import recognize_phones
    from audio.reference_alignments import speech_span, viseme_agreement

    agree = frames = audio = cpu = 0.0
    for clip in clips:
        start = time.process_time()
        phones = recognize_phones(clip.waveform, options).phones
        cpu += time.process_time() - start
        audio += len(clip.waveform) / 16000
        first, last = speech_span(clip.phones)
        n = int(np.ceil(last * 100.0)) - int(np.floor(first * 100.0))
        agree += n * viseme_agreement(clip.phones, clip.phone_set, phones, "arpabet")
        frames += n
    return agree / frames, audio / cpu


def main() -> None:
    from audio.align import RecognitionOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="JSON objects of RecognitionOptions fields")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/talking_avatar_tune_recognition"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    args = parser.parse_args()
    sets = build_sets(args.cache, args.data)
    for variant in args.variants or ["{}"]:
        options = RecognitionOptions(**json.loads(variant))
        scores = {name: evaluate(clips, options) for name, clips in sets.items()}
        line = "  ".join(f"{name} {agree:.4f} {speed:.1f}x" for name, (agree, speed) in scores.items())
        mean = np.mean([agree for agree, _ in scores.values()])
        print(f"{variant:<40} {line}  mean {mean:.4f}", flush=True)


if __name__ == "__main__":
    main()
