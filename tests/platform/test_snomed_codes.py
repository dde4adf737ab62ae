"""Every SNOMED CT code the outgoing formats use is a well-formed concept id: its last digit is the
Verhoeff check digit of the others and its partition identifier (the two digits before the check
digit) says "concept". A mistyped digit fails the check digit; a description or relationship id
pasted in place of a concept id fails the partition. Neither proves the code means what its
display says (that is checked by hand against a terminology source, see codes.py), but both
catch the typos a review misses. Pure Python: no services."""

from __future__ import annotations

import pytest

from ml.conditions import CONDITION_KEYS
from reviewer.integrations.codes import CONDITION_SNOMED, LATERALITY, SNOMED_SYSTEM, Coding, level_coding, spine_coding

# Verhoeff's dihedral-group tables (multiplication D5, permutation, inverse)
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip


def verhoeff_valid(number: str) -> bool:
    """True when the whole number (check digit included) passes Verhoeff's check."""
    c = 0
    for i, digit in enumerate(reversed(number)):
        c = _D[c][_P[i % 8][int(digit)]]
    return c == 0


def is_concept_id(sctid: str) -> bool:
    """An SCTID of a concept: 6 to 18 digits, no leading zero, partition 00 (international) or 10
    (extension), valid Verhoeff check digit."""
    return (
        sctid.isdigit() and 6 <= len(sctid) <= 18 and sctid[0] != "0" and sctid[-3:-1] in ("00", "10")
        and verhoeff_valid(sctid)
    )  # fmt: skip


def _all_codings() -> list[tuple[str, Coding]]:
    levels = [f"{r}{n}-{n + 1}" for r, top in (("C", 7), ("T", 12), ("L", 5)) for n in range(1, top)]
    levels += ["C7-T1", "T12-L1", "L5-S1"]
    found = [(f"level {lv}", c) for lv in levels if (c := level_coding(lv)) is not None]
    assert len(found) >= 20, "the level table is read from pydicom: most disc levels must resolve"
    return [
        *[(f"condition {k}", c) for k, c in CONDITION_SNOMED.items()],
        *[(f"laterality {k}", c) for k, c in LATERALITY.items()],
        ("spine", spine_coding()),
        *found,
    ]


@pytest.mark.parametrize(("where", "coding"), _all_codings(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_outgoing_snomed_code_is_a_concept_id_with_a_valid_check_digit(where: str, coding: Coding) -> None:
    assert coding.system == SNOMED_SYSTEM
    assert coding.scheme == "SCT"
    assert is_concept_id(coding.code), f"{where}: {coding.code} is not a valid SNOMED CT concept id"
    assert coding.display, where
    assert coding.display.strip() == coding.display, where


def test_the_check_catches_a_typo_and_a_description_id() -> None:
    """The check itself can fail: one changed digit, two swapped digits, and a description id."""
    assert is_concept_id("76107001")
    assert not is_concept_id("76107002")  # last digit changed
    assert not is_concept_id("76170001")  # adjacent digits swapped
    assert verhoeff_valid("76107017")
    assert not is_concept_id("76107017")  # check digit fine, partition 01: a description id, not a concept
    assert verhoeff_valid("2363")  # Verhoeff's textbook example: the check digit of 236 is 3
    assert not verhoeff_valid("2364")


def test_condition_codes_are_keyed_by_the_canonical_conditions() -> None:
    assert set(CONDITION_SNOMED) <= set(CONDITION_KEYS)
    assert len({c.code for c in CONDITION_SNOMED.values()}) == len(CONDITION_SNOMED), "no code for two conditions"
