"""The database aggregation of the statistics (PostgreSQL) against a straightforward Python
computation over the same random data: every figure of ``/api/stats/`` equal, to the last bit
where the old row-by-row code gave it, and the per-condition draft accuracy recounted review by
review here."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.stats_page import populate
from ml.conditions import CONDITION_KEYS
from reviewer.models import Arbitration, Finding, LabelConfirmation, LabelExtraction, Review
from reviewer.research import stats
from reviewer.services.reports import save_revision, sign_review
from reviewer.services.statistics import rebuild_statistics
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("statistics_on_postgres")]


def _untidy(seed: int) -> None:
    """Random irregularities the generator does not make: a second reader of a draft, missing
    findings and extraction keys, newer re-extractions, a review without distances, a third
    annotator, resolved arbitrations with a changed score."""
    rng = random.Random(seed)
    reviews = list(Review.objects.select_related("draft", "study", "signed_revision").order_by("id"))
    for review in rng.sample(reviews, 4):  # a second reader signs the same draft
        reader = UserFactory(role="radiologist")
        revision = save_revision(study=review.study, author=reader, text=review.signed_revision.text + " More.",
                                 parent_id=None)  # fmt: skip
        second = sign_review(study=review.study, reader=reader, radpeer=rng.choice(stats.RADPEER_SCORES),
                             comment="second reading", revision_id=revision.pk)  # fmt: skip
        labels = {k: rng.choice([-1, 0, 1]) for k in CONDITION_KEYS}
        LabelExtraction.objects.create(study=review.study, revision=second.signed_revision, source="signed_report",
                                       report_text=revision.text, extractor="t", labels=labels)  # fmt: skip
    for review in rng.sample(reviews, 3):  # findings missing for some conditions
        Finding.objects.filter(draft=review.draft, condition__in=rng.sample(CONDITION_KEYS, 5)).delete()
    for review in rng.sample(reviews, 3):  # a newer extraction with keys missing: the newest counts
        labels = {k: rng.choice([-1, 0, 1]) for k in rng.sample(CONDITION_KEYS, 12)}
        LabelExtraction.objects.create(study=review.study, revision=review.signed_revision, source="signed_report",
                                       report_text="x", extractor="t2", labels=labels)  # fmt: skip
    for review in rng.sample(reviews, 2):  # the draft was never label-extracted
        LabelExtraction.objects.filter(study=review.study, source="draft").delete()
    Review.objects.filter(pk=reviews[0].pk).update(edit_distance={})
    third = UserFactory(role="annotator")
    for confirmation in LabelConfirmation.objects.order_by("id")[:5]:
        LabelConfirmation.objects.get_or_create(
            extraction=confirmation.extraction, annotator=third,
            defaults={"labels": {k: rng.choice([-1, 0, 1]) for k in CONDITION_KEYS}},
        )  # fmt: skip
    for arbitration in Arbitration.objects.filter(state="open")[:3]:
        Arbitration.objects.filter(pk=arbitration.pk).update(state="resolved", decision="2a")


def _draft_accuracy_by_hand() -> dict[tuple[str, str], dict]:
    """Review by review through the ORM: the newest extraction of the signed revision is the
    reference, the newest extraction of the draft's text the prediction."""
    cases = []
    for review in Review.objects.filter(signed_at__isnull=False, draft__isnull=False).select_related("draft"):
        ref = LabelExtraction.objects.filter(revision=review.signed_revision_id, source="signed_report").order_by("-id")
        hyp = LabelExtraction.objects.filter(study=review.study_id, source="draft", report_text=review.draft.text)
        if not ref.exists() or not hyp.exists():
            continue
        probabilities = dict(Finding.objects.filter(draft=review.draft).values_list("condition", "probability"))
        cases.append((review.in_scope, ref.first().labels, hyp.order_by("-id").first().labels, probabilities))
    out = {}
    for scope in stats.SCOPES:
        chosen = [c for c in cases if scope == "all" or c[0] == (scope == "in_scope")]
        for key in CONDITION_KEYS:
            pairs = [(c[1][key], c[2][key]) for c in chosen if c[1].get(key) in (0, 1) and c[2].get(key) in (0, 1)]
            scored = [(c[1][key], c[3][key]) for c in chosen if c[1].get(key) in (0, 1) and key in c[3]]
            count = {
                name: sum(1 for r, h in pairs if (r, h) == cell)
                for name, cell in (("tp", (1, 1)), ("fn", (1, 0)), ("tn", (0, 0)), ("fp", (0, 1)))
            }
            truth = [t for t, _ in scored]
            out[(key, scope)] = {
                **count,
                "n": len(pairs),
                "n_auroc": len(scored),
                "auroc": roc_auc_score(truth, [p for _, p in scored]) if len(set(truth)) == 2 else None,
            }
    return out


