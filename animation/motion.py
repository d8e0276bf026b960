"""Timed speech -> `Motion`: everything that moves, per video frame, as plain data.

A Motion holds, for T = round(audio seconds x fps) frames:
  head pose: rotations [T, 3] axis-angle (radians, head -> camera) and translations [T, 3] (metres);
  expression: coeffs [T, K] in the avatar's own basis and generic [T, G] weights of the generic shapes
  (`animation.viseme_shapes.GENERIC`: jaw_open, lip_spread, lip_round, lip_press, blink, smile);
  blink [T] (lid closure 0..1, also inside `generic`), mouth_open [T] (0..1, for plots and tests).
It is saved as JSON (lists of numbers, no pickles) and turned into mesh vertices by `Motion.vertices`.

`motion_from_speech` combines: viseme weights with coarticulation (`animation.coarticulation`), the avatar's
viseme shapes (`animation.viseme_shapes`), loudness (`animation.loudness`), idle head motion, nods and blinks
(`animation.idle`), an emotion, and the user's controls (`MotionOptions`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from animation import idle
from animation.mouth_model import MouthModel, blend_with_phones
from animation.visemes import BILABIAL_CLASS, SILENCE, VISEME_INDEX, VISEMES
from animation.viseme_shapes import GENERIC, GENERIC_INDEX, VisemeShapes, extended_basis, generic_viseme_shapes

FORMAT_VERSION = 1
EMOTIONS = {"neutral": 0.0, "smile": 0.8, "big smile": 1.3}
KNOWN_PHONE_SOURCES = ("piper", "forced_alignment")  # `audio.speech.Speech.source` values with exact phones


@dataclass(frozen=True)
class MotionOptions:
    """User controls for one video.

    fps: frame rate (None = the avatar's); head_motion: scale of idle head motion and nods (0 = none);
    expression: scale of mouth shapes and emotion around the rest face (1 = as learned); still: no head motion
    at all (blinks stay); emotion: one of `EMOTIONS`; blinks_per_minute: 0 disables blinks; seed: picks the
    stretch of the pose track and the blink times; closure_hold: where the phones are known (`phones_are_known`)
    the lips stay shut on every frame at least this fraction of which lies inside a p, b or m (None: on one frame
    per p/b/m only; `animation.coarticulation.CoarticulationOptions`).
    """

    fps: float | None = None
    head_motion: float = 1.0
    expression: float = 1.0
    still: bool = False
    emotion: str = "neutral"
    blinks_per_minute: float = 17.0
    nods: bool = True
    seed: int = 0
    closure_hold: float | None = 0.5

    def __post_init__(self) -> None:
        if self.fps is not None and not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be between 1 and 60, got {self.fps}")
        if not 0 <= self.head_motion <= 3:
            raise ValueError(f"head motion scale must be between 0 and 3, got {self.head_motion}")
        if not 0 <= self.expression <= 2:
            raise ValueError(f"expression intensity must be between 0 and 2, got {self.expression}")
        if self.emotion not in EMOTIONS:
            raise ValueError(f"unknown emotion {self.emotion!r}; choose one of {', '.join(EMOTIONS)}")
        if not 0 <= self.blinks_per_minute <= 60:
            raise ValueError(f"blinks per minute must be between 0 and 60, got {self.blinks_per_minute}")
        if self.closure_hold is not None and not 0 < self.closure_hold <= 1:
            raise ValueError(f"closure hold must be None or in (0, 1], got {self.closure_hold}")


@dataclass
class Motion:
    """Per-frame motion of one avatar (see the module docstring for units)."""

    fps: float
    rotations: np.ndarray  # [T, 3] axis-angle
    translations: np.ndarray  # [T, 3]
    coeffs: np.ndarray  # [T, K]
    generic: np.ndarray  # [T, G]
    blink: np.ndarray  # [T]
    mouth_open: np.ndarray  # [T]
    audio_seconds: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("rotations", "translations", "coeffs", "generic", "blink", "mouth_open"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        t = len(self.rotations)
        shapes = {"rotations": (t, 3), "translations": (t, 3), "generic": (t, len(GENERIC)), "blink": (t,),
                  "mouth_open": (t,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"motion {name} must be {list(shape)}, got {list(getattr(self, name).shape)}")
        if self.coeffs.ndim != 2 or self.coeffs.shape[0] != t:
            self.coeffs = self.coeffs.reshape(t, -1) if self.coeffs.size == 0 else self.coeffs
            if self.coeffs.ndim != 2 or self.coeffs.shape[0] != t:
                raise ValueError(f"motion coeffs must be [{t}, K], got {list(self.coeffs.shape)}")
        if not 1 <= self.fps <= 240:
            raise ValueError(f"motion fps must be in [1, 240], got {self.fps}")
        for name in shapes:
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"motion {name} has NaN or infinite values")

    @property
    def num_frames(self) -> int:
        return int(len(self.rotations))

    @staticmethod
    def from_expressions(fps: float, rotations: np.ndarray, translations: np.ndarray, coeffs: np.ndarray) -> "Motion":
        """Given head poses (rotations [T, 3] axis-angle, translations [T, 3]) and expression coefficients [T, K]
        played as they are: no generic shapes, no blinks, e.g. a clip's own tracked expressions."""
        t = len(rotations)
        return Motion(fps, rotations, translations, coeffs, np.zeros((t, len(GENERIC))), np.zeros(t), np.zeros(t),
                      t / fps)

    def rotation_matrices(self) -> np.ndarray:  # [T, 3, 3]
        return idle.axis_angle_to_rotation(self.rotations)

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "fps": self.fps, "audio_seconds": self.audio_seconds,
                "num_frames": self.num_frames, "generic_names": list(GENERIC), "meta": self.meta,
                **{k: np.round(getattr(self, k), 7).tolist()
                   for k in ("rotations", "translations", "coeffs", "generic", "blink", "mouth_open")}}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), allow_nan=False))
        return path

    @staticmethod
    def from_dict(data: dict) -> "Motion":
        if data.get("format_version") != FORMAT_VERSION or data.get("generic_names") != list(GENERIC):
            raise ValueError("motion file was written by an incompatible version")
        t = int(data["num_frames"])
        coeffs = np.asarray(data["coeffs"], dtype=np.float64).reshape(t, -1)
        return Motion(float(data["fps"]), data["rotations"], data["translations"], coeffs, data["generic"],
                      data["blink"], data["mouth_open"], float(data["audio_seconds"]), dict(data.get("meta", {})))

    @staticmethod
    def load(path: str | Path) -> "Motion":
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a motion file: {error}") from None
        return Motion.from_dict(data)

    def vertices(self, avatar, start: int = 0, stop: int | None = None) -> Tensor:
        """Camera-space extended-mesh vertices [t, V, 3] of frames start..stop for `avatar`."""
        from avatar.model import posed_vertices

        if self.coeffs.shape[1] != avatar.num_expressions:
            raise ValueError(f"motion has {self.coeffs.shape[1]} expression coefficients, avatar "
                             f"{avatar.name!r} has {avatar.num_expressions}")
        frames = slice(start, self.num_frames if stop is None else stop)
        basis = extended_basis(avatar.expression_basis, avatar.neutral)
        coeffs = torch.from_numpy(np.concatenate([self.coeffs[frames], self.generic[frames]], axis=1)).float()
        rotations = torch.from_numpy(idle.axis_angle_to_rotation(self.rotations[frames])).float()
        translations = torch.from_numpy(self.translations[frames]).float()
        return posed_vertices(avatar.neutral, basis, avatar.extended_rig(), rotations, translations, coeffs)


