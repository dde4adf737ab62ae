"""Statistics: RADPEER rates and draft accuracy checked by hand; the page and the API in a
bounded number of queries however many reviews there are."""

from __future__ import annotations

import pytest

from benchmarks.stats_page import populate
from ml.conditions import CONDITION_KEYS
from reviewer.models import LabelExtraction, ModelVersion, Review
from reviewer.research import stats
from reviewer.services.reports import save_revision, sign_review
from tests.factories import DraftFactory, FindingFactory, UserFactory

pytestmark = pytest.mark.django_db


def signed_review(*, draft, radpeer: str, comment: str = "") -> Review:  # type: ignore[no-untyped-def]
    reader = UserFactory(role="radiologist")
    revision = save_revision(study=draft.study, author=reader, text="IMPRESSION: 1. Small protrusion.", parent_id=None)
    return sign_review(study=draft.study, reader=reader, radpeer=radpeer, comment=comment, revision_id=revision.pk)


@pytest.fixture(autouse=True)
def _export_secret(settings):  # type: ignore[no-untyped-def]
    from django.core.cache import cache

    settings.SPINEREVIEW_EXPORT_SECRET = "test-secret"
    cache.clear()


def test_radpeer_rates_by_hand():
    v1 = ModelVersion.objects.create(name="m", version="1")
    v2 = ModelVersion.objects.create(name="m", version="2")
    for score, version, in_scope in (("1", v1, True), ("2a", v1, True), ("2b", v2, False), ("3b", v2, True)):
        review = signed_review(draft=DraftFactory(model_version=version), radpeer=score, comment="c")
        Review.objects.filter(pk=review.pk).update(in_scope=in_scope)
    rows = stats.review_rows()
    overall = stats.radpeer_summary(rows)
    assert overall["counts"] == {"1": 1, "2a": 1, "2b": 1, "3a": 0, "3b": 1}
    assert overall["discrepancy_rate"] == pytest.approx(3 / 4)
    assert overall["significant_rate"] == pytest.approx(2 / 4)
    assert overall["arbitrations_open"] == 2
    by_model = stats.radpeer_by(rows, "model_version")
    assert by_model["m@1"]["discrepancy_rate"] == pytest.approx(1 / 2)
    assert by_model["m@2"]["significant_rate"] == pytest.approx(1.0)
    assert stats.overview(rows=rows)["radpeer_by_scope"]["out_of_scope"]["counts"]["2b"] == 1
    edit = stats.edit_distance_by_radpeer(rows)
    assert edit["wer"]["all"]["n"] == 4


def _review_with_labels(signed: dict, drafted: dict, probability: dict, *, in_scope: bool = True) -> Review:
    draft = DraftFactory()
    for key, p in probability.items():
        FindingFactory(draft=draft, condition=key, probability=p, present=p >= 0.5)
    review = signed_review(draft=draft, radpeer="1")
    Review.objects.filter(pk=review.pk).update(in_scope=in_scope)
    full = dict.fromkeys(CONDITION_KEYS, 0)
    text = review.signed_revision.text
    LabelExtraction.objects.create(
        study=draft.study,
        revision=review.signed_revision,
        source="signed_report",
        report_text=text,
        extractor="t",
        labels={**full, **signed},
    )
    LabelExtraction.objects.create(
        study=draft.study, source="draft", report_text=draft.text, extractor="t", labels={**full, **drafted}
    )
    return review


def test_draft_accuracy_per_condition_by_hand():
    key = "canal_stenosis"
    # (signed, drafted, probability): TP, FN, TN, FP, and one uncertain reference (excluded)
    _review_with_labels({key: 1}, {key: 1}, {key: 0.9})
    _review_with_labels({key: 1}, {key: 0}, {key: 0.4})
    _review_with_labels({key: 0}, {key: 0}, {key: 0.2})
    _review_with_labels({key: 0}, {key: 1}, {key: 0.6})
    _review_with_labels({key: -1}, {key: 1}, {key: 0.99})
    _review_with_labels({key: 1}, {key: 1}, {key: 0.8}, in_scope=False)
    rows = {(r["condition"], r["scope"]): r for r in stats.draft_accuracy()}
    in_scope = rows[(key, "in_scope")]
    assert (in_scope["tp"], in_scope["fn"], in_scope["tn"], in_scope["fp"]) == (1, 1, 1, 1)
    assert in_scope["sensitivity"] == pytest.approx(0.5)
    assert in_scope["specificity"] == pytest.approx(0.5)
    # positives 0.9, 0.4 vs negatives 0.2, 0.6: pairs won 0.9>0.2, 0.9>0.6, 0.4>0.2 -> 3/4
    assert in_scope["auroc"] == pytest.approx(3 / 4)
    assert rows[(key, "all")]["n"] == 5
    assert rows[(key, "out_of_scope")]["sensitivity"] == 1.0
    assert rows[(key, "out_of_scope")]["auroc"] is None  # one class only


