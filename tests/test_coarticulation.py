"""Per-frame viseme weights: closure, anticipation, no flicker, rest in pauses, rows summing to 1."""
from __future__ import annotations

import numpy as np
import pytest

from animation.coarticulation import CoarticulationOptions, Dominance, filled_track, viseme_weights
from animation.visemes import VISEME_INDEX, VISEMES, viseme_class_of
from audio.speech import Segment

PP, SIL = VISEME_INDEX["PP"], VISEME_INDEX["sil"]
ARPA = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH "
        "UH UW V W Y Z ZH SIL").split()
IPA = "p b m f v θ ð t d n l ɾ k ɡ ŋ tʃ dʒ ʃ s z ɹ w j h ʔ i ɪ ɛ æ ɑ ɐ ə ʌ ɔ oʊ ʊ u ɚ aɪ aʊ eɪ ˈ ː . ,".split()


def seq(items: list[tuple[str, float]], start: float = 0.0) -> list[Segment]:
    out, t = [], start
    for label, dur in items:
        out.append(Segment(label, t, t + dur))
        t += dur
    return out


def random_phones(rng: np.random.Generator, phone_set: str, n: int) -> list[Segment]:
    labels = ARPA if phone_set == "arpabet" else IPA
    return seq([(labels[rng.integers(len(labels))], float(rng.uniform(0.015, 0.25))) for _ in range(n)],
               start=float(rng.uniform(0.0, 0.3)))


def n_frames_for(phones: list[Segment], fps: float) -> int:
    return int(np.ceil((phones[-1].end_s + 0.2) * fps))


def flicker_frames(weights: np.ndarray, phones: list[Segment], phone_set: str, fps: float) -> list[int]:
    """Frames dominant for a single frame that the rules do not allow (see coarticulation's module doc)."""
    labels = weights.argmax(axis=1)
    bilabial = [p for p in phones if viseme_class_of(p.label, phone_set) == "PP"]

    def is_closure(t: int) -> bool:  # PP-dominant, really closed, and overlapping a bilabial phone
        lo, hi = t / fps, (t + 1) / fps
        return labels[t] == PP and weights[t, PP] >= 0.9 and any(p.start_s < hi and p.end_s > lo for p in bilabial)

    bad = []
    for t in range(len(labels)):
        single = (t == 0 or labels[t - 1] != labels[t]) and (t == len(labels) - 1 or labels[t + 1] != labels[t])
        if not single or len(labels) == 1 or is_closure(t):
            continue
        if 0 < t < len(labels) - 1 and is_closure(t - 1) and is_closure(t + 1):
            continue  # the release between two closures
        bad.append(t)
    return bad


@pytest.mark.parametrize("phone_set,fps", [("arpabet", 25.0), ("ipa", 30.0), ("ipa", 25.0)])
def test_rows_sum_to_one_and_no_flicker_on_random_sequences(phone_set: str, fps: float) -> None:
    rng = np.random.default_rng(1234 + int(fps) + len(phone_set))
    for _ in range(60):
        phones = random_phones(rng, phone_set, int(rng.integers(1, 25)))
        n_frames = n_frames_for(phones, fps)
        weights = viseme_weights(phones, phone_set, fps, n_frames)
        assert weights.shape == (n_frames, len(VISEMES))
        assert np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0, atol=1e-9)
        assert flicker_frames(weights, phones, phone_set, fps) == [], [p.label for p in phones]


def test_flicker_rule_is_needed() -> None:
    """Without the rule the blend does flicker on random speech (so the test above can fail)."""
    rng = np.random.default_rng(7)
    off = CoarticulationOptions(deflicker=False)
    found = 0
    for _ in range(40):
        phones = random_phones(rng, "arpabet", 20)
        weights = viseme_weights(phones, "arpabet", 25.0, n_frames_for(phones, 25.0), off)
        found += len(flicker_frames(weights, phones, "arpabet", 25.0))
    assert found > 0


