"""Text front end for English TTS: raw script -> normalised sentences a voice can read, plus notes.

Piper's espeak phonemizer reads digits and symbols inconsistently ("Dr." even ends a sentence there), so
everything that is not a plain word is written out here first: cardinals (negatives, decimals, thousands
separators), ordinals, years, currency, percentages, times, units and common abbreviations. The result is
US English (no "and" inside numbers: 105 -> "one hundred five"). A bare four-digit number from 1100 to 2099
is read as a year unless it counts something: "in 1999", "2024 was", "March 3, 2024" are years, "1234 people"
and "2048 bytes" are cardinals (a following noun that is not a verb or a connective). Write "1,999" to force the
cardinal.

Sentence splitting happens on the raw text (so "Dr. Smith", "e.g. Paris", "3.5", "Wait... what" stay in
one sentence) and expansion happens per sentence. Limits: at most `MAX_TEXT_CHARS` characters in; long
sentences are cut at commas (or spaces) to at most `MAX_SENTENCE_CHARS` characters so that each synthesis
call stays short. Text in another script raises ValueError (the English voice would read nothing or
nonsense); stray emoji and symbols are removed and reported in `notes`.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

MAX_TEXT_CHARS = 20_000  # documented input limit (characters); scripts of 5,000+ characters must work
MAX_SENTENCE_CHARS = 300  # longer sentences are cut at a comma or space (one synthesis call each)

# ----------------------------------------------------------------------------------------------------
# Number reader
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words.append(f"{_ONES[n // 100]} hundred")
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n > 0 or not words:
        words.append(_ONES[n])
    return " ".join(words)


def read_cardinal(n: int) -> str:
    """Integer -> words: 0 -> "zero", -42 -> "minus forty-two", 1234 -> "one thousand two hundred thirty-four".

    Numbers of 10**15 and above are read digit by digit (nobody says "quadrillion" in a script)."""
    if n < 0:
        return "minus " + read_cardinal(-n)
    if n >= 10**15:
        return read_digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    words = []
    for scale, name in _SCALES:
        if n >= scale:
            words.append(f"{_below_thousand(n // scale)} {name}")
            n %= scale
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def read_digits(digits: str) -> str:
    """"0715" -> "zero seven one five"."""
    return " ".join(_ONES[int(d)] for d in digits if d.isdigit())


def read_ordinal(n: int) -> str:
    """1 -> "first", 22 -> "twenty-second", 100 -> "one hundredth", 12 -> "twelfth"."""
    words = read_cardinal(n)
    head, sep, last = words.rpartition(" ")
    prefix, hyphen, unit = last.rpartition("-")
    if unit in _ORDINAL_IRREGULAR:
        unit = _ORDINAL_IRREGULAR[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + prefix + hyphen + unit


def read_year(n: int) -> str:
    """Years as people say them: 1999 -> "nineteen ninety-nine", 1905 -> "nineteen oh five",
    1900 -> "nineteen hundred", 2005 -> "two thousand five", 2024 -> "twenty twenty-four".
    Outside 1100..2099 this is the cardinal."""
    if not 1100 <= n <= 2099 or 2000 <= n <= 2009:
        return read_cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{read_cardinal(high)} hundred"
    if low < 10:
        return f"{read_cardinal(high)} oh {_ONES[low]}"
    return f"{read_cardinal(high)} {read_cardinal(low)}"


def _plural_word(words: str) -> str:
    """"nineteen ninety" -> "nineteen nineties" (for decades like 1990s)."""
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def read_number(token: str) -> str:
    """A numeric token as written ("1,234.5", "-3", "007", ".5") -> words ("... point five")."""
    token = token.replace(",", "")
    sign = ""
    if token.startswith(("-", "−")):
        sign, token = "minus ", token[1:]
    whole, _, fraction = token.partition(".")
    if whole and len(whole) > 1 and whole.startswith("0"):
        spoken = read_digits(whole)  # "007", "0800": read like codes
    elif whole:
        spoken = read_cardinal(int(whole))
    else:
        spoken = ""
    if fraction:
        spoken = (spoken + " point " if spoken else "point ") + read_digits(fraction)
    return sign + spoken


# ----------------------------------------------------------------------------------------------------
# Expansion tables
_CURRENCIES = {  # symbol: (unit singular, plural, sub-unit singular, plural or None)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", None, None),
}
_MAGNITUDES = {"k": "thousand", "thousand": "thousand", "m": "million", "mn": "million", "million": "million",
               "b": "billion", "bn": "billion", "billion": "billion", "t": "trillion", "trillion": "trillion"}
_UNITS = {  # written unit: (singular, plural); longer spellings first in the regex below
    "km/h": ("kilometer per hour", "kilometers per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "m/s": ("meter per second", "meters per second"), "mph": ("mile per hour", "miles per hour"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"), "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "m": ("meter", "meters"), "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"), "g": ("gram", "grams"), "ml": ("milliliter", "milliliters"),
    "lbs": ("pound", "pounds"), "lb": ("pound", "pounds"), "ft": ("foot", "feet"), "mi": ("mile", "miles"),
    "kHz": ("kilohertz", "kilohertz"), "Hz": ("hertz", "hertz"), "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"), "ms": ("millisecond", "milliseconds"),
}
# Abbreviations that never end a sentence (they precede a name or a number).
_TITLES = {"dr": "Doctor", "mr": "Mister", "mrs": "Missus", "ms": "Miz", "prof": "Professor", "st": "Saint",
           "mt": "Mount", "vs": "versus", "approx": "approximately", "fig": "figure", "cf": "compare"}
# Abbreviations that end a sentence when the next word is capitalised.
_TRAILING = {"etc": "et cetera", "inc": "Incorporated", "ltd": "Limited", "jr": "Junior", "sr": "Senior",
             "co": "Company"}
_NEVER_FINAL_DOTTED = {"e.g": "for example", "i.e": "that is"}

_NUM = r"\d[\d,]*(?:\.\d+)?|\.\d+"
_CURRENCY_RE = re.compile(
    rf"(?P<sym>[$€£¥])\s?(?P<num>{_NUM})(?:\s?(?P<mag>thousand|million|billion|trillion|bn|mn|[kmbt])\b)?",
    re.IGNORECASE)
_CURRENCY_AFTER_RE = re.compile(rf"(?<![\w.])(?P<num>{_NUM})\s?(?P<sym>[€£¥$])")
_PERCENT_RE = re.compile(rf"(?P<num>-?(?:{_NUM}))\s?%")
_UNIT_RE = re.compile(rf"(?<![\w.])(?P<num>-?(?:{_NUM}))\s?(?P<unit>"
                      + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
                      + r")(?![\w/])")
_TIME_RE = re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})(?:\s?(?P<ampm>[ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_HOUR_AMPM_RE = re.compile(r"\b(?P<h>\d{1,2})\s?(?P<ampm>[ap])\.?\s?m\b\.?", re.IGNORECASE)
_ORDINAL_RE = re.compile(r"\b(?P<num>\d[\d,]*)(?P<suf>st|nd|rd|th)\b", re.IGNORECASE)
_DECADE_RE = re.compile(r"\b(?P<num>1[1-9]\d0|20\d0)'?s\b")
_YEAR_RE = re.compile(r"(?<![\d.,$€£¥-])\b(?P<num>1[1-9]\d\d|20\d\d)\b(?![.,]\d)")
# Words after a four-digit number that still leave it a year ("2024 was", "1999 and 2005", "in 2020 we").
_AFTER_YEAR_WORDS = frozenset(
    "a an and or but was were is are will would had has have saw brought marked began ended became when where "
    "while as at in on by to of for from with until till through since after before during we i you he she it "
    "they the this that these those there then so if because ad bc bce ce".split())
# Words before one that make it a year whatever follows ("in 2020 Obama won", "since 1990 prices rose").
_BEFORE_YEAR_WORDS = frozenset(
    "in since by from until till during before after year circa around early late mid spring summer autumn fall "
    "winter january february march april may june july august september october november december jan feb mar "
    "apr jun jul aug sep sept oct nov dec".split())
_RANGE_RE = re.compile(r"(?<![\w.-])(?P<a>\d+)\s?[-–]\s?(?P<b>\d+)(?!\w|\.\d)")
_SIGNED_NUMBER_RE = re.compile(r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+")
_INITIALISM_RE = re.compile(r"\b(?:[A-Z]\.){2,}")
_ABBREV_RE = re.compile(r"\b(?P<word>[A-Za-z]+)\.(?=\s|$)")

_ALLOWED_SYMBOLS = set(".,!?;:'\"-()[]$€£¥%°&@#+=/~×*_")
_SCRIPT_WORDS = ("CYRILLIC", "GREEK", "ARABIC", "HEBREW", "CJK", "HIRAGANA", "KATAKANA", "HANGUL",
                 "DEVANAGARI", "THAI", "BENGALI", "TAMIL", "ARMENIAN", "GEORGIAN", "ETHIOPIC")
_TYPOGRAPHY = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-",
                             "—": ", ", "―": ", ", "−": "-", "…": "...", "\t": " ", "\u00a0": " "})


@dataclass
class NormalizedText:
    """What the voice should read: one string per sentence (plain words, which may hold apostrophes and
    hyphens, separated by spaces and . , ! ? ; :) plus notes for the user (e.g. "removed 2 character(s) the
    voice cannot read: 😀 ✨")."""

    sentences: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def sentence_words(sentence: str) -> list[str]:
    """The words of a normalised sentence, lower case, punctuation stripped ("don't" and "twenty-four" stay
    one word). These are the labels of `Speech.words`."""
    words = []
    for token in sentence.split():
        word = token.strip(".,!?;:'\"()[]-").lower()
        if any(ch.isalnum() for ch in word):
            words.append(word)
    return words


# ----------------------------------------------------------------------------------------------------
# Cleaning and sentence splitting
def _script_of(ch: str) -> str | None:
    """The script of a non-Latin letter ("Cyrillic", "CJK", ...) or None for Latin letters."""
    name = unicodedata.name(ch, "")
    if name.startswith("LATIN") or ch.isascii():
        return None
    for script in _SCRIPT_WORDS:
        if script in name:
            return script.title() if script != "CJK" else "CJK (Chinese/Japanese/Korean)"
    return "non-Latin"


def clean_text(text: str) -> tuple[str, list[str]]:
    """Validate and clean raw text: typography -> ASCII, emoji/symbols removed (with a note), other
    scripts rejected. Returns (text, notes); raises ValueError for empty, too long or non-English text."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,} "
                         "(split the script into several videos)")
    if not text.strip():
        raise ValueError("text is empty: type something for the avatar to say")
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").translate(_TYPOGRAPHY)
    notes: list[str] = []
    letters = [ch for ch in text if ch.isalpha()]
    foreign = [ch for ch in letters if _script_of(ch) is not None]
    if foreign and (len(foreign) >= 20 or len(foreign) > 0.2 * len(letters)):
        scripts = sorted({_script_of(ch) for ch in foreign})
        first = text.index(foreign[0])
        raise ValueError(f"the text is written in {', '.join(scripts)} script (e.g. {text[first:first + 12]!r}); "
                         "the English voice can only speak English in Latin letters")
    kept, removed = [], []
    for ch in text:
        if ch in "\n\r" or ch.isspace():
            kept.append("\n" if ch in "\n\r" else " ")
        elif (ch.isalpha() and _script_of(ch) is None) or ch.isdigit() or ch in _ALLOWED_SYMBOLS:
            kept.append(ch if not ch.isdigit() or ch.isascii() else str(unicodedata.digit(ch, 0)))
        elif unicodedata.category(ch) in ("Mn", "Me", "Cf"):  # combining marks, ZWJ, variation selectors
            continue
        else:
            removed.append(ch)
            kept.append(" ")
    if removed:
        shown = " ".join(dict.fromkeys(removed))
        notes.append(f"removed {len(removed)} character(s) the voice cannot read: {shown}")
    cleaned = "".join(kept)
    if not any(ch.isalnum() for ch in cleaned):
        raise ValueError("the text has nothing the voice can read (only symbols or emoji)")
    return cleaned, notes


def _is_boundary(text: str, dot: int, end: int) -> bool:
    """Does the punctuation run text[dot:end] end a sentence? (`end` is past any closing quotes.)"""
    if end < len(text) and not text[end].isspace():  # "3.5", "e.g", "U.S": no space after the dot
        return False
    run = text[dot:end].rstrip("\"')]")
    rest = text[end:].lstrip(" ")
    if not rest or rest[0] == "\n":
        return True
    nxt = rest[0]
    if "!" in run or "?" in run:
        return True
    if run.startswith(".."):  # ellipsis: a sentence end only before a capital letter
        return nxt.isupper()
    word = re.search(r"([\w.]*)$", text[:dot]).group(1).lower()
    if word in _TITLES or word in _NEVER_FINAL_DOTTED or (word == "no" and nxt.isdigit()):
        return False
    if len(word) == 1 and word.isalpha() and word != "i" and nxt.isupper():  # initials: "J. K. Rowling"
        return False
    if word in _TRAILING or "." in word:
        return nxt.isupper()
    return not nxt.islower()


def split_sentences(text: str) -> list[str]:
    """Raw (cleaned) text -> sentences, keeping their end punctuation. Newlines end a sentence unless the
    next line starts in lower case (hard-wrapped prose); a blank line always does."""
    sentences, start = [], 0
    for match in re.finditer(r"[.!?]+[\"')\]]*|\n", text):
        if match.group() == "\n":
            rest = text[match.end():].lstrip(" ")
            boundary = not rest[:1].islower()
        else:
            boundary = _is_boundary(text, match.start(), match.end())
        if boundary:
            sentences.append(text[start:match.end()])
            start = match.end()
    sentences.append(text[start:])
    out = []
    for sentence in sentences:
        sentence = re.sub(r"^\s*(?:[-*•]\s+)", "", sentence)  # list bullets
        sentence = " ".join(sentence.split())
        if any(ch.isalnum() for ch in sentence):
            out.append(sentence)
    return out


# ----------------------------------------------------------------------------------------------------
# Expansion of one sentence
def _money(match: re.Match) -> str:
    unit, units, sub, subs = _CURRENCIES[match["sym"]]
    number = match["num"].replace(",", "")
    if match.groupdict().get("mag"):
        return f"{read_number(number)} {_MAGNITUDES[match['mag'].lower()]} {units}"
    whole, _, fraction = number.partition(".")
    if sub is None or len(fraction) > 2:
        return f"{read_number(number)} {unit if number == '1' else units}"
    amount = int(whole or 0)
    cents = int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if amount or not cents:
        parts.append(f"{read_cardinal(amount)} {unit if amount == 1 else units}")
    if cents:
        parts.append(f"{read_cardinal(cents)} {sub if cents == 1 else subs}")
    return " and ".join(parts)


def _unit(match: re.Match) -> str:
    singular, plural = _UNITS[match["unit"]]
    number = match["num"]
    return f"{read_number(number)} {singular if number.lstrip('-') == '1' else plural}"


def _time(match: re.Match) -> str:
    hours, minutes = int(match["h"]), int(match["m"])
    if hours > 24 or minutes > 59:
        return f"{read_cardinal(hours)} {read_cardinal(minutes)}"
    ampm = f" {match['ampm'].upper()}M" if match["ampm"] else ""
    if minutes == 0:
        spoken = read_cardinal(hours) + (ampm or " o'clock")
        return spoken
    spoken_minutes = f"oh {_ONES[minutes]}" if minutes < 10 else read_cardinal(minutes)
    return f"{read_cardinal(hours)} {spoken_minutes}{ampm}"


def _abbreviation(match: re.Match) -> str:
    word = match["word"]
    key = word.lower()
    if key in _TITLES:
        if key == "st" and not re.match(r"\s+[A-Z]", match.string[match.end():]):
            return "Street"
        return _TITLES[key]
    at_end = not match.string[match.end():].strip()
    if key in _TRAILING:
        return _TRAILING[key] + ("." if at_end else "")
    if len(word) == 1 and word.isupper() and not at_end:  # an initial: "J. K. Rowling"
        return word
    if key == "no" and re.match(r"\s*\d", match.string[match.end():]):
        return "number"
    return match.group()


def _year_or_count(match: re.Match) -> str:
    """A bare 1100-2099 is a year unless the next word is a noun it counts ("1234 people" is a cardinal)."""
    number = int(match["num"])
    before = re.search(r"([A-Za-z]+)\.?\s*(?:\d{1,2},?\s*)?$", match.string[:match.start()])
    if before and before.group(1).lower() in _BEFORE_YEAR_WORDS:
        return read_year(number)
    following = re.match(r"\s*([A-Za-z]+)", match.string[match.end():])
    counted = following and following.group(1).islower() and following.group(1) not in _AFTER_YEAR_WORDS
    return match["num"] if counted else read_year(number)  # a count is left for the cardinal reader below


def expand_sentence(sentence: str) -> str:
    """Write out numbers, symbols and abbreviations of one sentence; the result ends in . ! or ?."""
    s = sentence
    for dotted, spoken in _NEVER_FINAL_DOTTED.items():
        s = re.sub(rf"\b{re.escape(dotted)}\.?(?!\w)", spoken + ",", s, flags=re.IGNORECASE)
    s = re.sub(r"\bvs\b(?!\.)", "versus", s)
    s = re.sub(r"\betc\b(?!\.)", "et cetera", s)
    s = _INITIALISM_RE.sub(lambda m: " ".join(m.group().replace(".", "")) + " ", s)
    s = _ABBREV_RE.sub(_abbreviation, s)
    s = _TIME_RE.sub(_time, s)
    s = _HOUR_AMPM_RE.sub(lambda m: f"{read_cardinal(int(m['h']))} {m['ampm'].upper()}M", s)
    s = _CURRENCY_RE.sub(_money, s)
    s = _CURRENCY_AFTER_RE.sub(_money, s)
    s = _PERCENT_RE.sub(lambda m: f"{read_number(m['num'])} percent", s)
    s = _UNIT_RE.sub(_unit, s)
    s = _ORDINAL_RE.sub(lambda m: read_ordinal(int(m["num"].replace(",", ""))), s)
    s = _DECADE_RE.sub(lambda m: _plural_word(read_year(int(m["num"]))), s)
    s = _RANGE_RE.sub(lambda m: f"{m['a']} to {m['b']}", s)
    s = _YEAR_RE.sub(_year_or_count, s)
    s = re.sub(r"#\s?(?=\d)", "number ", s)
    s = _SIGNED_NUMBER_RE.sub(lambda m: f" {read_number(m.group())} ", s)
    for symbol, spoken in (("&", " and "), ("+", " plus "), ("=", " equals "), ("@", " at "), ("×", " times "),
                           ("%", " percent "), ("°", " degrees "), ("~", " about "), ("/", " ")):
        s = s.replace(symbol, spoken)
    s = re.sub(r"\.{2,}", ",", s)  # a remaining ellipsis is a pause inside the sentence
    s = re.sub(r"[()\[\]]", " , ", s)
    s = re.sub(r"[\"*_#]", " ", s)
    s = re.sub(r"\s-+\s", " , ", s)  # a spaced dash is a pause
    s = re.sub(r"(?<![^\W\d_])'|'(?![^\W\d_])", " ", s)  # quotes, but not apostrophes ([^\W\d_]: a letter)
    s = re.sub(r"(?<![^\W\d_])-+|-+(?![^\W\d_])", " ", s)  # dashes, but not hyphens inside words
    s = " ".join(s.split())
    s = re.sub(r"\s+([.,!?;:])", r"\1", s)
    s = re.sub(r"([.!?])[.!?]+", r"\1", s)  # "?!" -> "?"
    s = re.sub(r"([,;:])[,;:.\s]*([,;:])", r"\1", s)  # ", ," -> ","
    s = re.sub(r"[,;:]+([.!?])", r"\1", s)
    s = s.strip(" ,;:")
    if s and s[-1] not in ".!?":
        s += "."
    return s


def _cut_long(sentence: str) -> list[str]:
    """Cut a sentence longer than MAX_SENTENCE_CHARS at its last comma/semicolon (or space) before the
    limit, so one synthesis call never gets a whole unpunctuated page."""
    pieces = []
    while len(sentence) > MAX_SENTENCE_CHARS:
        head = sentence[:MAX_SENTENCE_CHARS]
        cut = max(head.rfind(", "), head.rfind("; "), head.rfind(": "))
        if cut < MAX_SENTENCE_CHARS // 3:
            cut = head.rfind(" ")
        if cut <= 0:
            cut = MAX_SENTENCE_CHARS
        pieces.append(sentence[:cut].rstrip(" ,;:") + ",")
        sentence = sentence[cut:].lstrip(" ,;:")
    pieces.append(sentence)
    return [p for p in pieces if any(ch.isalnum() for ch in p)]


def normalize_text(text: str) -> NormalizedText:
    """Raw script -> sentences of plain words the English voice can read, plus notes for the user.

    Raises ValueError (a sentence a person can act on) for empty text, text over MAX_TEXT_CHARS, text in
    another script, or text with nothing readable left."""
    cleaned, notes = clean_text(text)
    sentences = []
    for raw in split_sentences(cleaned):
        expanded = expand_sentence(raw)
        if any(ch.isalpha() for ch in expanded):
            sentences.extend(_cut_long(expanded))
    if not sentences:
        raise ValueError("the text has no words the voice can read")
    return NormalizedText(sentences=sentences, notes=notes)