@pytest.mark.parametrize("seed", [11, 12])
def test_aggregates_equal_the_python_computation(seed):
    populate(40, seed=seed)
    _untidy(seed)
    rebuild_statistics()  # the irregularities were written around the services
    aggregated = stats.overview(cached=False, reader_keys=True)
    from_tables = stats._compute_bundle_from_tables()
    assert {k: v for k, v in stats._compute_bundle().items() if k != "plot"} == {
        k: v for k, v in from_tables.items() if k != "plot"
    }
    rows = stats.review_rows()
    # the row functions: the code the page ran before, one Python object per review
    assert aggregated["radpeer"] == stats.radpeer_summary(rows)
    assert aggregated["radpeer_by_model"] == stats.radpeer_by(rows, "model_version")
    assert aggregated["radpeer_by_scope"] == {
        ("in_scope" if k == "True" else "out_of_scope"): v for k, v in stats.radpeer_by(rows, "in_scope").items()
    }
    from reviewer.research.exports import reader_breakdown

    assert list(aggregated["radpeer_by_reader"].items()) == list(reader_breakdown(rows).items())
    assert aggregated["edit_distance"] == stats.edit_distance_by_radpeer(rows)  # exact, not approximately
    assert aggregated["edit_distance"]["wer"]["all"]["n"] == len(rows) - 1  # the review without distances
    assert aggregated["spearman_word_norm"] == stats.spearman_radpeer_vs_distance(rows)
    assert aggregated["label_agreement"] == stats.label_agreement_from_rows()
    assert any(r["n_double_annotated"] for r in aggregated["label_agreement"])

    by_hand = _draft_accuracy_by_hand()
    table = {(r["condition"], r["scope"]): r for r in aggregated["draft_accuracy"]}
    assert set(table) == set(by_hand)
    for cell, expected in by_hand.items():
        got = table[cell]
        assert {k: got[k] for k in ("tp", "fn", "tn", "fp", "n", "n_auroc")} == {
            k: expected[k] for k in ("tp", "fn", "tn", "fp", "n", "n_auroc")
        }, cell
        assert got["auroc"] == (None if expected["auroc"] is None else pytest.approx(expected["auroc"], abs=1e-12))
    # the four second readers' rows have their draft's probabilities too
    assert table[("canal_stenosis", "all")]["n_auroc"] > table[("canal_stenosis", "all")]["n"] - 10


def test_plot_data_is_what_matplotlib_computes_from_the_rows():
    from matplotlib import cbook

    populate(30, seed=13)
    bundle = stats._compute_bundle()
    rows = stats.review_rows()
    for key in stats.DISTANCE_KEYS:
        for box in bundle["plot"]["boxes"][key]:
            values = [getattr(r, key) for r in rows if r.radpeer == box["label"]]
            (expected,) = cbook.boxplot_stats(np.asarray(values), labels=[box["label"]])
            assert {k: box[k] for k in ("med", "q1", "q3", "whislo", "whishi")} == {
                k: expected[k] for k in ("med", "q1", "q3", "whislo", "whishi")
            }
    for score, counts in bundle["plot"]["histogram"].items():
        values = [r.word_levenshtein_norm for r in rows if r.radpeer == score]
        assert counts == np.histogram(values, bins=20, range=(0, 1))[0].tolist()


def test_the_cached_overview_follows_every_kind_of_change(api_as):  # type: ignore[no-untyped-def]
    from reviewer.services.labels import confirm_labels, extract
    from reviewer.services.workflow import recompute_edit_distances, resolve_arbitration

    made = populate(12, seed=14)
    review = Review.objects.order_by("id").first()
    # a stale stored distance (bulk updates keep ``updated_at``: only the audit event tells)
    Review.objects.filter(pk=review.pk).update(edit_distance={**review.edit_distance, "wer": 7.5})
    rebuild_statistics()  # the statistics rows take the stale value in, as a database restore would
    client = api_as("researcher")

    def get() -> dict:
        return client.get("/api/stats/").json()

    before = get()
    assert before["edit_distance"]["wer"]["all"]["max"] == 7.5
    assert get() == before  # served from the cache
    recompute_edit_distances(review_ids=[review.pk], actor=made["readers"][0])
    assert get()["edit_distance"]["wer"]["all"]["max"] < 7.5

    arbitration = Arbitration.objects.filter(state="open").first()
    resolve_arbitration(arbitration_id=arbitration.pk, arbiter=UserFactory(role="radiologist"), decision="1",
                        comment="agreed")  # fmt: skip
    assert get()["radpeer"]["arbitrations_resolved"] == before["radpeer"]["arbitrations_resolved"] + 1

    def confirmed(condition: str) -> int:
        return next(r for r in get()["label_agreement"] if r["condition"] == condition)["n_confirmations"]

    n = confirmed("hemangioma")
    extraction = LabelExtraction.objects.filter(source="signed_report", confirmations__isnull=True).first()
    confirm_labels(extraction=extraction, annotator=made["annotators"][1], labels=dict.fromkeys(CONDITION_KEYS, 0))
    assert confirmed("hemangioma") == n + 1

    accuracy = get()["draft_accuracy"]
    # a new extraction of the signed report (the labels service, as a re-run of the extractor)
    extract(text="IMPRESSION: Severe spinal canal stenosis at L4-5. Acute fracture of L2.", source="signed_report",
            study=review.study, revision=review.signed_revision)  # fmt: skip
    assert get()["draft_accuracy"] != accuracy  # the newest extraction of the signed report counts
