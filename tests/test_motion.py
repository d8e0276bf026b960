"""Motion from speech: frame count, mouth shapes, rest in pauses, blinks, head motion, controls, round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from animation import idle
from animation.motion import Motion, MotionOptions, frame_count, motion_from_speech
from animation.viseme_shapes import (GENERIC_INDEX, VisemeShapes, generic_shapes, generic_viseme_shapes,
                                     learn_viseme_shapes)
from animation.visemes import VISEME_INDEX
from audio.speech import Segment, Speech
from tests.talking_fixtures import tiny_avatar


@pytest.fixture(scope="module")
def avatar():
    return tiny_avatar(size=32)


def _speech(phones, duration_s: float, sample_rate: int = 16000, source: str = "test") -> Speech:
    """A Speech whose waveform is loud noise inside non-silent phones and silent elsewhere."""
    rng = np.random.default_rng(0)
    wave = np.zeros(int(duration_s * sample_rate), np.float32)
    for label, start, end in phones:
        if label != "sil":
            wave[int(start * sample_rate):int(end * sample_rate)] = rng.normal(0, 0.2, int(end * sample_rate) - int(start * sample_rate))
    words = [Segment("word", phones[1][1], phones[1][2])]
    return Speech(wave, sample_rate, "test", words, [Segment(*p) for p in phones], "arpabet", source)


# "ma ... pa": open vowels around a long pause and bilabials.
PHONES = [("sil", 0.0, 0.3), ("M", 0.3, 0.4), ("AA", 0.4, 0.7), ("sil", 0.7, 1.9), ("P", 1.9, 2.0),
          ("AA", 2.0, 2.3), ("sil", 2.3, 2.61)]


def test_frame_count_is_rounded_audio_seconds_times_fps(avatar):
    motion = motion_from_speech(_speech(PHONES, 2.61), avatar, MotionOptions(fps=25))
    assert motion.num_frames == frame_count(2.61, 25) == 65
    assert frame_count(1.0 / 50 - 1e-9, 25) == 1


def test_mouth_opens_on_vowels_and_rests_in_pauses(avatar):
    motion = motion_from_speech(_speech(PHONES, 2.61), avatar, MotionOptions(fps=25, blinks_per_minute=0))
    jaw = motion.generic[:, GENERIC_INDEX["jaw_open"]]
    vowel = jaw[int(0.55 * 25)]
    pause = jaw[int(1.2 * 25):int(1.6 * 25)]
    assert vowel > 0.5
    assert np.all(pause < 0.05)
    # The lips press on the bilabial onset of "pa".
    press = motion.generic[int(1.95 * 25), GENERIC_INDEX["lip_press"]]
    assert press > 0.6


def test_vertices_follow_the_mouth_opening(avatar):
    motion = motion_from_speech(_speech(PHONES, 2.61), avatar, MotionOptions(fps=25, still=True, blinks_per_minute=0))
    vertices = motion.vertices(avatar)
    assert vertices.shape[0] == motion.num_frames
    gap = (vertices[:, 13] - vertices[:, 14]).norm(dim=1).numpy()
    assert np.corrcoef(gap, motion.mouth_open)[0, 1] > 0.8


def test_blinks_are_natural():
    times = idle.blink_times(600.0, 17.0, seed=3)
    assert 14 <= len(times) / 10 <= 20
    assert np.min(np.diff(times)) >= idle.MIN_BLINK_GAP_S
    curve = idle.blink_curve(times[:3], 25, 25 * 20)
    assert curve.max() > 0.95 and curve.min() == 0


def test_head_motion_is_smooth_and_still_mode_is_still(avatar):
    speech = _speech(PHONES, 2.61)
    moving = motion_from_speech(speech, avatar, MotionOptions(fps=25, head_motion=1.0))
    jerk = np.abs(np.diff(moving.rotations, n=2, axis=0)).max()
    raw = idle.rotation_to_axis_angle(avatar.rotations.numpy())
    assert jerk < 0.5 * np.abs(np.diff(raw, n=2, axis=0)).max()  # smoother than the noisy track it came from
    still = motion_from_speech(speech, avatar, MotionOptions(fps=25, still=True))
    assert np.ptp(still.rotations, axis=0).max() < 1e-9 and np.ptp(still.translations, axis=0).max() < 1e-9
    assert np.abs(moving.rotations - still.rotations).max() > 1e-4


def test_emotion_and_intensity_controls(avatar):
    speech = _speech(PHONES, 2.61)
    neutral = motion_from_speech(speech, avatar, MotionOptions(fps=25))
    smile = motion_from_speech(speech, avatar, MotionOptions(fps=25, emotion="smile"))
    assert smile.generic[-1, GENERIC_INDEX["smile"]] > 0.5 > neutral.generic[-1, GENERIC_INDEX["smile"]]
    flat = motion_from_speech(speech, avatar, MotionOptions(fps=25, expression=0.0))
    assert np.abs(flat.generic[:, GENERIC_INDEX["jaw_open"]]).max() < 1e-9
    with pytest.raises(ValueError, match="unknown emotion"):
        MotionOptions(emotion="furious")


def test_save_load_round_trip(avatar, tmp_path):
    motion = motion_from_speech(_speech(PHONES, 2.61), avatar, MotionOptions(fps=30, emotion="smile"))
    loaded = Motion.load(motion.save(tmp_path / "motion.json"))
    for name in ("rotations", "translations", "coeffs", "generic", "blink", "mouth_open"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(motion, name), atol=1e-6)
    assert loaded.fps == 30 and loaded.meta["options"]["emotion"] == "smile"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a motion file"):
        Motion.load(tmp_path / "bad.json")


def test_generic_shapes_move_the_right_landmarks(avatar):
    shapes = generic_shapes(avatar.neutral)
    neutral = avatar.neutral
    def gap(shape, weight, a, b):
        moved = neutral + weight * shapes[GENERIC_INDEX[shape]]
        return float((moved[a] - moved[b]).norm())
    assert gap("jaw_open", 1.0, 13, 14) > gap("jaw_open", 0.0, 13, 14) + 0.01
    assert gap("blink", 1.0, 159, 145) < 0.2 * gap("blink", 0.0, 159, 145)
    assert gap("lip_spread", 1.0, 61, 291) > gap("lip_spread", 0.0, 61, 291)
    assert gap("lip_round", 1.0, 61, 291) < gap("lip_round", 0.0, 61, 291)
    from avatar.mesh import head_axes

    up = head_axes(neutral)[1][:, 1]
    pressed = neutral + shapes[GENERIC_INDEX["lip_press"]]
    assert abs(float((pressed[13] - pressed[14]) @ up)) < 1e-6  # the inner lips meet vertically
    # Far from the mouth and eyes nothing moves (forehead top).
    assert float(shapes[:, 10].norm(dim=-1).max()) < 1e-4




def test_a_blink_shuts_the_lid_and_unfolds_its_skin_from_the_still_brow(avatar):
    """The upper margin meets the lower lid; the two rings of lid skin above it follow by LID_RING_FOLLOW of the
    margin's drop (so no row of triangles stretches alone) and the brows stay put."""
    from animation.viseme_shapes import BROWS, EYELID_PAIRS, LID_RING_FOLLOW, UPPER_LID_RINGS
    from avatar.mesh import head_axes

    neutral = avatar.neutral
    blink = generic_shapes(neutral)[GENERIC_INDEX["blink"]]
    unit = float(head_axes(neutral)[2])
    for (upper, lower), rings in zip(EYELID_PAIRS, UPPER_LID_RINGS):
        drop = neutral[lower] - neutral[upper]
        assert float(drop.norm()) > 0.02 * unit  # an open eye to shut
        torch.testing.assert_close(blink[upper], drop, rtol=0, atol=1e-6 * unit)
        assert float(blink[lower].norm()) < 1e-6 * unit
        for ring, follow in zip(rings, LID_RING_FOLLOW):
            torch.testing.assert_close(blink[ring], follow * drop, rtol=0, atol=1e-6 * unit)
    assert float(blink[list(BROWS)].norm(dim=-1).max()) < 1e-6 * unit
    assert float(blink.norm(dim=-1).max()) < 0.2 * unit  # the exact fit does not fling any point away



