"""The blocked cross-validation folds of `animation.mouth_model.fit_mouth_model`.

The training frames are cut into contiguous blocks. Each block is validated as a new clip would be: its audio
features are normalised on the block alone and (given `time_segment`) its phones are recognised on its own
audio. Its training rows leave out the block and a gap as wide as the features' context each side, so no training
frame's context reaches into it. The block's phone-based mouth uses viseme shapes learned on those rows only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from animation.audio_features import frames_audio


def validation_blocks(t: int, folds: int, waveform: np.ndarray, sample_rate: int, fps: float,
                      weights: np.ndarray | None,
                      time_segment) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """The cross-validation blocks: (frames [n], their audio [S'], their viseme weights [n, 15] or None), each
    block's phones timed on its own audio by `time_segment` when given (as a new clip's would be)."""
    blocks = []
    for block in np.array_split(np.arange(t), folds):
        segment = frames_audio(waveform, sample_rate, fps, block)
        block_weights = None
        if weights is not None:
            block_weights = (weights[block] if time_segment is None
                             else np.asarray(time_segment(segment, sample_rate, len(block))))
        blocks.append((block, segment, block_weights))
    return blocks


@dataclass
class Fold:
    """One validation block at one audio delay, as `make_fold` builds it."""

    rows: np.ndarray  # training frames (valid, outside the block and its gap)
    frames: np.ndarray  # valid frames of the block
    mask: np.ndarray  # [n] which of the block's frames are valid
    phone_mouth: np.ndarray | None  # [n, K] the phone-based mouth of the block (shapes learned on `rows`)


def make_fold(block: np.ndarray, segment: np.ndarray, block_weights: np.ndarray | None, coeffs: np.ndarray,
              valid: np.ndarray, fps: float, sample_rate: int, phones, phone_set: str, gap: int,
              phone_shift: int) -> Fold:
    """One fold at one audio delay: training rows leave out the block and `gap` frames each side (so no
    training frame's context reaches into it); the block's phone-based mouth is moved by `phone_shift` frames
    (`measure_phone_shift`), as `animation.motion` does when replaying a recording, and its viseme shapes are
    learned with the same shift."""
    from animation.loudness import frame_rms, loudness_gain
    from animation.viseme_shapes import learn_viseme_shapes

    keep = np.ones(len(coeffs), bool)
    keep[max(0, block[0] - gap):block[-1] + gap + 1] = False
    phone_mouth = None
    if block_weights is not None:
        shapes = learn_viseme_shapes(coeffs, fps, phones, phone_set, keep & valid, phone_shift_frames=phone_shift)
        gain = loudness_gain(frame_rms(segment, sample_rate, fps, len(block)))
        index = np.clip(np.arange(len(block)) + phone_shift, 0, len(block) - 1)
        phone_mouth = shapes.speak(block_weights, gain)[0][index]
    return Fold(np.flatnonzero(keep & valid), block[valid[block]], valid[block], phone_mouth)
