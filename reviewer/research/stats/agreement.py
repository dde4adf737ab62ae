"""Label agreement per condition: the extractor's ternary label against each annotator's
(accuracy, Cohen's kappa) and the first two annotators of a report against each other.

``label_agreement_from_rows`` is the reference (every confirmation in Python); on PostgreSQL the
confirmations arrive packed and numpy counts the confusion matrices (``agreement_from_packed``),
with the arithmetic of ``metrics.cohen_kappa``, so the kappas are the same floats."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from django.db import connection

from ml.conditions import CONDITION_KEYS
from reviewer.models import LabelConfirmation, LabelExtraction
from reviewer.research import aggregates
from reviewer.research.metrics import cohen_kappa
from reviewer.research.stats.db import fetch_packed, table, unpack, without_jit

labels_vector_sql = aggregates.labels_vector_sql
MISSING = aggregates.MISSING
_CONFIRMATION_DTYPE = aggregates.CONFIRMATION_DTYPE


def label_agreement() -> list[dict]:
    """Per condition: extractor vs annotator (accuracy, kappa) and inter-annotator kappa. One
    query of confusion counts on PostgreSQL (``_label_agreement_sql``), else two queries and a
    loop over the confirmations."""
    if connection.vendor == "postgresql":
        return _label_agreement_sql()
    return label_agreement_from_rows()


def label_agreement_from_rows() -> list[dict]:
    """``label_agreement`` computed in Python from every confirmation (the reference)."""
    confirmations = list(
        LabelConfirmation.objects.order_by("extraction_id", "annotator_id").values_list(
            "extraction_id", "annotator_id", "labels"
        )
    )
    extractor_labels = dict(
        LabelExtraction.objects.filter(pk__in={c[0] for c in confirmations}).values_list("id", "labels")
    )
    by_extraction: dict[int, list[dict]] = defaultdict(list)
    for extraction_id, _annotator, labels in confirmations:
        by_extraction[extraction_id].append(labels)
    out = []
    for key in CONDITION_KEYS:
        ext, ann = [], []
        for extraction_id, _annotator, labels in confirmations:
            e = extractor_labels.get(extraction_id, {}).get(key)
            if e is not None and key in labels:
                ext.append(int(e))
                ann.append(int(labels[key]))
        first, second = [], []
        for labelled in by_extraction.values():
            if len(labelled) >= 2 and key in labelled[0] and key in labelled[1]:
                first.append(int(labelled[0][key]))
                second.append(int(labelled[1][key]))
        n = len(ext)
        out.append(
            {
                "condition": key,
                "n_confirmations": n,
                "extractor_accuracy": sum(a == b for a, b in zip(ext, ann, strict=True)) / n if n else None,
                "extractor_kappa": nan_to_none(cohen_kappa(ext, ann)) if n else None,
                "n_double_annotated": len(first),
                "inter_annotator_agreement": (
                    sum(a == b for a, b in zip(first, second, strict=True)) / len(first) if first else None
                ),
                "inter_annotator_kappa": nan_to_none(cohen_kappa(first, second)) if first else None,
            }
        )
    return out


def nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _label_agreement_sql() -> list[dict]:
    """``label_agreement`` on PostgreSQL: per confirmation (ordered by report, then annotator id)
    its rank among the report's annotators and the annotator's and the extractor's label
    vectors, packed; the confusion counts are then numpy's. One query."""
    from reviewer.models import LabelConfirmation

    sql = f"""
        SELECT string_agg(int8send(c.extraction_id) || int2send(c.rn::smallint) || {labels_vector_sql("c")}
                          || {labels_vector_sql("e")}, ''::bytea ORDER BY c.extraction_id, c.annotator_id)
        FROM (SELECT extraction_id, annotator_id, labels,
                     row_number() OVER (PARTITION BY extraction_id ORDER BY annotator_id) AS rn
              FROM {table(LabelConfirmation)}) c
             JOIN {table(LabelExtraction)} e ON e.id = c.extraction_id"""
    with without_jit():
        (packed,) = fetch_packed(sql)
    return agreement_from_packed(packed)


def agreement_from_packed(packed: object) -> list[dict]:
    """``label_agreement`` from the packed confirmations (``_CONFIRMATION_DTYPE``, by report then
    annotator id): the confusion matrices of all 17 conditions counted by one ``bincount`` for
    extractor vs annotator and one for the two annotators."""
    rows = unpack(packed, _CONFIRMATION_DTYPE)
    annotator, extractor = rows["annotator"].astype(np.intp), rows["extractor"].astype(np.intp)  # (m, 17)
    # the first two annotators of a report: a rank-1 row followed by the same report's rank-2 row
    first = np.flatnonzero(rows["rank"][:-1] == 1)
    first = first[rows["rank"][first + 1] == 2]
    labels, (annotator, extractor) = _label_indices(annotator, extractor)
    missing = int(np.searchsorted(labels, MISSING)) if MISSING in labels else -1
    one, two = annotator[first], annotator[first + 1]
    extractor_cm = _confusions(extractor, annotator, (annotator != missing) & (extractor != missing), len(labels))
    pair_cm = _confusions(one, two, (one != missing) & (two != missing), len(labels))
    out = []
    for j, key in enumerate(CONDITION_KEYS):
        n, n2 = int(extractor_cm[j].sum()), int(pair_cm[j].sum())
        out.append(
            {
                "condition": key,
                "n_confirmations": n,
                "extractor_accuracy": int(np.trace(extractor_cm[j])) / n if n else None,
                "extractor_kappa": nan_to_none(_kappa(extractor_cm[j])) if n else None,
                "n_double_annotated": n2,
                "inter_annotator_agreement": int(np.trace(pair_cm[j])) / n2 if n2 else None,
                "inter_annotator_kappa": nan_to_none(_kappa(pair_cm[j])) if n2 else None,
            }
        )
    return out


def _label_indices(*arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The label values present in ``arrays`` (sorted) and each array as indices into them."""
    if not any(a.size for a in arrays):
        return np.array([], dtype=np.intp), list(arrays)
    low = min(int(a.min()) for a in arrays if a.size)
    high = max(int(a.max()) for a in arrays if a.size)
    if high - low < 64:  # labels are -2..1: a lookup table, no sort
        present = np.zeros(high - low + 1, dtype=bool)
        for a in arrays:
            present[(a - low).ravel()] = True
        labels = np.flatnonzero(present) + low
        index = np.cumsum(present) - 1
        return labels, [index[a - low] for a in arrays]
    labels = np.unique(np.concatenate([a.ravel() for a in arrays]))
    return labels, [np.searchsorted(labels, a) for a in arrays]


def _confusions(a: np.ndarray, b: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """(17, size, size) counts of (a, b) label-index pairs per condition where ``valid`` (all (m, 17))."""
    k = len(CONDITION_KEYS)
    cell = (np.arange(k, dtype=np.intp) * size + a) * size + b
    return np.bincount(cell[valid], minlength=k * size * size).reshape(k, size, size)


def _kappa(counts: np.ndarray) -> float:
    """``reviewer.research.metrics.cohen_kappa`` from a confusion matrix of counts, with its
    arithmetic: a label neither rater gave adds a zero row and column, and every sum here is of
    integers (exact in float64), so the float is the same as over the labels present."""
    n = int(counts.sum())
    if n == 0:
        return math.nan
    cm = counts.astype(np.float64)
    p_observed = np.trace(cm) / n
    p_expected = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if p_expected == 1.0:
        return math.nan
    return float((p_observed - p_expected) / (1.0 - p_expected))