@pytest.mark.parametrize("fps", [25.0, 30.0, 60.0])
def test_short_bilabials_close_the_lips(fps: float) -> None:
    rng = np.random.default_rng(int(fps))
    vowels = ["AA1", "IY1", "UW1", "AE1", "AO1", "EH1"]
    for _ in range(50):
        dur = float(rng.uniform(0.02, 0.045))  # about one frame or less
        bil = ["P", "B", "M"][rng.integers(3)]
        phones = seq([(vowels[rng.integers(6)], float(rng.uniform(0.06, 0.2))), (bil, dur),
                      (vowels[rng.integers(6)], float(rng.uniform(0.06, 0.2)))], start=float(rng.uniform(0.1, 0.3)))
        weights = viseme_weights(phones, "arpabet", fps, n_frames_for(phones, fps))
        b = phones[1]
        frames = [t for t in range(len(weights)) if t / fps < b.end_s and (t + 1) / fps > b.start_s]
        assert max(weights[t, PP] for t in frames) >= 0.9, (bil, dur, b.start_s)


def test_closure_even_between_two_close_bilabials() -> None:
    phones = seq([("AA1", 0.1), ("M", 0.03), ("AA1", 0.03), ("P", 0.03), ("AA1", 0.15)], start=0.2)
    weights = viseme_weights(phones, "arpabet", 25.0, 20)
    for b in (phones[1], phones[3]):
        frames = [t for t in range(20) if t / 25 < b.end_s and (t + 1) / 25 > b.start_s]
        assert max(weights[t, PP] for t in frames) >= 0.9



@pytest.mark.parametrize("hold", [0.5, 0.8])
def test_closure_hold_shuts_every_frame_mostly_inside_a_bilabial(hold: float) -> None:
    """With `closure_hold` the lips stay shut through a long p/b/m, not for one frame; the rules still hold."""
    rng = np.random.default_rng(int(hold * 10))
    options = CoarticulationOptions(closure_hold=hold)
    held = 0
    for _ in range(60):
        phones = random_phones(rng, "arpabet", int(rng.integers(2, 20)))
        fps = 25.0
        weights = viseme_weights(phones, "arpabet", fps, n_frames_for(phones, fps), options)
        assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-9)
        assert flicker_frames(weights, phones, "arpabet", fps) == []
        for p in phones:
            if viseme_class_of(p.label, "arpabet") != "PP":
                continue
            for t in range(len(weights)):
                inside = min(p.end_s, (t + 1) / fps) - max(p.start_s, t / fps)
                if inside * fps >= hold:
                    assert weights[t, PP] >= 0.95 - 1e-9, (p, t, weights[t, PP])
                    held += 1
    assert held > 50
    # a 120 ms "P" over three whole frames: all three shut with the hold, one without it
    phones = seq([("AA1", 0.2), ("P", 0.12), ("AA1", 0.2)], start=0.2)
    inside = [10, 11, 12]  # 0.40-0.52 s at 25 fps
    assert viseme_weights(phones, "arpabet", 25.0, 25, options)[inside, PP].min() >= 0.95 - 1e-9
    assert (viseme_weights(phones, "arpabet", 25.0, 25)[inside, PP] >= 0.95 - 1e-9).sum() == 1


def _weight_before(vowel: str, frames_before: int) -> float:
    """Weight of the vowel's class `frames_before` frames before the frame holding its start."""
    fps = 25.0
    phones = seq([("SIL", 0.3), ("S", 0.1), ("T", 0.08), (vowel, 0.2), ("T", 0.08), ("SIL", 0.4)])
    weights = viseme_weights(phones, "arpabet", fps, 30)
    start_frame = int(np.floor(phones[3].start_s * fps))
    return float(weights[start_frame - frames_before, VISEME_INDEX[viseme_class_of(vowel, "arpabet")]])


def test_rounding_anticipates_the_vowel() -> None:
    ou_2, ou_4 = _weight_before("UW1", 2), _weight_before("UW1", 4)
    ih_2 = _weight_before("IY1", 2)
    assert ou_2 > 0.2  # lips already rounding ~80 ms before "oo", inside "st"
    assert ou_4 < ou_2  # and rising towards it
    assert ou_2 > ih_2 + 0.1  # further ahead than an unrounded vowel in the same context
    assert _weight_before("AO1", 2) > _weight_before("AA1", 2)


def test_rounding_anticipation_option() -> None:
    phones = seq([("SIL", 0.3), ("S", 0.1), ("T", 0.08), ("UW1", 0.2), ("SIL", 0.4)])
    short = viseme_weights(phones, "arpabet", 25.0, 28, CoarticulationOptions(rounding_anticipation_s=0.02))
    long = viseme_weights(phones, "arpabet", 25.0, 28, CoarticulationOptions(rounding_anticipation_s=0.15))
    frame = int(phones[3].start_s * 25) - 3
    assert long[frame, VISEME_INDEX["ou"]] > short[frame, VISEME_INDEX["ou"]] + 0.1


