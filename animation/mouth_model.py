"""A person's own audio -> mouth mapping, learned from their training video (ridge regression, closed form).

Phone recognition -> visemes -> averaged shapes (`animation.viseme_shapes`) loses most of what the mouth does:
recognition errors (and any language but English), and how far this person opens their mouth on this syllable.
Person-specific talking-head systems (AD-NeRF, TalkingGaussian) instead learn audio -> expression from the
person's own video. With 15-60 s of video a small linear model is what the data supports:

    coeffs[t] = W^T x[t] + b,   x[t] = [audio features at frames t + d + o for o in offsets,
                                        (optionally) viseme weights at t + d + o' for o' in viseme_offsets]

- audio features: `animation.audio_features.mouth_features`: 8 mel bands + energy, per-utterance normalised, and
  the probability of each of the 15 viseme classes from the acoustic model that ships with pocketsphinx
  (`audio.phone_posteriors`; the phones' posteriors summed per class, no search, so any language gets them).
  The hard phone choices of recognition (the viseme features and the phone-based mouth below) are wrong on about
  a third of the frames; the posteriors keep the model's doubt. On the 4-s training windows
  (`bench.lipsync_windows`, 2026-12-05) they took the driven coefficients' opening r from 0.591 / 0.594 (Obama /
  German) to 0.620 / 0.641, with LMD 2.34 -> 2.28 % and 1.69 -> 1.64 % rendered; the 42 phones' posteriors
  scored the same (0.615 / 0.645), their logs or per-utterance normalised ones less (0.589-0.615 / 0.617-0.639);
- d, the audio delay in frames: where the audio that goes with the mouth at frame t lies. It holds two things:
  the natural lead of the lips over the sound (about 40 ms) and the recording's own audio/video offset (the
  shared Obama clip is about 240 ms out of sync). The lag that best correlates loudness with mouth opening is a
  first estimate; the delay is then chosen by cross-validation among it +-2 frames, since loudness peaks are
  not where the model's features line up best (Obama: loudness says 5 frames, cross-validation 7, r 0.605 ->
  0.625). Replaying that recording's audio (`bench.lipsync`, `app.py eval`) uses this delay; new speech (TTS,
  uploads) uses `speech_delay_frames`, the natural lead only;
- only the leading `components` coefficients are predicted (cross-validated: 4, 8 or all), the rest stay at
  their training mean: the basis is a PCA, and its small components are the ones audio cannot predict (noise
  on the lips; Obama cross-validated r 0.625 -> 0.640 with 4 of 24);
- the result is mixed with the phone-based mouth (`blend_with_phones`): the two make different errors, and
  when the phones are known (TTS, a transcript's forced alignment) they time the p/b/m closures that smoothed
  audio features round off. Recognised phones (an upload without its text, a replayed recording, the
  cross-validation below) hand no closures over: wrong on about a third of the frames, they shut the mouth in
  the wrong places, and the posteriors already tell the model where a p/b/m is likely (rendered opening r on
  the training windows, two avatar sets, 2026-12-05: Obama 0.629 -> 0.631 and 0.604 -> 0.610, German 0.608 ->
  0.626 and 0.612 -> 0.627, LMD down on all four). Replaying the recording, the phone
  track (and the viseme features) move by the recording's own phone shift (`mouth_delay.measure_phone_shift`),
  and the viseme shapes are learned with it; it is not the audio delay: on the Obama clip the phones lag the
  mouth by 5 frames, the spectral features fit best at 7. Measured on 4-s windows of the training parts
  (`bench.lipsync_windows --render`, 2026-12-05), against moving the phones with the audio delay and learning
  the shapes unshifted: rendered opening r 0.584 -> 0.597 (Obama), 0.487 -> 0.508 (German), LMD 2.39 -> 2.35 %,
  1.67 -> 1.67 %;
- the mix's motion around the training mean is then scaled by its least-squares calibration slope
  (`animation.mouth_ensemble.amplitude_gain`: the real opening regressed on the cross-validated mix's,
  1.0-1.6x on the shared clips):
  ridge regression and the averaged viseme shapes both shrink towards the mean, and a mouth that barely parts
  renders as closed lips, which a face tracker (and a viewer) reads as no motion. Correlation is blind to
  that scale, so it was chosen after rendering, on 4-s windows of the two shared clips' training parts (model
  refitted without each window, rendered with the avatar, re-tracked; never the held-out tails): rendered
  opening r 0.585 / 0.485 (Obama / German) unscaled, 0.589 / 0.520 with the slope, 0.632 / 0.548 when matching
  the real opening's standard deviation instead; LMD 2.36 / 1.69 %, 2.35 / 1.70 %, 2.44 / 1.82 %. The
  standard-deviation match moves more but enlarges every wrong opening too: on the Obama bench tail it took LMD
  from 2.37 to 2.78 % (target 2.5), the slope to 2.44 %, so the slope (the scale that minimises the squared
  opening error) is used (the search below picks the rest). Once the avatar is trained, a second factor makes
  up for an avatar that draws the mesh's opening narrower than it is (`animation.mouth_calibration`,
  `render_gain`), and an offset along the person's own opening direction (`opening_direction`, `render_offset`)
  for a driven mouth that the avatar draws narrower on average than the person's own expressions;
- the opening alone (along that direction, not the lips' other motions) is scaled by a further 1 / sqrt(cv r)
  (`opening_gain`): the render and re-tracking add noise of their own, which costs a small motion more of its
  rendered r than a large one (rendered opening r on the training windows 0.614 -> 0.629 Obama, 0.573 -> 0.608
  German, LMD 2.28 -> 2.33 %, 1.61 -> 1.61 %);
- the delay, ridge regularisation, the component count, whether the viseme weights help as features and the
  audio model's share of the mix are chosen by blocked cross-validation on the training frames (contiguous blocks, with a gap as wide as the
  context so no frame is seen from both sides); each validation block's features are normalised and its
  phones recognised on that block alone, as a new clip's would be. The score is the correlation of the
  mouth-opening curves (inner-lip gap over inter-ocular distance);
- the best `ensemble` (20) configurations of that search are averaged, each refitted on all training frames:
  its score surface is flat (the best 20 lie within ~0.01), so the single best is partly chance. All members
  are linear in shifted copies of the same features, so their share-weighted average is itself one linear
  model over the union of their offsets (`animation.mouth_ensemble.merge_members`) and is saved and applied
  like a single one. On the training windows of `bench.lipsync_windows --render` it moved rendered opening r
  0.593 -> 0.594 (Obama) and 0.522 -> 0.538 (German), LMD 2.45 -> 2.42 % and 1.73 -> 1.70 %.

Targets are the expression coefficients in the avatar's basis (whatever the basis was fitted on); predictions
are clamped to the range seen in training, so an unusual voice cannot push the face past what was seen.
Saved beside the avatar as `mouth_model.json` (facts) + `mouth_model.safetensors` (arrays).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from animation.audio_features import mouth_features, with_context
from animation.mouth_opening import opening_curve, opening_direction, opening_gain, opening_gradient
from animation.mouth_delay import estimate_delay, measure_phone_shift, pearson
from animation.mouth_folds import make_fold, validation_blocks
from animation.ridge import keep_components, ridge_fit
from animation.visemes import VISEMES

FORMAT_VERSION = 1
FACTS_FILE = "mouth_model.json"
ARRAYS_FILE = "mouth_model.safetensors"
ARRAY_KEYS = ("feature_mean", "feature_scale", "weights", "intercept", "coeff_min", "coeff_max")


@dataclass(frozen=True)
class MouthFitOptions:
    """How `fit_mouth_model` searches (per call; what it chose is saved in `MouthModelFacts`).

    lambdas: ridge strengths tried (features are standardised, so these are in units of frames);
    audio_shares: weights of the audio model in its mix with the phone-based mouth, tried when phones are given;
    try_visemes: also try adding the viseme weights as features; folds: cross-validation blocks;
    max_delay_s / min_delay_s: range searched for the loudness-based delay estimate; delay_steps: frames around
    that estimate tried by cross-validation; components: counts of leading coefficients predicted (0 = all);
    natural_delay_s: the lips' lead over the
    sound used for new speech (40 ms: the German clip measures one 25 fps frame, the literature says tens of ms).
    min_training_s: less training video than this gives no model (the phone-based mouth drives alone): fitted on
    the 8 s AOC clip (200 frames, ridge strength at the grid's low edge) the model read the Piper voice erratically
    (shut on "sh", wide open on "th"), while 16 s training parts read it well.
    match_amplitude / max_gain: scale the final mouth's motion by its calibration slope against the real opening in
    cross-validation (`mouth_ensemble.amplitude_gain`, at most max_gain). ensemble: how many of the best
    cross-validated configurations are averaged (`mouth_ensemble.merge_members`; 1 = the best alone).
    phone_posteriors: add the acoustic model's viseme posteriors to the audio features
    (`animation.audio_features.viseme_posteriors`). widen_opening / max_opening_gain: scale the mouth's opening
    (alone, along the person's opening direction) by 1 / sqrt(cross-validated opening r), at most
    max_opening_gain (`MouthModelFacts.opening_gain`).
    """

    num_bands: int = 8
    offsets: tuple[int, ...] = (-2, -1, 0, 1, 2)
    viseme_offsets: tuple[int, ...] = (-2, 0, 2)
    lambdas: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
    audio_shares: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    components: tuple[int, ...] = (4, 8, 0)
    try_visemes: bool = True
    folds: int = 5
    min_delay_s: float = -0.12
    max_delay_s: float = 0.4
    delay_steps: tuple[int, ...] = (-2, -1, 0, 1, 2)
    natural_delay_s: float = 0.04
    clamp_margin: float = 0.1
    min_training_s: float = 12.0
    match_amplitude: bool = True
    max_gain: float = 3.0
    ensemble: int = 20
    phone_posteriors: bool = True
    widen_opening: bool = True
    max_opening_gain: float = 1.5

    def __post_init__(self) -> None:
        if self.folds < 2 or not self.lambdas or min(self.lambdas) <= 0 or not self.offsets:
            raise ValueError("need folds >= 2, positive lambdas and at least one offset")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {self.ensemble}")
        if not self.components or min(self.components) < 0 or not self.delay_steps:
            raise ValueError("need at least one delay step and non-negative component counts (0 = all)")
        if not self.min_delay_s <= 0 <= self.max_delay_s:
            raise ValueError(f"delay range must contain 0, got [{self.min_delay_s}, {self.max_delay_s}]")
        if not self.max_opening_gain >= 1.0:
            raise ValueError(f"max_opening_gain must be >= 1, got {self.max_opening_gain}")

    def delay_range(self, fps: float) -> tuple[int, int]:
        """The lags searched for a recording's delays, in frames at `fps` -> (lowest, highest)."""
        return int(np.floor(self.min_delay_s * fps)), int(np.ceil(self.max_delay_s * fps))

    def speech_delay(self, fps: float) -> int:
        """The natural lead of the lips over the sound, in frames at `fps`."""
        return int(round(self.natural_delay_s * fps))


@dataclass
class MouthModelFacts:
    """What a fitted model is (saved as JSON). Delays are in frames at `fps` (positive: audio after mouth)."""

    fps: float
    num_coeffs: int
    num_bands: int
    offsets: list[int]
    viseme_offsets: list[int]  # empty: the viseme weights are not features
    ridge_lambda: float
    audio_share: float  # weight of this model in the mix with the phone-based mouth (1 = audio model only)
    recording_delay_frames: int
    speech_delay_frames: int
    training_frames: int
    cv_open_r: float  # mean over folds, chosen configuration
    cv_table: dict = field(default_factory=dict)  # "delay=..,visemes=..,lambda=..,components=..,share=..": r
    measured_delay_frames: int | None = None  # the loudness-opening estimate the delay search started from
    components: int = 0  # coefficients predicted: the leading ones of the basis (0 = all); the rest stay at mean
    gain: float = 1.0  # the final mouth's motion around the training mean is scaled by this (`amplify`)
    members: int = 1  # configurations averaged into this one linear model (`mouth_ensemble.merge_members`)
    # Replaying the recording, the phone track moves by this many frames (the mouth at t takes the phones at
    # t + shift); measured on its own (`measure_phone_shift`), since the best audio-feature delay is not the
    # phones' lag. None (models saved before it): recording_delay_frames - speech_delay_frames.
    phone_shift_frames: int | None = None
    # How wide the avatar draws the mesh's mouth opening, rendered and re-tracked (`animation.mouth_calibration`;
    # None: not measured), and the extra gain on the mouth's motion that makes up for it (1: none)
    render_slope: float | None = None
    render_gain: float = 1.0
    # How the person's face moves as the mouth opens: the coefficients' least-squares change per unit of mesh
    # opening over the training frames [K] (None: models saved before it), and how far along it the driven mouth
    # is widened so that the avatar draws it as wide on average as its real mouth (`animation.mouth_calibration`,
    # in units of opening; 0: not at all)
    opening_direction: list[float] | None = None
    render_offset: float = 0.0
    # the audio features include the viseme posteriors (`animation.audio_features.mouth_features`); False for
    # models saved before them
    phone_posteriors: bool = False
    # The opening alone is scaled by this around the training mean's, along `opening_direction` (1: not at all;
    # models saved before it), measured with the opening's gradient at the training mean [K]
    # (`animation.mouth_opening.opening_gradient`)
    opening_gain: float = 1.0
    opening_gradient: list[float] | None = None
    format_version: int = FORMAT_VERSION

    @property
    def audio_width(self) -> int:
        """Audio features per frame: mel bands, energy and (when used) 15 viseme posteriors."""
        return self.num_bands + 1 + (len(VISEMES) if self.phone_posteriors else 0)

    @property
    def num_features(self) -> int:
        return len(self.offsets) * self.audio_width + len(self.viseme_offsets) * len(VISEMES)

    def phone_shift(self, delay_frames: int | None) -> int:
        """Frames the phone track (and the viseme features) move for audio driven at `delay_frames`: 0 for new
        speech (None); the recording's phone shift when replaying it at its own delay (and by the same
        difference at another delay)."""
        if delay_frames is None:
            return 0
        recorded = (self.recording_delay_frames - self.speech_delay_frames if self.phone_shift_frames is None
                    else self.phone_shift_frames)
        return int(delay_frames) - self.recording_delay_frames + recorded


@dataclass
class MouthModel:
    """Fitted audio -> expression regression. Arrays: feature_mean, feature_scale [D]; weights [D, K];
    intercept, coeff_min, coeff_max [K]."""

    facts: MouthModelFacts
    feature_mean: np.ndarray  # [D]
    feature_scale: np.ndarray  # [D]
    weights: np.ndarray  # [D, K]
    intercept: np.ndarray  # [K]
    coeff_min: np.ndarray  # [K]
    coeff_max: np.ndarray  # [K]

    def __post_init__(self) -> None:
        d, k = self.facts.num_features, self.facts.num_coeffs
        expected = {"feature_mean": (d,), "feature_scale": (d,), "weights": (d, k), "intercept": (k,),
                    "coeff_min": (k,), "coeff_max": (k,)}
        for name, shape in expected.items():
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"mouth model {name} must be {list(shape)}, got {list(value.shape)}")
            if not np.isfinite(value).all():
                raise ValueError(f"mouth model {name} has NaN or infinite values")
            setattr(self, name, value)
        for name in ("opening_direction", "opening_gradient"):
            value = getattr(self.facts, name)
            if value is not None and (np.shape(value) != (k,) or not np.isfinite(np.asarray(value, float)).all()):
                raise ValueError(f"mouth model {name} must be {k} finite numbers")
        if not (np.isfinite(self.facts.opening_gain) and self.facts.opening_gain > 0):
            raise ValueError(f"mouth model opening_gain must be positive, got {self.facts.opening_gain}")

    @property
    def uses_visemes(self) -> bool:
        return bool(self.facts.viseme_offsets)

    def predict(self, waveform: np.ndarray, sample_rate: int, n_frames: int,
                viseme_weights: np.ndarray | None = None, delay_frames: int | None = None) -> np.ndarray:
        """Audio [S] (starting at frame 0) -> expression coefficients [T, K] at `facts.fps`.

        viseme_weights: [T, 15] (needed when `uses_visemes`); delay_frames: None = new speech
        (`speech_delay_frames`); pass `recording_delay_frames` to replay the training recording's own audio.
        """
        facts = self.facts
        delay = facts.speech_delay_frames if delay_frames is None else int(delay_frames)
        x = design_matrix(waveform, sample_rate, facts.fps, n_frames, viseme_weights, facts, delay,
                          viseme_delay_frames=facts.speech_delay_frames + facts.phone_shift(delay_frames))
        coeffs = ((x - self.feature_mean) / self.feature_scale) @ self.weights + self.intercept
        return np.clip(coeffs, self.coeff_min, self.coeff_max)

    def amplify(self, coeffs: np.ndarray, strength: np.ndarray | None = None,
                closure: np.ndarray | None = None) -> np.ndarray:
        """The final mouth [T, K] (this model's prediction mixed with the phone-based mouth) with its motion around
        the training mean scaled by `facts.gain` x `facts.render_gain`, then its opening alone scaled by
        `facts.opening_gain` (along `facts.opening_direction`), widened by `facts.render_offset` along that
        direction, clamped to the training range -> [T, K].

        strength: [T] in [0, 1], how much of the gain and offset applies per frame (0 leaves a frame as it is, e.g.
        the rest shape in a synthetic pause); None = 1 everywhere. closure: [T] in [0, 1], the phones' p/b/m
        closure weight: those frames are not widened (None: none)."""
        coeffs = np.asarray(coeffs, dtype=np.float64)
        if coeffs.ndim != 2 or coeffs.shape[1] != self.facts.num_coeffs:
            raise ValueError(f"coeffs must be [T, {self.facts.num_coeffs}], got {list(coeffs.shape)}")
        facts = self.facts
        gain = facts.gain * facts.render_gain
        share = np.ones(len(coeffs)) if strength is None else np.clip(np.asarray(strength, np.float64), 0.0, 1.0)
        if share.shape != (len(coeffs),):
            raise ValueError(f"strength must be [{len(coeffs)}], got {list(np.shape(strength))}")
        amplified = self.intercept + (1.0 + (gain - 1.0) * share)[:, None] * (coeffs - self.intercept)
        direction = None if facts.opening_direction is None else np.asarray(facts.opening_direction, np.float64)  # [K]
        if direction is not None and facts.opening_gradient is not None and facts.opening_gain != 1.0:
            lift = (amplified - self.intercept) @ np.asarray(facts.opening_gradient, np.float64)  # [T] opening change
            amplified = amplified + ((facts.opening_gain - 1.0) * share * lift)[:, None] * direction[None]
        if direction is not None and facts.render_offset:
            widen = facts.render_offset * direction  # [K]
            keep_shut = np.zeros(len(coeffs)) if closure is None else np.clip(np.asarray(closure, np.float64), 0, 1)
            amplified = amplified + (share * (1.0 - keep_shut))[:, None] * widen[None]
        return np.clip(amplified, self.coeff_min, self.coeff_max)

    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(getattr(self, k), dtype=np.float32) for k in ARRAY_KEYS},
                  str(folder / ARRAYS_FILE))
        (folder / FACTS_FILE).write_text(json.dumps(asdict(self.facts), indent=1, allow_nan=False))
        return folder / FACTS_FILE

    @staticmethod
    def load(folder: str | Path) -> "MouthModel":
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            data = json.loads((folder / FACTS_FILE).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{folder / FACTS_FILE} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder / FACTS_FILE} was written by an incompatible version")
        try:
            facts = MouthModelFacts(**data)
            arrays = load_file(str(folder / ARRAYS_FILE))
            return MouthModel(facts, *(arrays[k] for k in ARRAY_KEYS))
        except (TypeError, KeyError) as error:
            raise ValueError(f"{folder}: incomplete mouth model ({error})") from None


