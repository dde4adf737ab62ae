"""The statistics rows kept by the services equal a rebuild from scratch after a random sequence
of real writes (edits, sign-offs, addenda, label extractions, confirmations and corrections,
arbitrations, recomputed edit distances), and the statistics read from them equal those
computed from the base tables."""

from __future__ import annotations

import random

import numpy as np
import pytest

from benchmarks.stats_page import _report
from ml.conditions import CONDITION_KEYS
from reviewer.models import (
    Arbitration,
    ConfirmationStatistics,
    LabelExtraction,
    ModelVersion,
    Review,
    ReviewStatistics,
)
from reviewer.research import aggregates, stats
from reviewer.selectors import head_revision
from reviewer.services import labels, statistics
from reviewer.services.reports import save_revision, sign_review
from reviewer.services.workflow import recompute_edit_distances, resolve_arbitration
from tests.factories import DraftFactory, DraftJobFactory, FindingFactory, StudyFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("statistics_on_postgres")]


def _rows() -> tuple[dict, dict]:
    reviews = {
        r["review_id"]: {**r, "packed": bytes(r["packed"])} for r in ReviewStatistics.objects.values()
    }  # fmt: skip
    confirmations = {
        c["confirmation_id"]: {**c, "packed": bytes(c["packed"])} for c in ConfirmationStatistics.objects.values()
    }
    return reviews, confirmations


def _world(rng: random.Random) -> tuple[list, list, list, object]:
    """Studies with drafts of two model versions (one draft without findings for some
    conditions, one study drafted twice), readers, annotators and an arbiter."""
    versions = [ModelVersion.objects.create(name="spinefm", version=v) for v in ("1", "2")]
    drafts = []
    for i in range(8):
        truth = {k: int(rng.random() < 0.3) for k in CONDITION_KEYS}
        job = DraftJobFactory(pipeline_version=f"p@{i % 3}")
        draft = DraftFactory(study=job.study, job=job, model_version=versions[i % 2] if i != 5 else None,
                             text=_report(truth, rng, i))  # fmt: skip
        for key in rng.sample(CONDITION_KEYS, 17 if i % 4 else 11):
            FindingFactory(draft=draft, condition=key, probability=round(rng.random(), 2), present=truth[key] == 1)
        drafts.append(draft)
    StudyFactory()  # a study nobody reads
    readers = [UserFactory(role="radiologist") for _ in range(3)]
    annotators = [UserFactory(role="annotator") for _ in range(3)]
    return drafts, readers, annotators, UserFactory(role="admin")


ACTIONS = ("edit", "edit", "sign", "sign", "addendum", "extract", "confirm", "arbitrate", "recompute")


def _random_writes(rng: random.Random, steps: int) -> None:
    drafts, readers, annotators, admin = _world(rng)
    for _ in range(steps):
        draft, reader = rng.choice(drafts), rng.choice(readers)
        study = draft.study
        signed = Review.objects.filter(study=study, reader=reader, signed_at__isnull=False).first()
        head = head_revision(study, author=reader)
        action = rng.choice(
            ["edit", "edit", "sign", "sign", "addendum", "extract", "confirm", "arbitrate", "recompute"]
        )
        if action == "edit" and signed is None:
            text = _report({k: int(rng.random() < 0.3) for k in CONDITION_KEYS}, rng, rng.randrange(9))
            save_revision(study=study, author=reader, text=text, parent_id=head.pk if head else None)
        elif action == "sign" and signed is None:
            radpeer = rng.choice(stats.RADPEER_SCORES)
            sign_review(study=study, reader=reader, radpeer=radpeer, comment="missed" if radpeer != "1" else "",
                        in_scope=rng.random() < 0.8)  # fmt: skip
        elif action == "addendum" and signed is not None:
            save_revision(study=study, author=reader, text=head.text + "\nADDENDUM: seen again.", parent_id=head.pk,
                          reason="second look")  # fmt: skip
        elif action == "extract":
            ids = list(Review.objects.filter(signed_at__isnull=False).order_by("pk").values_list("pk", flat=True))
            if ids:
                labels.extract_for_review(review_id=rng.choice(ids))
        elif action == "confirm":
            extractions = list(LabelExtraction.objects.filter(source="signed_report").order_by("pk"))
            if extractions:  # a first confirmation or a correction of one's own
                answer = {k: rng.choice([-1, 0, 1]) for k in CONDITION_KEYS}
                labels.confirm_labels(
                    extraction=rng.choice(extractions), annotator=rng.choice(annotators), labels=answer
                )
        elif action == "arbitrate":
            arbitration = Arbitration.objects.filter(state="open").order_by("pk").first()
            if arbitration is not None:
                resolve_arbitration(arbitration_id=arbitration.pk, arbiter=admin,
                                    decision=rng.choice(stats.RADPEER_SCORES), comment="agreed")  # fmt: skip
        elif action == "recompute":
            ids = list(Review.objects.filter(signed_at__isnull=False).order_by("pk").values_list("pk", flat=True))
            if ids:  # distances lost (rows refreshed to match), then recomputed: the rows must follow
                chosen = rng.sample(ids, min(3, len(ids)))
                Review.objects.filter(pk__in=chosen).update(edit_distance={})
                statistics.refresh_review_statistics(review_ids=chosen)
                recompute_edit_distances(review_ids=chosen)


def _without_plot(bundle: dict) -> dict:
    return {k: v for k, v in bundle.items() if k != "plot"}


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_incremental_rows_equal_a_rebuild_and_the_figures_equal_the_base_tables(seed):
    _random_writes(random.Random(seed), steps=90)
    signed = set(Review.objects.filter(signed_at__isnull=False).values_list("pk", flat=True))
    incremental_reviews, incremental_confirmations = _rows()
    assert set(incremental_reviews) == signed  # every signed review has its row, nothing else has
    assert incremental_confirmations  # the sequence confirmed something
    packed = np.frombuffer(b"".join(r["packed"] for r in incremental_reviews.values()), aggregates.REVIEW_DTYPE)
    assert packed["labelled"].any()  # some rows gained their labels after the sign-off

    from_rows = stats._compute_bundle()
    statistics.rebuild_statistics()
    assert _rows() == (incremental_reviews, incremental_confirmations)

    from_tables = stats._compute_bundle_from_tables()
    assert _without_plot(from_rows) == _without_plot(from_tables)
    assert from_rows["plot"]["histogram"] == from_tables["plot"]["histogram"]
    assert any(r["n"] for r in from_rows["draft_accuracy"])
    assert any(r["n_confirmations"] for r in from_rows["label_agreement"])


def test_a_write_around_the_services_is_seen_after_a_rebuild():
    """A bulk UPDATE around the services is picked up by ``rebuild_statistics``, whose audit
    event also retires the cached figures."""
    rng = random.Random(5)
    drafts, readers, _annotators, _admin = _world(rng)
    for draft, reader in zip(drafts[:3], readers, strict=True):
        sign_review(study=draft.study, reader=reader, radpeer="1")
    assert stats.overview()["radpeer"]["counts"]["1"] == 3
    Review.objects.update(radpeer="2a")
    statistics.rebuild_statistics()
    assert stats.overview()["radpeer"]["counts"] == {"1": 0, "2a": 3, "2b": 0, "3a": 0, "3b": 0}
