"""Script or audio -> lip-synced MP4: the whole talking path, with models kept resident.

Stages (reported to `progress(stage, fraction, info)` and timed): speech (Piper TTS, or timing of an uploaded
recording), motion, frames, encoding (and enhance, timed apart from frames, when `RenderOptions.enhance` asks
for Real-ESRGAN / Wav2Lip / GFPGAN). A `Generator` keeps the TTS voice, loaded avatars and enhancer models in
memory so the studio and batch callers pay the loading cost once; the `say` command uses one for a single video.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from animation.motion import MotionOptions
from render.pipeline import BackgroundSpec, RenderOptions

ProgressCallback = Callable[[str, float, dict], None]
STAGES = ("speech", "motion", "frames", "encoding")
MAX_SCRIPT_CHARS = 5000
MAX_AUDIO_BYTES = 50_000_000
DEFAULT_VOICE = "joe"
DEFAULT_AVATAR = "astronaut"


@dataclass
class GenerateRequest:
    """One video to make: `text` (spoken by `voice`) or `audio` (a recording; `text` is then its optional
    transcript), on avatar `avatar` (None = the default avatar)."""

    text: str = ""
    audio: str | None = None
    avatar: str | None = None
    voice: str = DEFAULT_VOICE
    speed: float = 1.0
    motion: MotionOptions = field(default_factory=MotionOptions)
    background: BackgroundSpec = field(default_factory=BackgroundSpec)
    render: RenderOptions = field(default_factory=RenderOptions)

    def validate(self) -> None:
        """Cheap checks before any work (ValueError / FileNotFoundError with a sentence)."""
        if self.audio:
            from avatar.library import check_upload

            check_upload(self.audio, MAX_AUDIO_BYTES)
        else:
            if not self.text or not self.text.strip():
                raise ValueError("the script is empty; type what the avatar should say (or upload audio)")
            if len(self.text) > MAX_SCRIPT_CHARS:
                raise ValueError(f"the script has {len(self.text)} characters; the limit is {MAX_SCRIPT_CHARS}")
        if self.render.enhance != "none":
            from render.enhance import missing_weights

            problem = missing_weights(self.render.enhance)
            if problem:
                raise FileNotFoundError(problem)


@dataclass
class GenerateResult:
    path: Path
    audio_seconds: float
    num_frames: int
    stages: dict  # stage -> wall seconds
    notes: list[str]

    @property
    def wall_seconds(self) -> float:
        return float(sum(self.stages.values()))


class Generator:
    """Holds the TTS engine and avatars in memory; `generate` is safe to call from one thread at a time (the
    studio's job queue guarantees that); loading is guarded by a lock."""

    def __init__(self, home: Path | None = None) -> None:
        from avatar.library import data_home

        self.home = Path(home) if home is not None else data_home()
        self._tts = None
        self._avatars: dict[str, tuple[float, object, object, object]] = {}
        self._enhancers: dict[str, object] = {}
        self._lock = threading.Lock()

    def tts(self):
        with self._lock:
            if self._tts is None:
                from audio.tts import PiperEngine

                self._tts = PiperEngine()
            return self._tts

    def avatar(self, name: str | None, progress: ProgressCallback | None = None):
        """(Avatar, VisemeShapes, MouthModel or None) by name, loaded once and reloaded when its folder changes."""
        from animation.mouth_model import load_mouth_model
        from animation.viseme_shapes import shapes_for_avatar
        from avatar.library import avatar_path, list_avatars
        from avatar.model import Avatar

        if name is None or name == "" or name == DEFAULT_AVATAR:
            from avatar.default_avatar import ensure_default_avatar

            ensure_default_avatar(self.home, progress)
            name = DEFAULT_AVATAR
        folder = avatar_path(name, self.home)
        if not (folder / "avatar.json").is_file():
            known = ", ".join(list_avatars(self.home)) or "none yet"
            raise ValueError(f"unknown avatar {name!r}; known avatars: {known}")
        stamp = (folder / "avatar.json").stat().st_mtime
        with self._lock:
            cached = self._avatars.get(name)
            if cached is None or cached[0] != stamp:
                avatar = Avatar.load(folder)
                cached = (stamp, avatar, shapes_for_avatar(avatar, folder),
                          load_mouth_model(folder, avatar.num_expressions, avatar.fps))
                self._avatars[name] = cached
        return cached[1], cached[2], cached[3]

    def enhancers(self, kind: str):
        """`render.enhance.Enhancers` for `kind`, each model loaded once (None for "none")."""
        if kind == "none":
            return None
        from render.enhance import PART_FIELDS, Enhancers, enhance_parts, load_enhancers

        parts = enhance_parts(kind)
        with self._lock:
            wanted = [part for part in parts if part not in self._enhancers]
            if wanted:
                loaded = load_enhancers("+".join(wanted))
                self._enhancers.update({part: loaded.model(part) for part in wanted})
            return Enhancers(**{PART_FIELDS[part]: self._enhancers[part] for part in parts})

    def forget(self, name: str) -> None:
        with self._lock:
            self._avatars.pop(name, None)

    def speech(self, request: GenerateRequest):
        """The request's Speech: TTS of the script in the chosen voice, or the uploaded recording timed."""
        from audio.tts import SpeakOptions

        if request.audio:
            from audio.align import time_speech

            return time_speech(request.audio, request.text.strip() or None)
        speech = self.tts().synthesize(request.text, SpeakOptions(speed=request.speed))
        return apply_voice(speech, request.voice, self.home)

    def generate(self, request: GenerateRequest, out_path: str | Path,
                 progress: ProgressCallback | None = None) -> GenerateResult:
        from animation.motion import motion_from_speech
        from render.pipeline import motion_to_video

        request.validate()
        check_voice(request.voice, self.home, request.audio is not None)
        report = progress or (lambda stage, fraction, info: None)
        stages: dict[str, float] = {}
        avatar, shapes, mouth = self.avatar(request.avatar, report)
        report("speech", 0.0, {})
        start = time.perf_counter()
        speech = self.speech(request)
        stages["speech"] = time.perf_counter() - start
        report("motion", 0.0, {"audio_seconds": speech.duration_s})
        start = time.perf_counter()
        motion = motion_from_speech(speech, avatar, request.motion, shapes, mouth=mouth)
        stages["motion"] = time.perf_counter() - start
        out_path = Path(out_path)
        motion.save(out_path.with_suffix(".motion.json"))
        report("frames", 0.0, {"frames": motion.num_frames})
        enhancers = self.enhancers(request.render.enhance)
        result = motion_to_video(avatar, motion, speech.waveform, speech.sample_rate, out_path, request.background,
                                 request.render, report, enhancers)
        stages.update(result.seconds)
        notes = list(speech.notes) + [f"enhanced by {text}" for text in (enhancers.describe() if enhancers else [])]
        return GenerateResult(result.path, speech.duration_s, result.num_frames,
                              {k: round(v, 3) for k, v in stages.items()}, notes)


def known_voices(home: Path) -> list[str]:
    """The built-in voice plus the reference voices saved in the library."""
    from avatar.catalog import Catalog

    return [DEFAULT_VOICE] + [v["name"] for v in Catalog(home).list_voices()]


def check_voice(voice: str, home: Path, uploaded_audio: bool) -> None:
    if uploaded_audio or voice in ("", None, DEFAULT_VOICE):
        return
    names = known_voices(home)
    if voice not in names:
        raise ValueError(f"unknown voice {voice!r}; known voices: {', '.join(names)}")


def apply_voice(speech, voice: str, home: Path):
    """Speech in the built-in voice -> the same words in `voice` (a saved reference voice).

    Conversion is the voices module's job (`audio.voice`: WORLD-based conversion towards the reference).
    """
    if voice in ("", None, DEFAULT_VOICE):
        return speech
    from audio.voice import load_profile

    try:
        profile = load_profile(voice, home)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    return profile.convert(speech)
