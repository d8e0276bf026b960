"""Phone -> viseme tables for both phone sets, and hard per-frame labelling."""
from __future__ import annotations

import numpy as np
import pytest

from animation.visemes import (FALLBACK_CLASS, SHAPES, VISEME_INDEX, VISEMES, frame_viseme_classes,
                               is_weak_phone, shape_table, viseme_class_of, viseme_track)
from audio.speech import Segment

ARPABET_39 = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH "
              "UH UW V W Y Z ZH").split()

# What espeak-ng en-us produces through Piper (one code point per token), plus merged forms a TTS wrapper
# may emit (stress merged into the vowel, diphthongs and affricates as one label) and MFA 2.x IPA phones.
ESPEAK_IPA = ("p b m f v θ ð t d n l ɾ k ɡ g ŋ tʃ dʒ ʃ ʒ s z ɹ w j h ʔ i iː ɪ e ɛ æ a ɑ ɑː ɐ ə ʌ ɔ ɔː "
              "o ʊ u uː ɚ ɝ ɜ ɜː ᵻ aɪ aʊ eɪ oʊ ɔɪ n̩ l̩ ˈa ˌo ˈɑː ɫ ɒ cʰ tʰ pʰ ʎ ɲ ʉː ɒː").split()


def test_arpabet_has_39_phones_all_mapped() -> None:
    assert len(ARPABET_39) == 39
    for phone in ARPABET_39:
        for variant in (phone, phone + "0", phone + "1", phone + "2", phone.lower()):
            assert viseme_class_of(variant, "arpabet") in VISEMES, variant


@pytest.mark.parametrize("phone,expected", [
    ("P", "PP"), ("B", "PP"), ("M", "PP"), ("F", "FF"), ("V", "FF"), ("TH", "TH"), ("DH", "TH"),
    ("T", "DD"), ("D", "DD"), ("K", "kk"), ("G", "kk"), ("NG", "kk"), ("CH", "CH"), ("JH", "CH"),
    ("SH", "CH"), ("ZH", "CH"), ("S", "SS"), ("Z", "SS"), ("N", "nn"), ("L", "nn"), ("R", "RR"),
    ("ER1", "RR"), ("AA1", "aa"), ("AE2", "aa"), ("AH0", "E"), ("EH1", "E"), ("IH0", "ih"), ("IY1", "ih"),
    ("Y", "ih"), ("AO1", "oh"), ("OW1", "oh"), ("UH1", "ou"), ("UW1", "ou"), ("W", "ou"), ("AY1", "aa"),
    ("EY1", "E"), ("OY1", "oh"), ("AW1", "aa"),
])
def test_arpabet_classes(phone: str, expected: str) -> None:
    assert viseme_class_of(phone, "arpabet") == expected


@pytest.mark.parametrize("filler", ["SIL", "sil", "SP", "+NSN+", "+SPN+", "+BREATH+", "<sil>", "<s>", "</s>",
                                    "[NOISE]", "", "spn"])
def test_arpabet_fillers_are_silence(filler: str) -> None:
    assert viseme_class_of(filler, "arpabet") == "sil"


def test_espeak_ipa_all_mapped() -> None:
    for phone in ESPEAK_IPA:
        assert viseme_class_of(phone, "ipa") in VISEMES, phone


@pytest.mark.parametrize("phone,expected", [
    ("p", "PP"), ("m", "PP"), ("f", "FF"), ("ð", "TH"), ("ɾ", "DD"), ("ɡ", "kk"), ("ŋ", "kk"), ("tʃ", "CH"),
    ("dʒ", "CH"), ("t͡ʃ", "CH"), ("ʒ", "CH"), ("z", "SS"), ("n̩", "nn"), ("l̩", "nn"), ("ɫ", "nn"), ("ɹ", "RR"),
    ("ɚ", "RR"), ("ɝ", "RR"), ("ɜː", "RR"), ("ɑː", "aa"), ("ˈɑː", "aa"), ("æ", "aa"), ("ɛ", "E"), ("ə", "E"),
    ("ʌ", "E"), ("ɪ", "ih"), ("iː", "ih"), ("j", "ih"), ("ɔː", "oh"), ("o", "oh"), ("ʊ", "ou"), ("uː", "ou"),
    ("w", "ou"), ("ɒ", "oh"), ("aɪ", "aa"), ("oʊ", "oh"), ("eɪ", "E"), ("h", "kk"), ("ʔ", "kk"), (".", "sil"),
    (",", "sil"), ("^", "sil"), ("$", "sil"), ("_", "sil"), ("", "sil"), ("sil", "sil"), ("tʰ", "DD"),
])
def test_ipa_classes(phone: str, expected: str) -> None:
    assert viseme_class_of(phone, "ipa") == expected


@pytest.mark.parametrize("junk", ["🙂", "ǂ", "Q", "xyz!", "\u0301", "ʘ"])
def test_unknown_phones_fall_back_without_error(junk: str) -> None:
    for phone_set in ("ipa", "arpabet"):
        assert viseme_class_of(junk, phone_set) in VISEMES
    assert viseme_class_of("XX", "arpabet") == FALLBACK_CLASS