def test_mouth_rests_in_long_pauses_and_outside_speech() -> None:
    fps = 25.0
    phones = seq([("HH", 0.06), ("AA1", 0.15), ("SIL", 0.5), ("W", 0.06), ("AA1", 0.2), ("", 0.4)], start=0.6)
    weights = viseme_weights(phones, "arpabet", fps, 60)
    centres = (np.arange(60) + 0.5) / fps
    pause = phones[2]
    inside = (centres > pause.start_s + 0.12) & (centres < pause.end_s - 0.12)
    assert inside.sum() >= 4
    assert np.all(weights[inside, SIL] == 1.0)
    assert np.all(weights[centres < 0.45, SIL] == 1.0)  # before speech
    assert np.all(weights[centres > phones[-1].end_s, SIL] == 1.0)  # after it (also beyond the phones)
    assert weights[int(1.35 * fps)].argmax() != SIL  # but not in the middle of speech


def test_short_pause_is_not_forced_to_rest() -> None:
    phones = seq([("AA1", 0.2), ("SIL", 0.1), ("AA1", 0.2)])
    weights = viseme_weights(phones, "arpabet", 25.0, 13)
    assert np.all(weights[:, SIL] < 1.0)


def test_piper_tokens_do_not_count_twice() -> None:
    # A vowel split into stress mark, vowel and length mark blends like one vowel target.
    split = seq([("t", 0.08), ("ˈ", 0.03), ("ɑ", 0.1), ("ː", 0.07), ("t", 0.08)], start=0.2)
    whole = seq([("t", 0.08), ("ɑː", 0.2), ("t", 0.08)], start=0.2)
    a = viseme_weights(split, "ipa", 30.0, 20)
    b = viseme_weights(whole, "ipa", 30.0, 20)
    assert np.allclose(a, b, atol=1e-9)
    assert len(filled_track(split, "ipa", 0.7)) == 5  # sil, DD, aa, DD, sil


def test_empty_and_edge_inputs() -> None:
    assert viseme_weights([], "ipa", 25.0, 0).shape == (0, len(VISEMES))
    rest = viseme_weights([], "arpabet", 25.0, 10)
    assert np.all(rest[:, SIL] == 1.0)
    one = viseme_weights([Segment("AA", 0.0, 0.04)], "arpabet", 25.0, 1)
    assert one.shape == (1, len(VISEMES)) and np.isclose(one.sum(), 1.0)
    # phones beyond the last frame are simply cut off
    late = viseme_weights([Segment("P", 5.0, 5.1)], "arpabet", 25.0, 10)
    assert np.all(late[:, SIL] == 1.0)


def test_bad_options_and_arguments() -> None:
    with pytest.raises(ValueError, match="closure_weight"):
        CoarticulationOptions(closure_weight=1.5)
    with pytest.raises(ValueError, match="closure_hold"):
        CoarticulationOptions(closure_hold=0.0)
    with pytest.raises(ValueError, match="unknown visemes"):
        CoarticulationOptions(dominance={"XX": Dominance(1.0, 0.05, 0.05)})
    with pytest.raises(ValueError, match="fps"):
        viseme_weights([], "ipa", -1.0, 3)
    with pytest.raises(ValueError, match="phone_set"):
        viseme_weights([Segment("a", 0, 0.1)], "xsampa", 25.0, 3)  # type: ignore[arg-type]


def test_long_speech_is_fast_enough_to_run_in_tests() -> None:
    """5 minutes of random phones at 30 fps (9,000 frames) must run (a smoke test, not a benchmark)."""
    rng = np.random.default_rng(5)
    phones = seq([(ARPA[rng.integers(len(ARPA))], float(rng.uniform(0.04, 0.15))) for _ in range(3200)])
    fps = 30.0
    weights = viseme_weights(phones, "arpabet", fps, int(phones[-1].end_s * fps))
    assert weights.shape[0] > 8000 and flicker_frames(weights, phones, "arpabet", fps) == []


