"""Text front end: number reading (exact strings), expansion, sentence splitting, bad input."""
from __future__ import annotations

import pytest

from audio.text import (MAX_SENTENCE_CHARS, MAX_TEXT_CHARS, expand_sentence, normalize_text, read_cardinal,
                        read_number, read_ordinal, read_year, sentence_words, split_sentences)


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (21, "twenty-one"), (99, "ninety-nine"),
    (100, "one hundred"), (105, "one hundred five"), (110, "one hundred ten"), (999, "nine hundred ninety-nine"),
    (1000, "one thousand"), (1001, "one thousand one"), (12345, "twelve thousand three hundred forty-five"),
    (1_000_000, "one million"), (2_000_017, "two million seventeen"),
    (3_400_000_000, "three billion four hundred million"), (10**12, "one trillion"),
    (-42, "minus forty-two"), (10**15, "one zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero"),
])
def test_cardinals(n, words):
    assert read_cardinal(n) == words


@pytest.mark.parametrize("n, words", [
    (1, "first"), (2, "second"), (3, "third"), (4, "fourth"), (5, "fifth"), (8, "eighth"), (9, "ninth"),
    (11, "eleventh"), (12, "twelfth"), (20, "twentieth"), (22, "twenty-second"), (101, "one hundred first"),
    (100, "one hundredth"), (1000, "one thousandth"), (43, "forty-third"),
])
def test_ordinals(n, words):
    assert read_ordinal(n) == words


@pytest.mark.parametrize("n, words", [
    (1999, "nineteen ninety-nine"), (2024, "twenty twenty-four"), (2005, "two thousand five"),
    (2000, "two thousand"), (1905, "nineteen oh five"), (1900, "nineteen hundred"), (2010, "twenty ten"),
    (1066, "one thousand sixty-six"), (1776, "seventeen seventy-six"),
])
def test_years(n, words):
    assert read_year(n) == words


@pytest.mark.parametrize("token, words", [
    ("3.5", "three point five"), ("3.14", "three point one four"), ("0.5", "zero point five"),
    (".5", "point five"), ("1,234", "one thousand two hundred thirty-four"), ("-7", "minus seven"),
    ("-2.25", "minus two point two five"), ("007", "zero zero seven"), ("1,000,000", "one million"),
])
def test_read_number(token, words):
    assert read_number(token) == words


@pytest.mark.parametrize("text, spoken", [
    ("It costs $3.50.", "It costs three dollars and fifty cents."),
    ("It costs $1.", "It costs one dollar."),
    ("Only $0.99!", "Only ninety-nine cents!"),
    ("Pay €20 now.", "Pay twenty euros now."),
    ("A £1m house.", "A one million pounds house."),
    ("Raised $2.5 billion.", "Raised two point five billion dollars."),
    ("It was 20€.", "It was twenty euros."),
    ("Sales rose 50%.", "Sales rose fifty percent."),
    ("A drop of -3.5% today.", "A drop of minus three point five percent today."),
    ("It is 12 km away.", "It is twelve kilometers away."),
    ("It weighs 1 kg.", "It weighs one kilogram."),
    ("It is 5cm or 3 mm long.", "It is five centimeters or three millimeters long."),
    ("Drive at 60 km/h or 3 m/s.", "Drive at sixty kilometers per hour or three meters per second."),
    ("It is -5°C outside.", "It is minus five degrees Celsius outside."),
    ("Meet at 3:30pm.", "Meet at three thirty PM."),
    ("Meet at 3:05 p.m. sharp.", "Meet at three oh five PM sharp."),
    ("Lunch at 12:00.", "Lunch at twelve o'clock."),
    ("Wake at 7am.", "Wake at seven AM."),
    ("The 1st and the 22nd.", "The first and the twenty-second."),
    ("Born in 1999.", "Born in nineteen ninety-nine."),
    ("Back in the 1990s.", "Back in the nineteen nineties."),
    ("Pages 10-20.", "Pages ten to twenty."),
    ("From 1999-2005.", "From nineteen ninety-nine to two thousand five."),
    ("We saw 1234 people.", "We saw one thousand two hundred thirty-four people."),
    ("It has 2048 bytes.", "It has two thousand forty-eight bytes."),
    ("In 2020 Obama won.", "In twenty twenty Obama won."),
    ("Since 1990 prices rose.", "Since nineteen ninety prices rose."),
    ("On May 3, 2024 we met.", "On May three, twenty twenty-four we met."),
    ("1999 was a year.", "nineteen ninety-nine was a year."),
    ("There are 1,234,567 people.", "There are one million two hundred thirty-four thousand five hundred "
                                    "sixty-seven people."),
    ("Dr. Smith met Mr. and Mrs. Jones.", "Doctor Smith met Mister and Missus Jones."),
    ("Cats vs. dogs, e.g. Rex, i.e. mine.", "Cats versus dogs, for example, Rex, that is, mine."),
    ("Fruit, nuts, etc.", "Fruit, nuts, et cetera."),
    ("Cats vs dogs etc", "Cats versus dogs et cetera."),
    ("Call No. 5.", "Call number five."),
    ("St. Louis is on Main St.", "Saint Louis is on Main Street."),
    ("Salt & pepper", "Salt and pepper."),
    ("He said (quietly) \"go\"", "He said, quietly, go."),
    ("Wait... what?!", "Wait, what?"),
    ("The U.S. team", "The U S team."),
    ("The café's 'naïve' façade - sure", "The café's naïve façade, sure."),
    ("Up at 7 A.M. today.", "Up at seven AM today."),
])
def test_expand_sentence(text, spoken):
    assert expand_sentence(text) == spoken