@pytest.mark.parametrize("url", ["/statistics/", "/api/stats/"])
def test_statistics_need_a_fixed_number_of_queries(url, client, role_user, django_assert_max_num_queries):  # type: ignore[no-untyped-def]
    client.force_login(role_user("researcher"))
    populate(8, seed=1)
    with django_assert_max_num_queries(12) as small:
        assert client.get(url).status_code == 200
    populate(60, seed=2)
    with django_assert_max_num_queries(12) as large:
        response = client.get(url)
    assert response.status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)  # no query per review
    if url == "/api/stats/":
        assert response.json()["radpeer"]["n"] == 68


def test_statistics_page_shows_rates_and_plots(client, role_user):  # type: ignore[no-untyped-def]
    populate(30, seed=3)
    client.force_login(role_user("researcher"))
    html = client.get("/statistics/").content.decode()
    rows = stats.review_rows()
    rate = stats.radpeer_summary(rows)["discrepancy_rate"]
    assert f"{100 * rate:.1f}%" in html
    assert "/api/stats/plots/edit_distance_by_radpeer.png" in html
    assert "SYNTHETIC^BENCH" not in html
    png = client.get("/api/stats/plots/edit_distance_by_radpeer.png")
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    svg = client.get("/api/stats/plots/draft_accuracy.svg")
    assert b"<svg" in svg.content[:500]


def test_cached_label_tables_follow_new_confirmations(api_as, role_user):  # type: ignore[no-untyped-def]
    from reviewer.services.labels import confirm_labels

    made = populate(10, seed=4)
    client = api_as("researcher")

    def confirmed() -> int:
        body = client.get("/api/stats/").json()
        return next(r for r in body["label_agreement"] if r["condition"] == "hemangioma")["n_confirmations"]

    before = confirmed()
    assert confirmed() == before  # served from the cache
    extraction = LabelExtraction.objects.filter(source="signed_report", confirmations__isnull=True).first()
    confirm_labels(extraction=extraction, annotator=made["annotators"][1], labels=dict.fromkeys(CONDITION_KEYS, 0))
    assert confirmed() == before + 1


def test_draft_accuracy_with_all_findings_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    from reviewer.models import Finding

    populate(40, seed=6)
    table = {(r["condition"], r["scope"]): r for r in stats.draft_accuracy()}
    for key in ("canal_stenosis", "disc_herniation", "hemangioma"):
        truth, score, pred_pairs = [], [], []
        for review in Review.objects.select_related("signed_revision", "draft"):
            ref = LabelExtraction.objects.get(revision=review.signed_revision, source="signed_report").labels[key]
            hyp = LabelExtraction.objects.get(study=review.study, source="draft").labels[key]
            if ref in (0, 1):
                truth.append(ref)
                score.append(Finding.objects.get(draft=review.draft, condition=key).probability)
                if hyp in (0, 1):
                    pred_pairs.append((ref, hyp))
        row = table[(key, "all")]
        if len(set(truth)) == 2:
            assert row["auroc"] == pytest.approx(roc_auc_score(truth, score))
        tp = sum(1 for r, h in pred_pairs if r == 1 and h == 1)
        assert (row["n"], row["tp"]) == (len(pred_pairs), tp)


def test_researchers_see_no_study_rows_on_the_worklist(client, role_user):  # type: ignore[no-untyped-def]
    populate(3, seed=7)
    study = Review.objects.select_related("study").first().study
    client.force_login(role_user("researcher"))
    for url in ("/", f"/?q={study.study_uid}", "/?status=signed&page=1"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == "/statistics/", url
    page = client.get("/", follow=True).content.decode()
    for identity in (study.study_uid, study.patient_name, study.patient_id, study.description):
        assert identity not in page
    client.force_login(role_user("radiologist"))  # readers keep their worklist
    assert study.study_uid in client.get("/").content.decode()


def test_the_pages_reader_keys_are_the_exports_and_the_apis(client, role_user, api_as):  # type: ignore[no-untyped-def]
    import csv
    import io

    populate(15, seed=8)
    client.force_login(role_user("researcher"))
    response = client.get("/statistics/")
    on_page = {row["name"] for row in response.context["by_reader"]}
    html = response.content.decode()
    researcher = api_as("researcher")
    export = researcher.get("/api/exports/reviews.csv")
    in_export = {row["reader_key"] for row in csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))}
    assert len(on_page) == 5
    assert on_page == in_export
    assert on_page == set(researcher.get("/api/stats/").json()["radpeer_by_reader"])
    assert all(key in html for key in on_page)
    assert "reader0" not in html  # no usernames
    client.force_login(role_user("admin"))  # admins see the names
    assert {row["name"] for row in client.get("/statistics/").context["by_reader"]} == {f"reader{i}" for i in range(5)}


def test_reviews_visible_to_follows_the_api_policy(role_user):  # type: ignore[no-untyped-def]
    from reviewer import selectors

    made = populate(6, seed=9)
    assert selectors.reviews_visible_to(role_user("researcher")).count() == 0
    assert selectors.reviews_visible_to(role_user("annotator")).count() == 0
    assert selectors.reviews_visible_to(role_user("admin")).count() == 6
    reader = made["readers"][1]
    assert set(selectors.reviews_visible_to(reader).values_list("reader_id", flat=True)) == {reader.pk}