def test_the_generic_jaw_turns_the_lower_face_as_one_piece(avatar):
    """The lower inner lip drops JAW_DROP eye distances; the chin and the jaw line below the mouth keep their
    shape (a rotation, not a drop that fades sideways and pulls the chin into a point), and the chin goes down and
    a little back."""
    from animation.viseme_shapes import JAW_DROP
    from avatar.mesh import head_axes

    neutral = avatar.neutral
    jaw = generic_shapes(neutral)[GENERIC_INDEX["jaw_open"]]
    _, axes, unit = head_axes(neutral)
    up, forward = axes[:, 1], axes[:, 2]
    unit = float(unit)
    assert float(jaw[14] @ up) == pytest.approx(-JAW_DROP * unit, rel=1e-4)
    assert float(jaw[13].norm()) == 0.0  # the upper lip stays
    jaw_line = [152, 148, 377, 176, 400, 149, 378, 150, 379, 136, 365]  # chin and jaw, well below the mouth
    moved = neutral + jaw
    before = torch.cdist(neutral[jaw_line], neutral[jaw_line])
    after = torch.cdist(moved[jaw_line], moved[jaw_line])
    assert float((after - before).abs().max()) < 1e-4 * unit
    assert float(jaw[152] @ up) < -0.5 * JAW_DROP * unit and float(jaw[152] @ forward) < 0.0

