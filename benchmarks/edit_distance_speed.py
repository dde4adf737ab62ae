"""Edit distances for 10,000 draft/signed report pairs (what ``recompute_edit_distances`` does).

    .venv/bin/python benchmarks/edit_distance_speed.py [--pairs 10000] [--seed 0]

Pairs: synthetic reports (the generator's vocabulary, ~1–2 kB each, sections as in docs/paper.md)
and a signed version with word-level edits (substitutions, deletions, inserted sentences).
Times, side by side on the same pairs: the full ``report_edit_distances`` (whole report + every
section), the whole-report ``edit_distances`` alone, and its parts (rapidfuzz character and
word Levenshtein, jiwer WER). Also checks that jiwer's WER equals word Levenshtein divided by
the reference length, computed with rapidfuzz, on every pair.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    from benchmarks.stats_page import _report
    from ml.conditions import CONDITION_KEYS

    rng = random.Random(seed)
    filler = ["mild", "moderate", "severe", "no", "small", "central", "left", "right", "at", "L4-5", "L5-S1"]
    pairs = []
    for i in range(n):
        labels = {k: int(rng.random() < 0.25) for k in CONDITION_KEYS}
        draft = _report(labels, rng, i)
        words = draft.split(" ")
        for _ in range(rng.randint(0, 12)):
            j = rng.randrange(len(words))
            op = rng.random()
            if op < 0.5:
                words[j] = rng.choice(filler)
            elif op < 0.8 and len(words) > 5:
                del words[j]
            else:
                words.insert(j, rng.choice(filler))
        signed = " ".join(words)
        if rng.random() < 0.3:
            signed += "\nRECOMMENDATION: Clinical correlation and follow-up MRI in 6 months."
        pairs.append((draft, signed))
    return pairs


def timed(fn, pairs) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for a, b in pairs:
        fn(a, b)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import jiwer
    from rapidfuzz.distance import Levenshtein

    from reviewer.research.metrics import edit_distances, normalise, report_edit_distances

    pairs = make_pairs(args.pairs, args.seed)
    mean_chars = sum(len(a) + len(b) for a, b in pairs) / (2 * len(pairs))
    normalised = [(normalise(a), normalise(b)) for a, b in pairs]
    split = [(a.split(), b.split()) for a, b in normalised]

    rows = [
        ("report_edit_distances (whole + sections)", timed(lambda a, b: report_edit_distances(a, b), pairs)),
        ("edit_distances (whole report)", timed(edit_distances, pairs)),
        ("  rapidfuzz char Levenshtein", timed(Levenshtein.distance, normalised)),
        ("  rapidfuzz word Levenshtein", timed(Levenshtein.distance, split)),
        ("  jiwer WER", timed(lambda a, b: jiwer.wer(b, a), normalised)),
    ]
    mismatch = sum(
        abs(jiwer.wer(b, a) - Levenshtein.distance(wa, wb) / len(wb)) > 1e-12
        for (a, b), (wa, wb) in zip(normalised, split, strict=True)
    )
    print(f"{len(pairs)} pairs, mean {mean_chars:.0f} characters per report")
    print(f"{'what':45s} {'seconds':>8s} {'pairs/s':>9s} {'µs/pair':>8s}")
    for name, seconds in rows:
        print(f"{name:45s} {seconds:8.2f} {len(pairs) / seconds:9.0f} {1e6 * seconds / len(pairs):8.0f}")
    print(f"jiwer WER vs rapidfuzz word Levenshtein / reference words: {mismatch} mismatches in {len(pairs)} pairs")
    print(f"load average: {os.getloadavg()[0]:.2f} (2-core machine shared with other work)")


if __name__ == "__main__":
    main()