def frame_count(audio_seconds: float, fps: float) -> int:
    """Frames of a video as long as the audio: round(seconds x fps), at least 1."""
    return max(1, int(round(audio_seconds * fps)))


def motion_from_speech(speech, avatar, options: MotionOptions | None = None,
                       shapes: VisemeShapes | None = None, poses: tuple[np.ndarray, np.ndarray] | None = None,
                       mouth: MouthModel | None = None, mouth_delay_frames: int | None = None) -> Motion:
    """Speech (waveform + timed phones) -> Motion for `avatar`.

    shapes: the avatar's viseme shapes (default: generic). poses: optional fixed head poses (rotations
    [T, 3, 3], translations [T, 3]) used instead of idle motion, e.g. the tracked poses of a held-out clip.
    mouth: the avatar's audio -> expression model (`animation.mouth_model`); when given (and fitted at this
    frame rate) it drives the mouth from the audio, and the phone-based shapes only close the lips on p/b/m.
    mouth_delay_frames: None for new speech; the model's `recording_delay_frames` when replaying the
    avatar's own recording (its audio/video offset then applies to the replayed audio too).
    """
    from animation.coarticulation import viseme_weights
    from animation.loudness import frame_rms, loudness_gain, mouth_openness

    options = options or MotionOptions()
    fps = float(options.fps or avatar.fps)
    n = frame_count(speech.duration_s, fps)
    shapes = shapes or generic_viseme_shapes(avatar.num_expressions)
    if shapes.num_coeffs != avatar.num_expressions:
        raise ValueError(f"viseme shapes have {shapes.num_coeffs} coefficients, avatar {avatar.num_expressions}")
    weights = viseme_weights(speech.phones, speech.phone_set, fps, n)  # [T, 15], as the audio model was fitted on
    phone_options = phone_mouth_coarticulation(speech, options.closure_hold)
    phone_weights = (weights if phone_options is None  # [T, 15] for the phone-based mouth
                     else viseme_weights(speech.phones, speech.phone_set, fps, n, phone_options))
    if phones_are_known(speech):  # a known p, b or m shuts the lips (`VisemeShapes.for_known_phones`) throughout
        shapes = shapes.for_known_phones()
    openness = mouth_openness(phone_weights, speech.waveform, speech.sample_rate, fps)
    gain = loudness_gain(frame_rms(speech.waveform, speech.sample_rate, fps, n))
    coeffs, generic = shapes.speak(phone_weights, gain)  # loudness-modulated phone-based mouth
    silence = VISEMES.index(SILENCE)
    rest_coeffs, rest_generic = shapes.coeffs[silence], shapes.generic[silence]
    mouth_source = "visemes"
    if mouth is not None and abs(mouth.facts.fps - fps) < 1e-6:
        coeffs, generic = _mouth_from_audio(mouth, speech, weights, phone_weights, coeffs, generic, n,
                                            mouth_delay_frames)
        mouth_source = "audio model"
    coeffs = rest_coeffs + (coeffs - rest_coeffs) * options.expression
    generic = rest_generic + (generic - rest_generic) * options.expression

    emotion = EMOTIONS[options.emotion] * options.expression
    ramp = np.clip(np.arange(n) / max(1.0, 0.5 * fps), 0, 1)
    generic[:, GENERIC_INDEX["smile"]] += emotion * ramp
    blinks = idle.blink_curve(idle.blink_times(n / fps, options.blinks_per_minute, options.seed), fps, n)
    generic[:, GENERIC_INDEX["blink"]] = np.maximum(generic[:, GENERIC_INDEX["blink"]], blinks)

    if poses is not None:
        rotations_m, translations = (np.asarray(p, dtype=np.float64) for p in poses)
        if rotations_m.shape != (n, 3, 3) or translations.shape != (n, 3):
            raise ValueError(f"fixed poses must be [{n}, 3, 3] and [{n}, 3], got {rotations_m.shape}, {translations.shape}")
        rotations = idle.rotation_to_axis_angle(rotations_m)
    else:
        base_rot, base_t, rot_off, t_off = idle.head_motion(
            avatar.rotations.numpy(), avatar.translations.numpy(), n, fps,
            0.0 if options.still else options.head_motion, options.seed)
        if options.nods and not options.still and options.head_motion > 0:
            starts = [w.start_s for w in speech.words if w.label.strip()]
            rot_off = rot_off.copy()
            rot_off[:, 0] += options.head_motion * idle.nod_curve(starts, gain, fps, n)
        from scipy.spatial.transform import Rotation

        rotations = (Rotation.from_rotvec(rot_off) * Rotation.from_rotvec(base_rot)).as_rotvec()
        translations = base_t[None] + t_off
    meta = {"source": speech.source, "phone_set": speech.phone_set, "text": speech.text[:2000],
            "options": asdict(options), "viseme_shapes": shapes.source,
            "learned_visemes": int(np.count_nonzero(shapes.learned)), "mouth": mouth_source}
    return Motion(fps, rotations, translations, coeffs, generic, blinks, openness, speech.duration_s, meta)


