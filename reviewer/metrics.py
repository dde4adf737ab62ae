"""Edit distance between the AI draft and the signed report.

Normalisation (documented because it changes the numbers): both texts are lower-cased and
runs of whitespace collapse to one space before comparison; punctuation is kept, because a
changed "no" or "," can change meaning. Character and word Levenshtein distances are reported
raw and divided by the longer text's length; WER treats the draft as the hypothesis and the
signed report as the reference.
"""

from __future__ import annotations

import re

import jiwer
from rapidfuzz.distance import Levenshtein

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _WS.sub(" ", text.strip().lower())


def edit_distances(draft: str, final: str) -> dict[str, float | int | str]:
    a, b = normalise(draft), normalise(final)
    wa, wb = a.split(), b.split()
    char = Levenshtein.distance(a, b)
    word = Levenshtein.distance(wa, wb)
    return {
        "normalisation": "lowercase+collapse-whitespace",
        "char_levenshtein": char,
        "char_levenshtein_norm": char / max(len(a), len(b), 1),
        "word_levenshtein": word,
        "word_levenshtein_norm": word / max(len(wa), len(wb), 1),
        "wer": jiwer.wer(b, a) if b else float(bool(a)),
        "draft_chars": len(a),
        "final_chars": len(b),
    }
