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
    annotator id): the confusion counts are numpy's."""
    rows = unpack(packed, _CONFIRMATION_DTYPE)
    annotator = rows["annotator"].astype(np.int64).reshape(len(rows), len(CONDITION_KEYS))
    extractor = rows["extractor"].astype(np.int64).reshape(len(rows), len(CONDITION_KEYS))
    # the first two annotators of a report: a rank-1 row followed by the same report's rank-2 row
    first = np.flatnonzero(rows["rank"][:-1] == 1)
    first = first[rows["rank"][first + 1] == 2]
    out = []
    for j, key in enumerate(CONDITION_KEYS):
        both = (annotator[:, j] != MISSING) & (extractor[:, j] != MISSING)
        ext, ann = extractor[both, j], annotator[both, j]
        pair = (annotator[first, j] != MISSING) & (annotator[first + 1, j] != MISSING)
        one, two = annotator[first[pair], j], annotator[first[pair] + 1, j]
        n, n2 = int(both.sum()), int(pair.sum())
        out.append(
            {
                "condition": key,
                "n_confirmations": n,
                "extractor_accuracy": int((ext == ann).sum()) / n if n else None,
                "extractor_kappa": nan_to_none(_kappa(ext, ann)) if n else None,
                "n_double_annotated": n2,
                "inter_annotator_agreement": int((one == two).sum()) / n2 if n2 else None,
                "inter_annotator_kappa": nan_to_none(_kappa(one, two)) if n2 else None,
            }
        )
    return out


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    """``reviewer.research.metrics.cohen_kappa`` of two label arrays with the confusion matrix built by
    numpy (same labels in the same order, same counts, same arithmetic: the same float)."""
    n = len(a)
    if n == 0:
        return math.nan
    labels = np.union1d(a, b)
    k = len(labels)
    cell = np.searchsorted(labels, a) * k + np.searchsorted(labels, b)
    # (k, k) confusion counts; bincount, not np.add.at (same counts, a quarter of the time)
    cm = np.bincount(cell, minlength=k * k).reshape(k, k).astype(np.float64)
    p_observed = np.trace(cm) / n
    p_expected = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if p_expected == 1.0:
        return math.nan
    return float((p_observed - p_expected) / (1.0 - p_expected))