def digital_silence(waveform: np.ndarray, sample_rate: int, fps: float, n_frames: int,
                    context_frames: int = 2, floor_rms: float = 1e-4) -> np.ndarray:
    """Per video frame, the share of frames within +-context_frames whose audio is digitally silent -> [T] in [0, 1].

    waveform: [S] mono from frame 0. floor_rms 1e-4 (-80 dBFS) is below the noise floor of real recordings but
    above the exact zeros (and dither) of synthetic pauses; frames past the audio's end count as silent.
    """
    from animation.loudness import frame_rms

    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    # one frame period per window: exactly the frame's own samples (zeros past the audio's end)
    silent = (frame_rms(waveform, sample_rate, fps, int(n_frames), window_frames=1.0) < floor_rms).astype(np.float64)
    kernel = np.ones(2 * context_frames + 1) / (2 * context_frames + 1)
    return np.convolve(np.pad(silent, context_frames, mode="edge"), kernel, mode="valid")


def phone_mouth_coarticulation(speech, closure_hold: float | None):
    """The coarticulation options of the phone-based mouth for `speech`: p/b/m closures held on every frame at
    least `closure_hold` inside them where its phones are known (`phones_are_known`), else None (the defaults,
    which the audio model was fitted on)."""
    from animation.coarticulation import CoarticulationOptions

    if closure_hold is None or not phones_are_known(speech):
        return None
    return CoarticulationOptions(closure_hold=closure_hold)