def test_spread_is_exact_at_its_anchors_only_when_asked():
    from animation.viseme_shapes import _spread

    points = torch.randn(478, 3, generator=torch.Generator().manual_seed(0)) * 0.05
    anchors = [3, 10, 11, 200, 477]
    moves = torch.randn(5, 3, generator=torch.Generator().manual_seed(1)) * 0.01
    torch.testing.assert_close(_spread(points, anchors, moves, 0.05, exact=True)[anchors], moves, rtol=0, atol=1e-6)
    assert float((_spread(points, anchors, moves, 0.05)[anchors] - moves).abs().max()) > 1e-4  # a blend otherwise

def test_generic_visemes_open_as_wide_whatever_the_neutral_mouth(avatar):
    """A portrait smiling with parted lips: every generic viseme first presses the lips, so the jaw alone sets the
    gap and "aa" opens as wide as on a closed-mouth face, not that plus the smile's own gap."""
    from animation.viseme_shapes import LOWER_INNER_LIP, UPPER_INNER_LIP, generic_viseme_table
    from avatar.mesh import head_axes

    closed = avatar.neutral.clone()
    up = head_axes(closed)[1][:, 1]
    for upper, lower in zip(UPPER_INNER_LIP, LOWER_INNER_LIP):  # lips meeting at their mid-line
        middle = 0.5 * float((closed[upper] + closed[lower]) @ up)
        closed[upper] += up * (middle - float(closed[upper] @ up))
        closed[lower] += up * (middle - float(closed[lower] @ up))
    smiling = closed.clone()
    unit = float(head_axes(closed)[2])
    smiling[list(UPPER_INNER_LIP)] += up * 0.05 * unit  # parted by a tenth of the eye distance
    smiling[list(LOWER_INNER_LIP)] -= up * 0.05 * unit
    table = torch.from_numpy(generic_viseme_table()).float()  # [15, G]
    def gap(neutral, viseme):
        moved = neutral + torch.einsum("g,gvc->vc", table[VISEME_INDEX[viseme]], generic_shapes(neutral))
        return float((moved[13] - moved[14]) @ up) / unit
    assert gap(smiling, "sil") == pytest.approx(0.0, abs=1e-4)
    for viseme in ("aa", "E", "oh", "kk", "SS"):
        assert gap(smiling, viseme) == pytest.approx(gap(closed, viseme), abs=0.01), viseme
    assert gap(smiling, "aa") > gap(smiling, "E") > gap(smiling, "ih") > 0.03

