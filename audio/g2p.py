"""Pronunciations (ARPAbet, no stress) for words that pocketsphinx's cmudict lacks.

Forced alignment needs every transcript word in the decoder's dictionary; names and rare words ("Gwynplaine",
"esclavine") are not. We ask espeak-ng, through the phonemizer that piper-tts ships with its own espeak-ng
data (nothing downloaded), for the word's IPA, and map IPA to the 39 ARPAbet phones of the en-us acoustic
model with the table below. Stress marks are dropped (the model's phones carry no stress); length marks
select long vowels; diphthongs, affricates and r-coloured vowels are matched as units (longest match first).
"""
from __future__ import annotations

import re
import unicodedata

# IPA (espeak-ng en-us output, NFC) -> ARPAbet. Multi-character keys are matched before their prefixes.
IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # diphthongs
    "eɪ": ("EY",), "aɪ": ("AY",), "ɑɪ": ("AY",), "ɔɪ": ("OY",), "aʊ": ("AW",), "oʊ": ("OW",), "əʊ": ("OW",),
    "ɪə": ("IH", "R"), "ɛə": ("EH", "R"), "eə": ("EH", "R"), "ʊə": ("UH", "R"),
    # r-coloured vowels
    "ɚ": ("ER",), "ɝ": ("ER",), "ɜː": ("ER",), "ɜ˞": ("ER",), "ə˞": ("ER",), "ɜ": ("ER",),
    "ɑːɹ": ("AA", "R"), "ɔːɹ": ("AO", "R"), "oːɹ": ("AO", "R"),
    # monophthongs
    "iː": ("IY",), "i": ("IY",), "ɪ": ("IH",), "ᵻ": ("IH",), "ɨ": ("IH",), "e": ("EH",), "ɛ": ("EH",),
    "æ": ("AE",), "a": ("AE",), "aː": ("AA",), "ɐ": ("AH",), "ʌ": ("AH",), "ə": ("AH",), "ɘ": ("AH",),
    "ɑː": ("AA",), "ɑ": ("AA",), "ɒ": ("AA",), "ɔː": ("AO",), "ɔ": ("AO",), "o": ("OW",), "oː": ("OW",),
    "uː": ("UW",), "u": ("UW",), "ʉ": ("UW",), "ʊ": ("UH",), "y": ("UW",), "ø": ("ER",), "œ": ("ER",),
    # affricates before their parts
    "tʃ": ("CH",), "dʒ": ("JH",), "ʧ": ("CH",), "ʤ": ("JH",),
    # consonants
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "ɡ": ("G",), "g": ("G",),
    "f": ("F",), "v": ("V",), "θ": ("TH",), "ð": ("DH",), "s": ("S",), "z": ("Z",), "ʃ": ("SH",),
    "ʒ": ("ZH",), "h": ("HH",), "ç": ("HH",), "x": ("K",), "m": ("M",), "n": ("N",), "ŋ": ("NG",),
    "l": ("L",), "ɫ": ("L",), "ɬ": ("L",), "ɹ": ("R",), "r": ("R",), "ɾ": ("T",), "ʔ": ("T",),
    "w": ("W",), "ʍ": ("W",), "j": ("Y",), "ɲ": ("N", "Y"),
}
# Marks that carry no phone of their own: stress, length (when not part of a key), syllabicity, palatalisation,
# ties, syllable breaks, espeak's word-internal punctuation.
IGNORED_MARKS = set("ˈˌː ̩ʲ‿͡.-'_|‖") | {"\u0329", "\u0361", "\u0303"}
ARPABET_PHONES = frozenset(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH".split())
_MAX_KEY = max(len(key) for key in IPA_TO_ARPABET)
_LETTER_FALLBACK = {  # last resort when espeak gives nothing usable: a crude letter-to-sound guess
    "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH", "j": "JH",
    "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R", "s": "S", "t": "T",
    "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "Y", "z": "Z",
}


def ipa_to_arpabet(ipa: str) -> list[str]:
    """Map an IPA string (espeak style) to ARPAbet phones without stress, longest match first.

    Unknown symbols are skipped (espeak's English output stays within the table; other marks carry no phone).
    An "ER" directly followed by "R" is collapsed, as cmudict writes r-coloured vowels as one phone.
    """
    text = unicodedata.normalize("NFC", ipa)
    phones: list[str] = []
    i = 0
    while i < len(text):
        for size in range(min(_MAX_KEY, len(text) - i), 0, -1):
            key = text[i: i + size]
            if key in IPA_TO_ARPABET:
                phones.extend(IPA_TO_ARPABET[key])
                i += size
                break
        else:
            i += 1  # a stress/length mark or a symbol outside the table
    collapsed: list[str] = []
    for phone in phones:
        if phone == "R" and collapsed and collapsed[-1] == "ER":
            continue
        collapsed.append(phone)
    return collapsed


def letters_to_arpabet(word: str) -> list[str]:
    """Crude letter-by-letter guess, only used when espeak returns nothing for a word."""
    phones: list[str] = []
    for letter in word.lower():
        phones.extend(_LETTER_FALLBACK.get(letter, "").split())
    return phones


class Pronouncer:
    """Word -> ARPAbet phones through espeak-ng (piper-tts's bundled data). Holds the initialised phonemizer."""

    def __init__(self, voice: str = "en-us") -> None:
        from piper.phonemize_espeak import EspeakPhonemizer

        self._phonemizer = EspeakPhonemizer()
        self._voice = voice

    def ipa(self, word: str) -> str:
        """espeak's IPA for `word` (stress marks included)."""
        sentences = self._phonemizer.phonemize(self._voice, word)
        return "".join("".join(sentence) for sentence in sentences)

    def arpabet(self, word: str) -> list[str]:
        """ARPAbet phones (no stress) for one word; never empty for a word with letters."""
        if not re.search(r"[a-zA-Z]", word):
            raise ValueError(f"cannot pronounce {word!r}: it has no letters")
        phones = ipa_to_arpabet(self.ipa(word))
        return phones if phones else letters_to_arpabet(word)