def design_matrix(waveform: np.ndarray, sample_rate: int, fps: float, n_frames: int,
                  viseme_weights: np.ndarray | None, facts: MouthModelFacts, delay_frames: int,
                  audio: np.ndarray | None = None, viseme_delay_frames: int | None = None) -> np.ndarray:
    """Raw (unstandardised) regression inputs [T, D] of one clip, features normalised over this clip.

    audio: this clip's `mouth_features` [T, audio_width] when already computed (the fit tries several delays);
    the audio features sit at `delay_frames` + offsets, the viseme weights at `viseme_delay_frames` (None: the
    same delay) + viseme offsets."""
    if audio is None:
        audio = mouth_features(waveform, sample_rate, fps, n_frames, facts.num_bands, facts.phone_posteriors)
    elif audio.shape != (int(n_frames), facts.audio_width):
        raise ValueError(f"audio features must be [{int(n_frames)}, {facts.audio_width}], got {audio.shape}")
    parts = [with_context(audio, [delay_frames + o for o in facts.offsets])]
    if facts.viseme_offsets:
        if viseme_weights is None:
            raise ValueError("this mouth model uses viseme weights; pass viseme_weights [T, 15]")
        weights = np.asarray(viseme_weights, dtype=np.float64)
        if weights.shape != (int(n_frames), len(VISEMES)):
            raise ValueError(f"viseme_weights must be [{int(n_frames)}, {len(VISEMES)}], got {weights.shape}")
        base = delay_frames if viseme_delay_frames is None else int(viseme_delay_frames)
        parts.append(with_context(weights, [base + o for o in facts.viseme_offsets]))
    return np.concatenate(parts, axis=1)


