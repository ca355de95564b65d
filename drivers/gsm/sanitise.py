"""Parsing types: what happens to characters outside the GSM 7-bit alphabet.

Pure; no I/O. Implements spec section 7.2 (NONE, SAFE_REMOVE_NON_GSM,
SAFE_REMOVE_NON_GSM_WITH_REPLACE, AUTO_DETECT) on top of the TS 23.038 alphabet.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata

from drivers.gsm.alphabet import NON_GSM, is_gsm


class ParsingType(enum.StrEnum):
    NONE = "NONE"
    SAFE_REMOVE_NON_GSM = "SAFE_REMOVE_NON_GSM"
    SAFE_REMOVE_NON_GSM_WITH_REPLACE = "SAFE_REMOVE_NON_GSM_WITH_REPLACE"
    AUTO_DETECT = "AUTO_DETECT"


# Typography that word processors and phones put in text, mapped to the plain GSM forms:
# single quotes and primes, double quotes and guillemets, hyphens and dashes, wide spaces.
_TYPOGRAPHY: dict[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032`\u00b4\u2039\u203a", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    **dict.fromkeys("\t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009", " "),
    **dict.fromkeys("\u200a\u202f\u205f\u3000", " "),
    "\u2026": "...",  # horizontal ellipsis
}


@functools.lru_cache(maxsize=4096)
def gsm_replacement(char: str) -> str:
    """The GSM text that stands in for a non-GSM character, or "" when nothing fits.

    Accented letters lose their combining marks (NFD, then NFKD for ligatures and width
    variants) and are kept only when what is left is GSM, so "á" becomes "a" but "Ж" goes.
    """
    typographic = _TYPOGRAPHY.get(char)
    if typographic is not None:
        return typographic
    for form in ("NFD", "NFKD"):
        base = "".join(c for c in unicodedata.normalize(form, char) if not unicodedata.combining(c))
        if base and is_gsm(base):
            return base
    return ""


# A run of non-GSM characters and the space after it, if any: a word that disappears whole takes
# one space with it, so "a Жук b" becomes "a b" rather than "a  b" (spec 7.2's examples).
_NON_GSM_RUN = re.compile(NON_GSM.pattern + "+( ?)")


def _collapse(match: re.Match[str], replacement: str) -> str:
    space = match.group(1)
    if not replacement and space:
        start = match.start()
        if start == 0 or match.string[start - 1].isspace():
            return ""
    return replacement + space


def _drop(match: re.Match[str]) -> str:
    return _collapse(match, "")


def _replace(match: re.Match[str]) -> str:
    run = match.group()[: len(match.group()) - len(match.group(1))]
    return _collapse(match, "".join(map(gsm_replacement, run)))


def remove_non_gsm(text: str) -> str:
    """SAFE_REMOVE_NON_GSM: drop every character without a GSM encoding, keep the rest as is."""
    return _NON_GSM_RUN.sub(_drop, text)


def replace_non_gsm(text: str) -> str:
    """SAFE_REMOVE_NON_GSM_WITH_REPLACE: map to the nearest GSM text, drop what has none."""
    return _NON_GSM_RUN.sub(_replace, text)


# Bound once, as sanitise runs for every message: reading a member off its Enum class runs a
# Python-level descriptor in Python 3.11.
_REMOVE = ParsingType.SAFE_REMOVE_NON_GSM
_REPLACE = ParsingType.SAFE_REMOVE_NON_GSM_WITH_REPLACE


def sanitise(text: str, parsing: ParsingType) -> str:
    """The text that goes on the air under `parsing` (NONE and AUTO_DETECT change nothing)."""
    if parsing is _REMOVE:
        return remove_non_gsm(text)
    if parsing is _REPLACE:
        return replace_non_gsm(text)
    return text