def _planted_clip(shift: int = 0):
    """Alternating "sil" / AA / UW phones and a video whose expression is a known vector per viseme, the mouth at
    frame t showing the phone at frame t + shift (a recording whose audio trails its picture) -> (phones,
    coeffs [T, 3], planted vectors)."""
    from animation.visemes import frame_viseme_classes, VISEMES

    rng = np.random.default_rng(1)
    fps, k = 25.0, 3
    planted = {"sil": np.zeros(k), "aa": np.array([1.0, 0, 0]), "ou": np.array([0, 1.0, 0])}
    phones, t = [], 0.0
    for i in range(30):
        label = ["AA", "UW"][i % 2]
        phones += [Segment("sil", t, t + 0.3), Segment(label, t + 0.3, t + 0.7)]
        t += 0.7
    n = int(t * fps)
    classes = frame_viseme_classes(phones, "arpabet", fps, n)[np.clip(np.arange(n) + shift, 0, n - 1)]
    coeffs = np.stack([planted.get(VISEMES[c], np.zeros(k)) for c in classes]) + rng.normal(0, 0.01, (n, k))
    return phones, coeffs, planted


def test_learned_shapes_recover_planted_expressions():
    # Learning must find the planted vectors back.
    phones, coeffs, planted = _planted_clip()
    shapes = learn_viseme_shapes(coeffs, 25.0, phones, "arpabet", gain=1.0)
    assert shapes.learned[VISEME_INDEX["aa"]] and shapes.learned[VISEME_INDEX["ou"]]
    np.testing.assert_allclose(shapes.coeffs[VISEME_INDEX["aa"]], planted["aa"], atol=0.05)
    np.testing.assert_allclose(shapes.coeffs[VISEME_INDEX["ou"]], planted["ou"], atol=0.05)
    assert not shapes.learned[VISEME_INDEX["PP"]]  # never seen: generic fallback
    assert shapes.generic[VISEME_INDEX["PP"], GENERIC_INDEX["lip_press"]] == 1.0
    assert shapes.generic[VISEME_INDEX["aa"]].sum() == 0.0


def test_learned_shapes_follow_the_recording_phone_shift():
    """With the picture 6 frames ahead of the audio, shapes learned at the phones' own frames average the wrong
    syllable; told the shift, learning finds the planted vectors back."""
    phones, coeffs, planted = _planted_clip(shift=6)
    shifted = learn_viseme_shapes(coeffs, 25.0, phones, "arpabet", gain=1.0, phone_shift_frames=6)
    np.testing.assert_allclose(shifted.coeffs[VISEME_INDEX["aa"]], planted["aa"], atol=0.05)
    np.testing.assert_allclose(shifted.coeffs[VISEME_INDEX["ou"]], planted["ou"], atol=0.05)
    unshifted = learn_viseme_shapes(coeffs, 25.0, phones, "arpabet", gain=1.0)
    assert np.abs(unshifted.coeffs[VISEME_INDEX["aa"]] - planted["aa"]).max() > 0.5


