"""RADPEER summaries: distribution, discrepancy rate (score >= 2) and clinically significant rate
(2b + 3b), overall and per reader, model version and scope.

Two ways to the same dict: from review rows (``radpeer_summary``, ``radpeer_by``: the reference,
and the SQLite demo) and from counts grouped by the database (``summary_of``/``summaries`` over
``aggregates.radpeer_groups`` or ``radpeer_groups_from_tables``: a few hundred rows whatever the
number of reviews)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from reviewer.research.stats.rows import DISCREPANT, RADPEER_SCORES, SIGNIFICANT, ReviewRow, signed_reviews


def _rate(count: int, n: int) -> float | None:
    return count / n if n else None


def radpeer_summary(rows: Iterable[ReviewRow]) -> dict:
    """Distribution, discrepancy rate (≥ 2) and clinically significant rate (2b + 3b)."""
    rows = list(rows)
    arbitrations = Counter(r.arbitration_state for r in rows)
    return summary(Counter(r.radpeer for r in rows), len(rows), arbitrations["open"], arbitrations["resolved"])


def summary(counts: Counter, n: int, arbitrations_open: int, arbitrations_resolved: int) -> dict:
    return {
        "n": n,
        "counts": {s: counts.get(s, 0) for s in RADPEER_SCORES},
        "share": {s: _rate(counts.get(s, 0), n) for s in RADPEER_SCORES},
        "discrepancy_rate": _rate(sum(counts[s] for s in DISCREPANT), n),
        "significant_rate": _rate(sum(counts[s] for s in SIGNIFICANT), n),
        "arbitrations_open": arbitrations_open,
        "arbitrations_resolved": arbitrations_resolved,
    }


def radpeer_by(rows: Iterable[ReviewRow], key: str) -> dict[str, dict]:
    """``radpeer_summary`` per value of ``key`` ("reader", "model_version", "in_scope")."""
    groups: dict[str, list[ReviewRow]] = defaultdict(list)
    for r in rows:
        groups[str(getattr(r, key))].append(r)
    return {k: radpeer_summary(v) for k, v in sorted(groups.items())}


def radpeer_by_value(rows: Iterable[ReviewRow], key: str) -> dict[object, dict]:
    """``radpeer_by`` keyed by the value itself (not its string), in the same order."""
    groups: dict[object, list[ReviewRow]] = defaultdict(list)
    for r in rows:
        groups[getattr(r, key)].append(r)
    return {k: radpeer_summary(groups[k]) for k in sorted(groups, key=str)}


def radpeer_groups_from_tables() -> list[dict]:
    """Signed reviews counted per (reader, model, scope, score, arbitration state): a few hundred
    rows however many reviews there are."""
    from django.db.models import Count

    return list(
        signed_reviews()
        .order_by()
        .values(
            "reader_id",
            "draft__model_version__name",
            "draft__model_version__version",
            "draft__job__pipeline_version",
            "in_scope",
            "radpeer",
            "arbitration__state",
        )
        .annotate(n=Count("id"))
    )


def summaries(groups: list[dict], key: Callable[[dict], object]) -> dict:
    """``summary`` per value of ``key`` over the grouped counts, in ``radpeer_by``'s order."""
    per: dict[object, list[dict]] = defaultdict(list)
    for g in groups:
        per[key(g)].append(g)
    return {k: summary_of(per[k]) for k in sorted(per, key=str)}


def summary_of(groups: list[dict]) -> dict:
    counts: Counter = Counter()
    arbitrations: Counter = Counter()
    for g in groups:
        counts[g["radpeer"]] += g["n"]
        arbitrations[g["arbitration__state"]] += g["n"]
    return summary(counts, sum(counts.values()), arbitrations["open"], arbitrations["resolved"])


def model_key(g: dict) -> str:
    name = g["draft__model_version__name"]
    return f"{name}@{g['draft__model_version__version']}" if name else (g["draft__job__pipeline_version"] or "")


def scope_summaries(by_flag: dict) -> dict:
    return {("in_scope" if str(k) == "True" else "out_of_scope"): v for k, v in by_flag.items()}