def blend_with_phones(predicted: np.ndarray, phone_coeffs: np.ndarray, closure: np.ndarray,
                      audio_share: float) -> np.ndarray:
    """Mix the audio model's coefficients [T, K] with the phone-based mouth's [T, K] -> [T, K].

    The two make different errors (one hears loudness and the person's habits, the other knows which sound it
    is), so a mix beats both; `audio_share` is the audio model's weight. closure: [T] weight (0..1) of the frames
    the phone-based shape takes over in proportion: p/b/m closures when the phones are known (a linear model on
    smoothed audio rounds off their short full closure), synthetic silence (`animation.motion`).
    """
    predicted, phone_coeffs = np.asarray(predicted, np.float64), np.asarray(phone_coeffs, np.float64)
    closure = np.asarray(closure, np.float64)
    if predicted.shape != phone_coeffs.shape or closure.shape != predicted.shape[:1]:
        raise ValueError(f"need predicted and phone coeffs [T, K] and closure [T]; got {predicted.shape}, "
                         f"{phone_coeffs.shape}, {closure.shape}")
    audio_weight = (1.0 - closure[:, None]) * float(audio_share)
    return audio_weight * predicted + (1.0 - audio_weight) * phone_coeffs


def recording_phone_shift(coeffs: np.ndarray, neutral: np.ndarray, basis: np.ndarray, fps: float, phones,
                          phone_set: str, valid: np.ndarray, options: MouthFitOptions | None = None) -> int:
    """`measure_phone_shift` of a training video: coefficients [T, K] in `basis` [K, 478, 3] around `neutral`,
    its timed phones, valid: [T] frames to measure on (never a held-out tail). The viseme shapes are learned
    with it (`animation.viseme_shapes.learn_shapes_from_clip`), as `fit_mouth_model` does in its folds."""
    from animation.coarticulation import viseme_weights

    options = options or MouthFitOptions()
    coeffs = np.asarray(coeffs, dtype=np.float64)
    low, high = options.delay_range(fps)
    return measure_phone_shift(viseme_weights(phones, phone_set, fps, len(coeffs)),
                               opening_curve(coeffs, neutral, basis), np.asarray(valid, bool), low, high,
                               options.speech_delay(fps))