def phones_are_known(speech) -> bool:
    """Whether the speech's phones are known (TTS, forced alignment of a transcript, also after voice conversion)
    rather than recognised from the audio."""
    return speech.source.split("+")[0] in KNOWN_PHONE_SOURCES


def _mouth_from_audio(mouth: MouthModel, speech, weights: np.ndarray, phone_weights: np.ndarray,
                      phone_coeffs: np.ndarray, phone_generic: np.ndarray, n: int,
                      delay_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The audio model's coefficients mixed with the phone-based mouth -> (coeffs [T, K], generic [T, G]).

    weights: [T, 15] viseme weights as the model was fitted on; phone_weights [T, 15]: those of the phone-based
    mouth (longer p/b/m closures where the phones are known); phone_coeffs [T, K] / phone_generic [T, G]: the
    phone-based mouth. The mix
    (`animation.mouth_model.blend_with_phones`, its share chosen by cross-validation at fitting) also hands the
    p/b/m closures to the phones when they are known (`phones_are_known`). When replaying a recording whose video
    leads its audio, the phone track is moved by that recording's phone shift (`MouthModelFacts.phone_shift`).
    """
    predicted = mouth.predict(speech.waveform, speech.sample_rate, n, weights, delay_frames)
    shift = mouth.facts.phone_shift(delay_frames)
    index = np.clip(np.arange(n) + shift, 0, n - 1)
    closure = phone_weights[index, VISEME_INDEX[BILABIAL_CLASS]]  # [T]
    # Pauses of synthetic speech are digital silence, far below any recording's noise floor the model was fitted
    # on, so it extrapolates there (it opened the mouth in Piper's pauses): hand such frames to the phones too.
    silence = digital_silence(speech.waveform, speech.sample_rate, mouth.facts.fps, n)  # [T]
    closure = np.maximum(closure, silence)
    # p/b/m closures go to the phones only when the phones are known (TTS, forced alignment); recognised ones
    # are wrong on about a third of the frames, and the audio model hears the closures in its posteriors
    handed = closure if phones_are_known(speech) else silence
    # the amplitude gain scales speech; a synthetic pause stays at the rest shape itself
    coeffs = mouth.amplify(blend_with_phones(predicted, phone_coeffs[index], handed, mouth.facts.audio_share),
                           strength=1.0 - silence, closure=closure)
    phone_share = 1.0 - (1.0 - handed[:, None]) * mouth.facts.audio_share  # [T, 1] as in blend_with_phones
    generic = phone_generic.copy()
    mouth_columns = [GENERIC_INDEX[name] for name in ("jaw_open", "lip_spread", "lip_round", "lip_press")]
    generic[:, mouth_columns] = phone_share * phone_generic[index][:, mouth_columns]
    return coeffs, generic