def test_lead_shifts_shapes_earlier_by_whole_frames() -> None:
    phones = seq([("SIL", 0.3), ("M", 0.08), ("AA1", 0.2), ("UW1", 0.2), ("SIL", 0.4)])
    led = viseme_weights(phones, "arpabet", 25.0, 30, CoarticulationOptions(lead_s=0.08))
    plain = viseme_weights(phones, "arpabet", 25.0, 32)
    assert np.allclose(led[:28], plain[2:30], atol=1e-9)


@pytest.mark.slow
def test_openness_follows_the_real_mouth_on_grid_video(shared_data) -> None:
    """Lip sync measured on real video: our openness vs FaceMesh inner-lip opening on two GRID clips.

    Timing comes from pocketsphinx forced alignment of the clip's own audio with its transcript. Measured
    when written (25 fps, no lag): r = 0.35 (swwp2s) and 0.57 (pwij3p); the same curve reversed in time
    gives -0.05 and 0.22.
    """
    cv2 = pytest.importorskip("cv2")
    face_mesh = pytest.importorskip("mediapipe").solutions.face_mesh
    from animation.loudness import mouth_openness
    from audio.align import time_speech
    from audio.io import AudioOptions

    clips = [shared_data / "aligned" / "grid_swwp2s.mpg", shared_data / "video" / "grid_short" / "grid_pwij3p.mpg"]
    with face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=True) as tracker:
        for clip in clips:
            if not clip.is_file():
                pytest.skip(f"{clip} missing")
            capture = cv2.VideoCapture(str(clip))
            fps = capture.get(cv2.CAP_PROP_FPS)
            real = []
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                found = tracker.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).multi_face_landmarks
                if not found:
                    real.append(np.nan)
                    continue
                pts = np.array([[p.x * frame.shape[1], p.y * frame.shape[0]] for p in found[0].landmark])
                real.append(np.linalg.norm(pts[13] - pts[14]) / np.linalg.norm(pts[33] - pts[263]))
            real = np.asarray(real)
            text = clip.with_suffix(".txt").read_text().strip()
            speech = time_speech(clip, text, audio_options=AudioOptions(trim=False))
            weights = viseme_weights(speech.phones, speech.phone_set, fps, len(real))
            ours = mouth_openness(weights, speech.waveform, speech.sample_rate, fps)
            valid = np.isfinite(real)
            assert valid.mean() > 0.9
            r = np.corrcoef(ours[valid], real[valid])[0, 1]
            r_reversed = np.corrcoef(ours[::-1][valid], real[valid])[0, 1]
            assert r > 0.3, (clip.name, r)
            assert r > r_reversed + 0.2, (clip.name, r, r_reversed)


def _reference_blend(track, fps: float, n_frames: int, options: CoarticulationOptions) -> np.ndarray:
    """Slow, obviously correct twin of `dominance_blend`: every segment at every sub-sample, no windows."""
    k = options.samples_per_frame
    out = np.zeros((n_frames, len(VISEMES)))
    for frame in range(n_frames):
        for j in range(k):
            t = (frame + 0.5 + options.shutter * ((j + 0.5) / k - 0.5)) / fps
            dominance = np.zeros(len(VISEMES))
            for seg in track:
                dom = options.dominance_of(seg.viseme)
                strength = dom.strength * (options.weak_strength_scale if seg.weak else 1.0)
                if t < seg.start_s:
                    value = strength * np.exp(-(seg.start_s - t) / dom.tau_before_s)
                elif t > seg.end_s:
                    value = strength * np.exp(-(t - seg.end_s) / dom.tau_after_s)
                else:
                    value = strength
                dominance[VISEME_INDEX[seg.viseme]] += value
            out[frame] += dominance / dominance.sum() / k
    return out


@pytest.mark.parametrize("shutter", [1.0, 0.5])
def test_dominance_blend_matches_slow_twin(shutter: float) -> None:
    from animation.coarticulation import dominance_blend

    rng = np.random.default_rng(11)
    options = CoarticulationOptions(shutter=shutter, samples_per_frame=4)
    for phone_set in ("arpabet", "ipa"):
        phones = random_phones(rng, phone_set, 12)
        fps = 30.0
        n_frames = n_frames_for(phones, fps)
        track = filled_track(phones, phone_set, n_frames / fps)
        fast = dominance_blend(track, fps, n_frames, options)
        slow = _reference_blend(track, fps, n_frames, options)
        assert np.abs(fast - slow).max() < 2e-3  # only the tails beyond 8 time constants are cut