def fit_mouth_model(coeffs: np.ndarray, neutral: np.ndarray, basis: np.ndarray, waveform: np.ndarray,
                    sample_rate: int, fps: float, phones=None, phone_set: str = "arpabet",
                    valid: np.ndarray | None = None, options: MouthFitOptions | None = None,
                    time_segment=None) -> MouthModel:
    """Fit the audio -> expression regression on one training video (see the module docstring).

    coeffs: [T, K] tracked expression coefficients of the training frames in `basis` [K, 478, 3] around
    `neutral` [478, 3]; waveform: [S] its audio from frame 0; phones: its timed phones (None: audio features
    only, no mix with the phone-based mouth); valid: [T] frames to learn from. Only these frames are used:
    pass the training part, never a held-out tail. time_segment(waveform [S'], sample_rate, n_frames) ->
    viseme weights [n, 15]: how a new clip's phones are found (e.g. phone recognition); each validation block
    is timed with it on its own audio, as a new clip would be (None: slices of the training timing).
    """
    from animation.coarticulation import viseme_weights
    from animation.mouth_ensemble import Candidate, amplitude_gain, merge_members

    options = options or MouthFitOptions()
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 2 or coeffs.shape[1] != np.asarray(basis).shape[0]:
        raise ValueError(f"coeffs must be [T, K] with K = basis size {np.asarray(basis).shape[0]}, got {coeffs.shape}")
    t, k = coeffs.shape
    valid = np.ones(t, bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (t,):
        raise ValueError(f"valid must be [{t}], got {valid.shape}")
    reach = max(abs(o) for o in options.offsets + options.viseme_offsets)
    if valid.sum() < max(options.folds * (4 * reach + 8), options.min_training_s * fps):
        raise ValueError(f"{int(valid.sum())} valid frames are too few to learn the mouth from audio (need "
                         f"{options.min_training_s:g} s)")
    opening = opening_curve(coeffs, neutral, basis)
    audio = mouth_features(waveform, sample_rate, fps, t, options.num_bands, options.phone_posteriors)
    low, high = options.delay_range(fps)
    measured = estimate_delay(audio[:, options.num_bands], opening, valid, low, high)  # the log energy
    delays = sorted({int(np.clip(measured + step, low, high)) for step in options.delay_steps})
    speech_delay = options.speech_delay(fps)
    weights = None if phones is None else viseme_weights(phones, phone_set, fps, t)  # [T, 15]
    phone_shift = None if weights is None else measure_phone_shift(weights, opening, valid, low, high, speech_delay)
    viseme_delay = speech_delay + (phone_shift or 0)
    blocks = validation_blocks(t, options.folds, waveform, sample_rate, fps, weights, time_segment)
    blocks_audio = [mouth_features(segment, sample_rate, fps, len(block), options.num_bands, options.phone_posteriors)
                    for block, segment, _ in blocks]
    table: dict[str, float] = {}
    candidates: list[Candidate] = []
    designs: dict[tuple[int, bool], np.ndarray] = {}  # the whole clip's design matrix per (delay, viseme features)
    shares = options.audio_shares if weights is not None else (1.0,)
    for delay in delays:
        folds = [make_fold(block, segment, block_weights, coeffs, valid, fps, sample_rate, phones, phone_set,
                       reach + max(abs(delay), abs(viseme_delay)), phone_shift or 0)
                 for block, segment, block_weights in blocks]
        for use_visemes in ((False, True) if options.try_visemes and weights is not None else (False,)):
            facts = MouthModelFacts(fps, k, options.num_bands, list(options.offsets),
                                    list(options.viseme_offsets) if use_visemes else [], 0.0, 1.0, delay,
                                    speech_delay, int(valid.sum()), 0.0, measured_delay_frames=measured,
                                    phone_shift_frames=phone_shift, phone_posteriors=options.phone_posteriors)
            x = designs[delay, use_visemes] = design_matrix(waveform, sample_rate, fps, t, weights, facts, delay, audio,
                                                            viseme_delay)
            x_val = [design_matrix(segment, sample_rate, fps, len(block), block_weights, facts, delay, block_audio,
                                   viseme_delay)
                     for (block, segment, block_weights), block_audio in zip(blocks, blocks_audio)]
            for strength in options.lambdas:
                fits = [ridge_fit(x[fold.rows], coeffs[fold.rows], strength) for fold in folds]
                for components in options.components:
                    predictions = [((x_block - mean) / scale) @ keep_components(w, components) + b
                                   for (mean, scale, w, b), x_block in zip(fits, x_val)]
                    for share in shares:
                        scores, mixed = [], []
                        for fold, predicted in zip(folds, predictions):
                            if fold.phone_mouth is not None:
                                # recognised phones: no closures handed over (`animation.motion`)
                                predicted = blend_with_phones(predicted, fold.phone_mouth, np.zeros(len(predicted)),
                                                              share)
                            mixed.append(predicted[fold.mask])
                            scores.append(pearson(opening_curve(mixed[-1], neutral, basis), opening[fold.frames]))
                        score = float(np.mean(scores))
                        table[f"delay={delay},visemes={use_visemes},lambda={strength:g},components={components},"
                              f"share={share:g}"] = round(score, 4)
                        candidates.append(Candidate(score, delay, use_visemes, strength, components, share, mixed))
                    if len(candidates) > 4 * options.ensemble:  # keep memory bounded
                        candidates = sorted(candidates, key=lambda c: -c.score)[:options.ensemble]
    top = sorted(candidates, key=lambda c: -c.score)[:options.ensemble]
    real = [opening[fold.frames] for fold in folds]  # the same frames at every delay
    mixed = [np.mean([c.mixed[i] for c in top], axis=0) for i in range(len(folds))]  # the average's mix
    rows = np.flatnonzero(valid)
    members = []
    for c in top:
        member = MouthModelFacts(fps, k, options.num_bands, list(options.offsets),
                                 list(options.viseme_offsets) if c.use_visemes else [], c.strength, c.share, c.delay,
                                 speech_delay, int(valid.sum()), c.score, components=c.components,
                                 phone_shift_frames=phone_shift, phone_posteriors=options.phone_posteriors)
        mean, scale, w, b = ridge_fit(designs[c.delay, c.use_visemes][rows], coeffs[rows], c.strength)
        members.append((member, mean, scale, keep_components(w, c.components), b))
    facts, mean, scale, w, b = merge_members(members, top[0].delay)
    facts.measured_delay_frames, facts.cv_table = measured, table
    facts.cv_open_r = round(float(np.mean([pearson(opening_curve(m, neutral, basis), r)
                                           for m, r in zip(mixed, real)])), 4)
    if options.match_amplitude:
        facts.gain = amplitude_gain(mixed, real, neutral, basis, options.max_gain)
    if opening[rows].var() > 1e-12:  # (a mouth that never moves has no direction to widen along)
        facts.opening_direction = [round(float(v), 6)
                                   for v in opening_direction(coeffs[rows], opening[rows], b, neutral, basis)]
        if options.widen_opening:
            facts.opening_gain = round(opening_gain(facts.cv_open_r, options.max_opening_gain), 4)
            facts.opening_gradient = [round(float(v), 6) for v in opening_gradient(b, neutral, basis)]
    low, high = coeffs[rows].min(0), coeffs[rows].max(0)
    margin = options.clamp_margin * (high - low)
    return MouthModel(facts, mean, scale, w, b, low - margin, high + margin)


def load_mouth_model(folder: str | Path | None, num_coeffs: int, fps: float | None = None) -> MouthModel | None:
    """The avatar folder's mouth model when present and compatible with the avatar, else None."""
    if folder is None or not (Path(folder) / FACTS_FILE).is_file():
        return None
    try:
        model = MouthModel.load(folder)
    except (ValueError, OSError):
        return None  # an outdated or damaged file: the phone-based visemes still drive the mouth
    if model.facts.num_coeffs != num_coeffs or (fps is not None and abs(model.facts.fps - fps) > 1e-6):
        return None
    return model