def test_closed_lips_are_the_least_open_frames_and_drive_known_phones_only(avatar):
    """The p/b/m row stays the average at the (recognised) phones; the person's shut mouth is learned apart from the
    phones, from the least open frames, and takes the p/b/m row only when the phones are known."""
    phones, coeffs, planted = _planted_clip()
    k = coeffs.shape[1]
    shut = np.zeros(k)
    shut[0] = -3.0  # a face that never occurs at a p/b/m of the planted clip (it has none)
    openings = np.full(len(coeffs), 0.1) + np.random.default_rng(1).uniform(0, 0.05, len(coeffs))
    low = np.arange(5, len(coeffs), 9)  # every 9th frame shut, about 11 % of them
    coeffs, openings[low] = coeffs.copy(), 0.005
    coeffs[low] = shut
    without = learn_viseme_shapes(coeffs, 25.0, phones, "arpabet", gain=1.0)
    shapes = learn_viseme_shapes(coeffs, 25.0, phones, "arpabet", gain=1.0, openings=openings)
    assert without.closed_lips is None
    np.testing.assert_allclose(shapes.closed_lips, shut)  # the 5 % least open frames are all shut ones
    bilabial = VISEME_INDEX["PP"]
    np.testing.assert_array_equal(shapes.coeffs[bilabial], without.coeffs[bilabial])
    known = shapes.for_known_phones()
    np.testing.assert_array_equal(known.coeffs[bilabial], shut)
    assert known.learned[bilabial] and known.generic[bilabial].sum() == 0.0
    np.testing.assert_array_equal(np.delete(known.coeffs, bilabial, 0), np.delete(shapes.coeffs, bilabial, 0))
    assert without.for_known_phones() is without
    # too few valid frames: no closed lips
    assert learn_viseme_shapes(coeffs, 25.0, phones, "arpabet", valid=np.arange(len(coeffs)) < 20,
                               openings=openings).closed_lips is None

    # In motion: the bilabial frames of "pa" take the shut mouth with Piper's (known) phones, not recognised ones.
    rows = np.zeros((len(VISEME_INDEX), avatar.num_expressions))  # every learned row at rest
    closed = np.zeros(avatar.num_expressions)
    closed[0] = -3.0
    avatar_shapes = VisemeShapes(rows, np.zeros((len(VISEME_INDEX), len(GENERIC_INDEX))), np.ones(len(rows), bool),
                                 np.zeros(len(rows), int), "learned", closed)
    options = MotionOptions(fps=25, blinks_per_minute=0, still=True)
    frames = slice(int(1.85 * 25), int(2.05 * 25))
    known_motion = motion_from_speech(_speech(PHONES, 2.61, source="piper"), avatar, options, avatar_shapes)
    heard_motion = motion_from_speech(_speech(PHONES, 2.61, source="recognition"), avatar, options, avatar_shapes)
    assert known_motion.coeffs[frames, 0].min() < -1.5
    assert np.abs(heard_motion.coeffs[:, 0]).max() < 1e-9


def test_shapes_saved_before_closed_lips_get_them_from_the_avatars_own_expressions(tmp_path):
    from animation.mouth_opening import opening_curve
    from animation.viseme_shapes import SHAPES_FILE, shapes_for_avatar

    avatar = tiny_avatar(size=16, t=200)
    rows = np.tile(avatar.expression_coeffs.double().numpy().mean(0), (len(VISEME_INDEX), 1))
    learned = np.ones(len(rows), bool)
    VisemeShapes(rows, np.zeros((len(rows), len(GENERIC_INDEX))), learned, np.zeros(len(rows), int),
                 "learned").save(tmp_path / SHAPES_FILE)
    shapes = shapes_for_avatar(avatar, tmp_path)
    coeffs, neutral, basis = (x.double().numpy() for x in (avatar.expression_coeffs, avatar.neutral,
                                                           avatar.expression_basis))
    openings = opening_curve(coeffs, neutral, basis)
    shut = opening_curve(shapes.closed_lips[None], neutral, basis)[0]
    assert shut < np.quantile(openings, 0.1) < np.median(openings)
    # saved closed lips are kept as they are; generic shapes (a photo avatar) get none
    VisemeShapes(rows, np.zeros((len(rows), len(GENERIC_INDEX))), learned, np.zeros(len(rows), int), "learned",
                 rows[0]).save(tmp_path / SHAPES_FILE)
    np.testing.assert_allclose(shapes_for_avatar(avatar, tmp_path).closed_lips, rows[0], atol=1e-6)
    generic_viseme_shapes(avatar.num_expressions).save(tmp_path / SHAPES_FILE)
    assert shapes_for_avatar(avatar, tmp_path).closed_lips is None