@pytest.mark.parametrize("text, sentences", [
    ("Hello Dr. Smith. How are you? Fine!", ["Hello Dr. Smith.", "How are you?", "Fine!"]),
    ("Pi is 3.14 or so. Next.", ["Pi is 3.14 or so.", "Next."]),
    ("Use e.g. Paris. Then go.", ["Use e.g. Paris.", "Then go."]),
    ("Wait... what? Hmm... Okay.", ["Wait... what?", "Hmm...", "Okay."]),
    ("Apples, pears, etc. and more. Then stop.", ["Apples, pears, etc. and more.", "Then stop."]),
    ("Apples, pears, etc. Then stop.", ["Apples, pears, etc.", "Then stop."]),
    ("J. K. Rowling wrote it. Yes.", ["J. K. Rowling wrote it.", "Yes."]),
    ("We met at 3 p.m. Then we left.", ["We met at 3 p.m.", "Then we left."]),
    ("\"Go home.\" She left.", ["\"Go home.\"", "She left."]),
    ("A heading\nThe body text\ncontinues here.", ["A heading", "The body text continues here."]),
    ("- first item\n- second item", ["first item", "second item"]),
])
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_normalize_text_end_to_end():
    result = normalize_text("Hello, Dr. Smith! It's 3.5 km. Wait... really? Done.")
    assert result.sentences == ["Hello, Doctor Smith!", "It's three point five kilometers.", "Wait, really?",
                                "Done."]
    assert result.notes == []


def test_sentence_words():
    assert sentence_words("Hello, Doctor Smith! It's twenty-four.") == ["hello", "doctor", "smith", "it's",
                                                                        "twenty-four"]


def test_emoji_and_symbols_are_removed_with_a_note():
    result = normalize_text("Great job 😀👍 team ✓!")
    assert result.sentences == ["Great job team!"]
    assert len(result.notes) == 1 and "😀" in result.notes[0] and "✓" in result.notes[0]


def test_typography_is_read():
    result = normalize_text("It’s “fine” — really… ok")
    assert result.sentences == ["It's fine, really, ok."]


def test_a_stray_foreign_word_is_removed_not_fatal():
    result = normalize_text("The word Привет means hello in Russian, and everyone in the class knows it well.")
    assert result.sentences == ["The word means hello in Russian, and everyone in the class knows it well."]
    assert "П" in result.notes[0]


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   \n\t ", "empty"), ("Привет, как у тебя дела сегодня?", "Cyrillic"),
    ("你好，世界。今天天气很好。", "CJK"), ("مرحبا بالعالم", "Arabic"), ("😀 🎉 ✨", "nothing the voice can read"),
    ("... !!! ???", "nothing the voice can read"), ("x" * (MAX_TEXT_CHARS + 1), "limit"),
])
def test_bad_text_raises_clear_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        normalize_text(text)


def test_non_string_raises():
    with pytest.raises(ValueError, match="string"):
        normalize_text(None)  # type: ignore[arg-type]


def _long_script(chars: int) -> str:
    paragraph = ("On March 3rd, 2024, Dr. Lee paid $12.50 for 2.5 kg of apples, e.g. Gala and Fuji. "
                 "The temperature was 21°C, about 70% humidity, and the bus left at 7:45am! ")
    return (paragraph * (chars // len(paragraph) + 1))[:chars]


def test_long_script_normalizes_into_short_sentences():
    script = _long_script(5200)
    result = normalize_text(script)
    assert len(result.sentences) >= 60
    assert all(len(s) <= MAX_SENTENCE_CHARS for s in result.sentences)
    assert "Doctor Lee paid twelve dollars and fifty cents for two point five kilograms of apples" in result.text
    assert not any(ch.isdigit() for ch in result.text)


def test_unpunctuated_run_is_cut_at_the_limit():
    run = " ".join(["word"] * 400)  # 1,999 characters, no punctuation
    sentences = normalize_text(run).sentences
    assert len(sentences) > 1
    assert all(len(s) <= MAX_SENTENCE_CHARS for s in sentences)
    assert sum(len(sentence_words(s)) for s in sentences) == 400
