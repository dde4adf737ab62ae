"""The rule extractor's lexicon: ``lexicon/v<N>.yaml`` loaded, compiled and cached, and the
normalisation of a clause (rewrites, misspellings) before its terms are matched.

Why a separate module: the wording lives in versioned YAML so that a stored extraction
(``rules/lexicon-v3``) can be reproduced after the wording moves on; this module is the one place
that knows the YAML's keys, so a new version's keys have defaults that leave older versions as
they were.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ml.conditions import CONDITION_KEYS

LEXICON_DIR = Path(__file__).parent / "lexicon"
DEFAULT_LEXICON = 4
_LONG_WORD = re.compile(r"[A-Za-z]{8,}")
# Placeholders the lexicon may use inside patterns.
_MACROS = {
    "{LEVEL}": r"[CTLS]\d{1,2}\s*[-/]\s*[CTLS]?\d{1,2}",
    # a vertebra, not a level and not a sequence name ("T2 signal", "T1-weighted")
    "{VERT}": (
        r"[CTLS]\d{1,2}(?!\d)(?!\s*[-/]\s*[CTLS]?\d)"
        r"(?!\s*-?\s*(weighted|signal|hyper|hypo|w\b|images?|sequences?|stir|flair|fat|post|pre))"
    ),
}

Patterns = tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class Lexicon:
    version: int
    sections: dict[str, list[str]]
    neg_pre: Patterns
    neg_post: Patterns
    neg_stop: Patterns
    neg_pseudo: Patterns
    neg_window: int
    hedge_pre: Patterns
    hedge_post: Patterns
    hedge_both: Patterns
    hedge_exempt: dict[str, Patterns]
    directional_hedges: bool  # False: v1, a cue anywhere in the comma-chunk hedges
    historical: Patterns
    rewrite: tuple[tuple[re.Pattern[str], str], ...]
    spelling: tuple[str, ...]
    height_loss: re.Pattern[str] | None
    height_disc: re.Pattern[str] | None
    height_vertebra: re.Pattern[str] | None
    terms: dict[str, Patterns]
    weak_terms: dict[str, Patterns]
    exclude: dict[str, Patterns]
    diagnosis: dict[str, Patterns]  # (v3) terms naming a kind of the condition, see _decide
    # (v4) negation over a list of short items, and a longer post-cue reach when nothing stands between
    neg_list_window: int | None = None
    neg_list_item_words: int = 6
    neg_list_breaker: re.Pattern[str] | None = None
    neg_post_window: int | None = None
    normal: dict[str, Patterns] | None = None  # (v4) statements of normality: negated mentions
    addendum_by_level: bool = False  # (v4) a negated addendum mention naming levels withdraws those only
    pseudo_post: bool = False  # (v4) pseudo-negations veto post-cues too
    post_skip: Patterns = ()  # (v4) phrases left out between a term and its post-cue ("which was seen")


def _expand(pattern: str) -> str:
    for k, v in _MACROS.items():
        pattern = pattern.replace(k, v)
    return pattern


def _compile(patterns: list[str] | None) -> Patterns:
    return tuple(re.compile(_expand(p), re.IGNORECASE) for p in patterns or [])


def _one(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(_expand(pattern), re.IGNORECASE) if pattern else None


@functools.cache
def load_lexicon(version: int = DEFAULT_LEXICON) -> Lexicon:
    """Load and compile ``lexicon/v<version>.yaml`` (cached); every condition must be covered."""
    path = LEXICON_DIR / f"v{version}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in LEXICON_DIR.glob("v*.yaml"))
        raise FileNotFoundError(f"no lexicon {path.name}; known: {', '.join(known)}")
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    conds = raw["conditions"]
    missing = set(CONDITION_KEYS) - set(conds)
    if missing:
        raise ValueError(f"lexicon {path.name} lacks conditions {sorted(missing)}")
    directional = "hedge_pre" in raw or "hedge_post" in raw
    return Lexicon(
        version=int(raw["version"]),
        sections={k: [n.lower() for n in v] for k, v in raw["sections"].items()},
        neg_pre=_compile(raw["negation_pre"]),
        neg_post=_compile(raw["negation_post"]),
        neg_stop=_compile(raw["negation_stop"]),
        neg_pseudo=_compile(raw.get("negation_pseudo")),
        neg_window=int(raw["negation_window"]),
        hedge_pre=_compile(raw.get("hedge_pre")),
        hedge_post=_compile(raw.get("hedge_post")),
        hedge_both=_compile(raw.get("hedge_both", raw.get("hedge"))),
        hedge_exempt={k: _compile(v) for k, v in (raw.get("hedge_exempt") or {}).items()},
        directional_hedges=directional,
        historical=_compile(raw.get("historical")),
        rewrite=tuple((re.compile(p, re.IGNORECASE), r) for p, r in raw.get("rewrite") or []),
        spelling=tuple(w.lower() for w in raw.get("spelling") or []),
        height_loss=_one(raw.get("height_loss")),
        height_disc=_one(raw.get("height_disc_context")),
        height_vertebra=_one(raw.get("height_vertebra_context")),
        terms={k: _compile(conds[k].get("terms")) for k in CONDITION_KEYS},
        weak_terms={k: _compile(conds[k].get("weak_terms")) for k in CONDITION_KEYS},
        exclude={k: _compile(conds[k].get("exclude")) for k in CONDITION_KEYS},
        diagnosis={k: _compile(conds[k].get("diagnosis_terms")) for k in CONDITION_KEYS},
        neg_list_window=raw.get("negation_list_window"),
        neg_list_item_words=int(raw.get("negation_list_item_words", 6)),
        neg_list_breaker=_one(raw.get("negation_list_breaker")),
        neg_post_window=raw.get("negation_post_window"),
        normal={k: _compile(conds[k].get("normal_terms")) for k in CONDITION_KEYS},
        addendum_by_level=bool(raw.get("addendum_by_level", False)),
        pseudo_post=bool(raw.get("negation_pseudo_post", False)),
        post_skip=_compile(raw.get("negation_post_skip")),
    )


@functools.cache
def _spelling_fix(word: str, vocab: tuple[str, ...]) -> str | None:
    low = word.lower()
    if low in vocab:
        return None
    # Typos keep the first two letters; a prefix change is another word ("decompressed").
    cands = [w for w in vocab if w[:2] == low[:2]]
    hit = process.extractOne(low, cands, scorer=Levenshtein.distance, score_cutoff=2 if len(low) >= 13 else 1)
    return hit[0] if hit else None


def normalise(clause: str, lex: Lexicon) -> str:
    """The clause as the term patterns expect it: rewrites applied, misspelt key words fixed.

    Matching runs on this copy only; evidence and spans always point at the original text.
    """
    for pattern, repl in lex.rewrite:
        clause = pattern.sub(repl, clause)
    if lex.spelling:
        clause = _LONG_WORD.sub(lambda m: _spelling_fix(m.group(0), lex.spelling) or m.group(0), clause)
    return clause