def test_viseme_shapes_save_load(tmp_path):
    shapes = generic_viseme_shapes(4)
    loaded = VisemeShapes.load(shapes.save(tmp_path / "s.json"), num_coeffs=4)
    np.testing.assert_array_equal(loaded.generic, shapes.generic)
    with pytest.raises(ValueError, match="coefficients"):
        VisemeShapes.load(tmp_path / "s.json", num_coeffs=5)
    assert loaded.closed_lips is None
    shapes.closed_lips = np.array([0.5, -1.0, 0.0, 2.0])
    np.testing.assert_allclose(VisemeShapes.load(shapes.save(tmp_path / "c.json")).closed_lips, shapes.closed_lips)
    with pytest.raises(ValueError, match="closed_lips"):
        VisemeShapes(shapes.coeffs, shapes.generic, shapes.learned, shapes.counts, closed_lips=np.zeros(3))


def test_smoothing_and_ping_pong():
    signal = np.sin(np.linspace(0, 6, 200))[:, None] + np.random.default_rng(0).normal(0, 0.05, (200, 1))
    smooth = idle.smooth(signal, 3.0)
    assert np.abs(np.diff(smooth, 2, axis=0)).max() < 0.2 * np.abs(np.diff(signal, 2, axis=0)).max()
    track = np.arange(5.0)[:, None]
    np.testing.assert_array_equal(idle.ping_pong(track, 10, 0)[:, 0], [0, 1, 2, 3, 4, 3, 2, 1, 0, 1])


def test_digital_silence_marks_synthetic_pauses_not_a_noise_floor() -> None:
    from animation.motion import digital_silence

    sr, fps = 16000, 25.0
    rng = np.random.default_rng(0)
    speech = 0.1 * rng.standard_normal(sr)  # 1 s of loud audio
    noise_floor = 1e-3 * rng.standard_normal(sr)  # a recording's pause (-60 dBFS)
    wave = np.concatenate([speech, np.zeros(sr), noise_floor]).astype(np.float32)
    share = digital_silence(wave, sr, fps, 75)
    assert share.shape == (75,)
    np.testing.assert_allclose(share[:23], 0.0)
    np.testing.assert_allclose(share[27:48], 1.0)
    np.testing.assert_allclose(share[52:], 0.0)
    assert 0.0 < share[25] < 1.0  # the edges blend over +-2 frames
    assert digital_silence(wave[:sr], sr, fps, 30)[-1] > 0.5  # frames past the audio's end are silent


def _mean_mouth_model(k: int, audio_share: float = 1.0, gain: float = 1.0):
    """An audio mouth model whose own prediction is always its training mean c0 -> (model, c0 [K])."""
    from animation.mouth_model import MouthModel, MouthModelFacts

    c0 = np.linspace(0.5, 1.0, k)
    facts = MouthModelFacts(fps=25.0, num_coeffs=k, num_bands=8, offsets=[0], viseme_offsets=[], ridge_lambda=1.0,
                            audio_share=audio_share, recording_delay_frames=1, speech_delay_frames=1,
                            training_frames=400, cv_open_r=0.5, gain=gain)
    return MouthModel(facts, np.zeros(9), np.ones(9), np.zeros((9, k)), c0, np.full(k, -10.0), np.full(k, 10.0)), c0


def test_mouth_model_gain_scales_speech_but_leaves_synthetic_pauses_at_rest(avatar):
    """A mouth model with amplitude gain 2.5 (its own prediction constant at its training mean c0): in the
    digitally silent pause the mouth is the phone-based rest shape exactly (generic shapes: 0), while in a vowel
    the mix's deviation from c0 is enlarged past anything the unscaled mix (at most |c0| away) could reach."""
    model, c0 = _mean_mouth_model(avatar.num_expressions, audio_share=0.5, gain=2.5)
    motion = motion_from_speech(_speech(PHONES, 2.61), avatar, MotionOptions(fps=25, blinks_per_minute=0),
                                mouth=model)
    assert motion.meta["mouth"] == "audio model"
    np.testing.assert_allclose(motion.coeffs[int(1.2 * 25):int(1.6 * 25)], 0.0, atol=1e-12)
    vowel = motion.coeffs[int(0.56 * 25)]
    assert np.all(np.abs(vowel - c0) > 1.2 * np.abs(c0)), (vowel, c0)


