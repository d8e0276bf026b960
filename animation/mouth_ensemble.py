"""Two refinements of the fitted audio -> mouth model (`animation.mouth_model`), kept apart from the fit itself:

- `merge_members`: the best configurations of the cross-validation search, averaged exactly as one linear model;
- `amplitude_gain`: the scale that calibrates the driven mouth's motion against the real opening.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from animation.mouth_model import MouthModelFacts
from animation.mouth_opening import opening_curve
from animation.visemes import VISEMES


@dataclass
class Candidate:
    """One configuration of the cross-validation search, with its validation blocks' mixed mouths [n, K]."""

    score: float
    delay: int
    use_visemes: bool
    strength: float
    components: int
    share: float
    mixed: list


def merge_members(members: list, reference_delay: int):
    """Average linear mouth models into one -> (facts, mean [D], scale [D], weights [D, K], intercept [K]).

    members: (facts, mean, scale, weights, intercept) per model, all fitted on the same frames and features
    (same audio features and fps), differing in delay, offsets, viseme features and mix share. Each is linear in
    columns "feature f at frame t + delay + offset", so their share-weighted average is linear in the union of those
    columns, written at offsets from `reference_delay` (the saved recording delay); the viseme columns likewise
    at offsets from the phone track's replay position (each member's `phone_shift`; a fitted model's members
    share it). Mixing that average with the phone-based mouth at the mean share equals averaging the members'
    own mixes (`blend_with_phones` is linear in the share). A column shared by members has the same
    standardisation in each (same data, same rows)."""
    first = members[0][0]
    bands = first.audio_width
    if len({f.phone_shift_frames is None for f, *_ in members}) > 1:
        raise ValueError("members must all have a measured phone shift, or none of them")
    # where each member's phone track sits when the recording is replayed, against the merged model's (whose
    # recording delay is the reference)
    replay_shift = replace(first, recording_delay_frames=reference_delay).phone_shift(reference_delay)
    viseme_lags = [f.phone_shift(f.recording_delay_frames) - replay_shift for f, *_ in members]
    audio_offsets = sorted({f.recording_delay_frames - reference_delay + o for f, *_ in members for o in f.offsets})
    viseme_offsets = sorted({lag + o for (f, *_), lag in zip(members, viseme_lags) for o in f.viseme_offsets})
    width = len(audio_offsets) * bands + len(viseme_offsets) * len(VISEMES)
    mean, scale = np.zeros(width), np.ones(width)
    weights, intercept = np.zeros((width, first.num_coeffs)), np.zeros(first.num_coeffs)
    total = sum(f.audio_share for f, *_ in members)
    for (f, member_mean, member_scale, member_weights, member_intercept), lag in zip(members, viseme_lags):
        shift = f.recording_delay_frames - reference_delay
        columns = [audio_offsets.index(shift + o) * bands + j for o in f.offsets for j in range(bands)]
        columns += [len(audio_offsets) * bands + viseme_offsets.index(lag + o) * len(VISEMES) + j
                    for o in f.viseme_offsets for j in range(len(VISEMES))]
        mean[columns], scale[columns] = member_mean, member_scale
        weights[columns] += f.audio_share / total * member_weights
        intercept += f.audio_share / total * member_intercept
    facts = MouthModelFacts(first.fps, first.num_coeffs, first.num_bands, audio_offsets, viseme_offsets,
                            first.ridge_lambda, total / len(members), reference_delay, first.speech_delay_frames,
                            first.training_frames, first.cv_open_r, components=first.components,
                            members=len(members), phone_shift_frames=first.phone_shift_frames,
                            phone_posteriors=first.phone_posteriors)
    return facts, mean, scale, weights, intercept


def amplitude_gain(predicted: list[np.ndarray], opening: list[np.ndarray], neutral: np.ndarray, basis: np.ndarray,
                   max_gain: float) -> float:
    """How much to scale the driven mouth's motion -> gain in [1, max_gain]: the least-squares slope of the real
    opening on the driven one, cov(real, driven) / var(driven), within each validation block (features are
    normalised per clip), averaged over blocks. predicted: per block, the cross-validated coefficients [n, K] (the
    mix with the phone-based mouth, as `motion` renders it); opening: the block's real opening curves [n]. Never
    below 1: a model that already over-shoots is left alone."""
    slopes = []
    for coeffs, real in zip(predicted, opening):
        driven = opening_curve(coeffs, neutral, basis)
        if len(real) >= 3 and driven.std() > 1e-9:
            slopes.append(np.cov(real, driven)[0, 1] / driven.var(ddof=1))
    if not slopes:
        return 1.0
    return float(np.clip(np.mean(slopes), 1.0, max_gain))