def test_bad_phone_set_raises() -> None:
    with pytest.raises(ValueError, match="phone_set"):
        viseme_class_of("p", "sampa")  # type: ignore[arg-type]


def test_shapes_are_consistent() -> None:
    table = shape_table()
    assert table.shape == (len(VISEMES), 4)
    assert np.all((table >= 0) & (table <= 1))
    assert SHAPES["PP"].lips_closed and SHAPES["sil"].lips_closed and not SHAPES["aa"].lips_closed
    assert SHAPES["aa"].jaw_open == table[:, 0].max()
    assert SHAPES["ou"].lip_round == table[:, 2].max()
    assert VISEMES[0] == "sil" and len(VISEMES) == len(set(VISEMES)) == 15


def test_weak_phones() -> None:
    assert is_weak_phone("HH", "arpabet") and is_weak_phone("h", "ipa") and is_weak_phone("ʔ", "ipa")
    assert not is_weak_phone("P", "arpabet") and not is_weak_phone("ɑː", "ipa")


def seq(labels_and_durations: list[tuple[str, float]], start: float = 0.0) -> list[Segment]:
    out, t = [], start
    for label, dur in labels_and_durations:
        out.append(Segment(label, t, t + dur))
        t += dur
    return out


def test_track_resolves_piper_modifiers_and_diphthongs() -> None:
    # Piper tokens for "bow tie": b ˈ a ʊ ' ' t ˈ a ɪ ː .
    phones = seq([("b", 0.1), ("ˈ", 0.02), ("a", 0.1), ("ʊ", 0.1), (" ", 0.05), ("t", 0.08), ("aɪ", 0.2),
                  ("ː", 0.05), (".", 0.2)])
    classes = [seg.viseme for seg in viseme_track(phones, "ipa")]
    # stress mark -> next vowel; space -> next word's onset; diphthong split into two halves; ː -> previous.
    assert classes == ["PP", "aa", "aa", "ou", "DD", "DD", "aa", "ih", "ih", "sil"]
    track = viseme_track(phones, "ipa")
    assert track[6].end_s - track[6].start_s > track[7].end_s - track[7].start_s  # nucleus longer than glide


@pytest.mark.parametrize("ipa,arpa", [("aɪ", "AY1"), ("aj", "AY1"), ("aʊ", "AW1"), ("aw", "AW1"), ("eɪ", "EY1"),
                                       ("ej", "EY1"), ("oʊ", "OW1"), ("ow", "OW1"), ("ɔɪ", "OY1"), ("ɔj", "OY1")])
def test_diphthongs_split_the_same_in_both_phone_sets(ipa: str, arpa: str) -> None:
    """espeak ("aɪ"), MFA 2.x ("aj") and ARPAbet ("AY") diphthongs give the same two halves."""
    a = viseme_track([Segment(ipa, 0.0, 0.3)], "ipa")
    b = viseme_track([Segment(arpa, 0.0, 0.3)], "arpabet")
    assert [(s.viseme, round(s.end_s, 9)) for s in a] == [(s.viseme, round(s.end_s, 9)) for s in b]
    assert len(a) == 2


def test_arpabet_diphthong_is_split() -> None:
    track = viseme_track([Segment("OW1", 0.0, 0.2)], "arpabet")
    assert [s.viseme for s in track] == ["oh", "ou"]
    assert track[0].start_s == 0.0 and abs(track[-1].end_s - 0.2) < 1e-12


def test_frame_viseme_classes_known_sequence() -> None:
    # 25 fps: frame t centre at (t + 0.5) * 0.04 s.
    phones = seq([("M", 0.08), ("AA1", 0.12), ("P", 0.04)], start=0.04)  # m 0.04-0.12, aa -0.24, p -0.28
    labels = frame_viseme_classes(phones, "arpabet", 25.0, 9)
    names = [VISEMES[i] for i in labels]
    assert names == ["sil", "PP", "PP", "aa", "aa", "aa", "PP", "sil", "sil"]
    assert labels.dtype == np.int64 and labels.shape == (9,)


def test_frame_viseme_classes_empty_and_bad_input() -> None:
    assert frame_viseme_classes([], "ipa", 30.0, 4).tolist() == [VISEME_INDEX["sil"]] * 4
    assert frame_viseme_classes([], "ipa", 30.0, 0).shape == (0,)
    with pytest.raises(ValueError, match="fps"):
        frame_viseme_classes([], "ipa", 0.0, 4)
    with pytest.raises(ValueError, match="n_frames"):
        frame_viseme_classes([], "ipa", 25.0, -1)


def test_both_phone_sets_agree_on_a_word() -> None:
    # "moon pie" in ARPAbet and in espeak IPA give the same frame classes for the same timing.
    durations = [0.07, 0.15, 0.06, 0.08, 0.2]
    arpa = seq(list(zip(["M", "UW1", "N", "P", "AY1"], durations)))
    ipa = seq(list(zip(["m", "uː", "n", "p", "aɪ"], durations)))
    assert np.array_equal(frame_viseme_classes(arpa, "arpabet", 30.0, 18),
                          frame_viseme_classes(ipa, "ipa", 30.0, 18))