@pytest.mark.parametrize("source, handed", [("piper", True), ("piper+voice", True), ("forced_alignment", True),
                                            ("recognition", False), ("", False)])
def test_closures_go_to_the_phones_only_when_the_phones_are_known(avatar, source, handed):
    """An audio model alone (share 1) whose prediction is its training mean c0: on the "P" the mouth is the
    phone-based shape (generic shapes: coefficients 0) when the phones are known, the model's c0 when they were
    recognised; on the vowel it is c0 either way."""
    from animation.motion import phones_are_known

    model, c0 = _mean_mouth_model(avatar.num_expressions)
    phones = [("sil", 0.0, 0.3), ("AA", 0.3, 0.6), ("P", 0.6, 0.72), ("AA", 0.72, 1.0), ("sil", 1.0, 1.2)]
    speech = _speech(phones, 1.2, source=source)  # the "P" is 0.3 s from any (digitally silent) pause
    assert phones_are_known(speech) == handed
    motion = motion_from_speech(speech, avatar, MotionOptions(fps=25, blinks_per_minute=0), mouth=model)
    closed = motion.coeffs[int(0.66 * 25)]
    if handed:  # mostly the phones' (the closure weight is smoothed over the neighbouring frames)
        assert np.all(np.abs(closed) < 0.5 * c0), closed
    else:
        np.testing.assert_allclose(closed, c0, atol=1e-9)
    np.testing.assert_allclose(motion.coeffs[int(0.9 * 25)], c0, atol=1e-9)


@pytest.mark.parametrize("hold, shut_frames", [(0.5, 3), (None, 1)])
def test_known_bilabials_keep_the_lips_shut_through_the_phone(avatar, hold, shut_frames):
    """A 120 ms "P" (three whole frames at 25 fps) spoken by Piper: with the default closure hold all three frames
    take the shut phone-based mouth; with `closure_hold=None` only one does."""
    model, c0 = _mean_mouth_model(avatar.num_expressions)
    phones = [("sil", 0.0, 0.3), ("AA", 0.3, 0.6), ("P", 0.6, 0.72), ("AA", 0.72, 1.0), ("sil", 1.0, 1.2)]
    options = MotionOptions(fps=25, blinks_per_minute=0, closure_hold=hold)
    motion = motion_from_speech(_speech(phones, 1.2, source="piper"), avatar, options, mouth=model)
    share = np.abs(motion.coeffs[[15, 16, 17]]).max(axis=1) / c0.max()  # 0 = the shut mouth, 1 = the model's c0
    assert (share < 0.1).sum() == shut_frames, share
    with pytest.raises(ValueError, match="closure hold"):
        MotionOptions(closure_hold=1.5)


def test_motion_from_expressions_plays_the_given_poses_and_coefficients_only() -> None:
    rng = np.random.default_rng(4)
    rotations, translations, coeffs = rng.normal(size=(6, 3)) * 0.1, rng.normal(size=(6, 3)), rng.normal(size=(6, 5))
    motion = Motion.from_expressions(25.0, rotations, translations, coeffs)
    np.testing.assert_array_equal(motion.rotations, rotations)
    np.testing.assert_array_equal(motion.translations, translations)
    np.testing.assert_array_equal(motion.coeffs, coeffs)
    assert not motion.generic.any() and not motion.blink.any() and not motion.mouth_open.any()
    assert motion.num_frames == 6 and motion.audio_seconds == pytest.approx(6 / 25.0)
