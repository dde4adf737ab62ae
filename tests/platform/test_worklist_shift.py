"""The worklist of a reading shift: reading-priority order (what waits for the reader, urgent AI
findings of the newest draft first, oldest received first), received-time order, filters by
assignment, status and an AI finding called present, counts per status, and the viewer's "next
study" walking the same order."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from reviewer.models import Assignment, DraftJob, Study
from tests.factories import DraftFactory, DraftJobFactory, FindingFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = timezone.now() - dt.timedelta(days=1)


def _study(name: str, *, minutes: int, status: str = "draft_ready", findings: tuple = ()) -> Study:  # type: ignore[type-arg]
    """A study received ``minutes`` after T0 with one draft whose findings are (condition,
    probability, present)."""
    draft = DraftFactory(study__description=name, study__status=status)
    for condition, probability, present in findings:
        FindingFactory(draft=draft, condition=condition, probability=probability, present=present)
    Study.objects.filter(pk=draft.study.pk).update(created_at=T0 + dt.timedelta(minutes=minutes))
    return Study.objects.get(pk=draft.study.pk)


@pytest.fixture
def shift():  # type: ignore[no-untyped-def]
    reader = UserFactory(role="radiologist")
    studies = {
        "routine old": _study("routine old", minutes=0, findings=(("disc_herniation", 0.9, True),)),
        "fracture new": _study("fracture new", minutes=30, findings=(("acute_fracture", 0.81, True),)),
        # called absent: a low fracture probability is no reason to read it first
        "fracture absent": _study("fracture absent", minutes=10, findings=(("acute_fracture", 0.3, False),)),
        "lesion": _study("lesion", minutes=20, status="in_review", findings=(("osseous_lesion", 0.7, True),)),
        "signed": _study("signed", minutes=-60, status="signed"),
        "pending": _study("pending", minutes=-30, status="awaiting_draft"),
    }
    # a newer draft (another pipeline) no longer calls the fracture: the newest draft counts
    revised = _study("fracture revised", minutes=5, findings=(("acute_fracture", 0.95, True),))
    job = DraftJobFactory(study=revised, pipeline_version="other-pipeline@2", state=DraftJob.State.DONE)
    newer = DraftFactory(study=revised, job=job)
    FindingFactory(draft=newer, condition="acute_fracture", probability=0.2, present=False)
    studies["fracture revised"] = revised
    # the reader has already signed one waiting study (another reader has not)
    signed_by_me = _study("signed by me", minutes=-10, status="in_review", findings=(("acute_fracture", 0.9, True),))
    signed_by_me.reviews.create(reader=reader, signed_at=timezone.now(), radpeer="1")
    studies["signed by me"] = signed_by_me
    for name in ("fracture new", "routine old", "signed by me"):
        Assignment.objects.create(study=studies[name], reader=reader)
    return reader, studies


READING_ORDER = [
    "lesion",  # urgent, received before the other urgent one
    "fracture new",
    "routine old",
    "fracture revised",  # its newest draft calls no fracture
    "fracture absent",
    # nothing to read for this reader, in the same order
    "signed by me",
    "signed",
    "pending",
]


def _names(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.description for s in response.context["page"]]


def test_a_readers_worklist_is_in_reading_priority_by_default(shift, client):  # type: ignore[no-untyped-def]
    reader, _ = shift
    client.force_login(reader)
    response = client.get("/")
    assert _names(response) == READING_ORDER
    assert _names(client.get("/", {"sort": "priority"})) == READING_ORDER
    html = response.content.decode()
    assert html.count('class="tag tag-urgent"') == 3  # lesion, the new fracture, the one signed: not the others
    assert "Acute vertebral fracture" in html
    assert "Suspicious osseous lesion" in html


def test_received_time_sorts_both_ways_and_admins_default_to_newest_first(shift, client, role_user):  # type: ignore[no-untyped-def]
    reader, studies = shift
    by_time = sorted(studies, key=lambda n: (studies[n].created_at, studies[n].pk))
    client.force_login(reader)
    assert _names(client.get("/", {"sort": "received"})) == by_time[::-1]
    assert _names(client.get("/", {"sort": "oldest"})) == by_time
    assert _names(client.get("/", {"sort": "nonsense"})) == READING_ORDER  # unknown: the default
    client.force_login(role_user("admin"))
    assert _names(client.get("/")) == by_time[::-1]


def test_filter_by_ai_finding_keeps_studies_whose_newest_draft_calls_it_present(shift, client):  # type: ignore[no-untyped-def]
    reader, _ = shift
    client.force_login(reader)
    response = client.get("/", {"finding": "acute_fracture", "sort": "priority"})
    assert _names(response) == ["fracture new", "signed by me"]
    assert [s.finding_probability for s in response.context["page"]] == [0.81, 0.9]
    html = response.content.decode()
    assert '<option value="acute_fracture" selected>' in html
    assert '<td class="nowrap probability">0.81</td>' in html
    assert _names(client.get("/", {"finding": "not_a_condition"})) == READING_ORDER  # ignored


def test_filters_combine_and_status_counts_follow_every_other_filter(shift, client):  # type: ignore[no-untyped-def]
    reader, _ = shift
    client.force_login(reader)
    response = client.get("/")
    counts = {c["value"]: c["n"] for c in response.context["status_chips"]}
    assert counts == {"awaiting_draft": 1, "drafting": 0, "draft_ready": 4, "in_review": 2, "signed": 1,
                      "failed": 0, "out_of_scope": 0, "not_applicable": 0}  # fmt: skip
    assert response.context["all_count"] == 8
    mine = client.get("/", {"mine": "1", "status": "draft_ready"})
    assert _names(mine) == ["fracture new", "routine old"]
    chips = {c["value"]: c for c in mine.context["status_chips"]}
    # counts under "mine" alone (the status filter is what the chips choose)
    assert (chips["draft_ready"]["n"], chips["in_review"]["n"], chips["signed"]["n"]) == (2, 1, 0)
    assert chips["draft_ready"]["active"]
    assert not chips["in_review"]["active"]
    assert chips["in_review"]["query"] == "mine=1&sort=priority&status=in_review"
    html = mine.content.decode()
    assert 'data-status="in_review">In review <b>1</b></a>' in html
    assert _names(client.get("/", {"mine": "1", "finding": "acute_fracture"})) == ["fracture new", "signed by me"]


def test_next_study_walks_the_worklists_reading_order(shift, api_as):  # type: ignore[no-untyped-def]
    reader, studies = shift
    client = api_as(None)
    client.force_login(reader)
    walked, after = [], None
    while True:
        response = client.get("/api/viewer/next-study/", {"after": after} if after else {})
        if response.status_code == 404:
            break
        walked.append(next(n for n, s in studies.items() if s.pk == response.json()["id"]))
        after = response.json()["id"]
        assert len(walked) < 10
    assert walked == READING_ORDER[:5]  # the studies waiting for this reader, in the worklist's order
    # after signing the current study, "next" goes on from where it stood in the order
    studies["fracture new"].reviews.create(reader=reader, signed_at=timezone.now(), radpeer="1")
    after_signed = client.get("/api/viewer/next-study/", {"after": studies["fracture new"].pk}).json()
    assert after_signed["id"] == studies["routine old"].pk
    # a study outside the waiting list (here: one not drafted yet) is placed by its received time
    from_pending = client.get("/api/viewer/next-study/", {"after": studies["pending"].pk}).json()
    assert from_pending["id"] == studies["routine old"].pk


def test_worklist_query_count_stays_flat_with_filters(shift, client, django_assert_max_num_queries):  # type: ignore[no-untyped-def]
    reader, _ = shift
    for _ in range(20):
        FindingFactory(condition="acute_fracture", draft__study__status="draft_ready")
    client.force_login(reader)
    with django_assert_max_num_queries(9):
        response = client.get("/", {"finding": "acute_fracture", "sort": "priority"})
    assert len(response.context["page"]) == 22


def test_pages_are_cut_in_the_database_and_counted_from_the_status_chips(shift, client):  # type: ignore[no-untyped-def]
    """More studies than one page: the pages together are the whole list in order, each study
    once, and the count the page shows is the count of the filtered studies."""
    reader, _ = shift
    Study.objects.bulk_create(
        [Study(study_uid=f"2.25.{i}", orthanc_id=f"bulk-{i}", description=f"bulk {i}", status="signed")
         for i in range(55)]
    )  # fmt: skip
    client.force_login(reader)
    expected = list(Study.objects.order_by("-created_at", "-id").values_list("description", flat=True))
    first = client.get("/", {"sort": "received"})
    second = client.get("/", {"sort": "received", "page": "2"})
    assert _names(first) + _names(second) == expected
    assert first.context["page"].paginator.count == len(expected) == 63
    assert [len(first.context["page"]), len(second.context["page"])] == [50, 13]
    signed = client.get("/", {"status": "signed", "sort": "received", "page": "2"})
    assert signed.context["page"].paginator.count == 56
    assert _names(signed) == [d for d in expected if d.startswith("bulk") or d == "signed"][50:]
    # reading priority over the pages: the waiting studies first, as on a single page
    pages = [_names(client.get("/", {"page": p})) for p in ("1", "2")]
    assert pages[0][:5] == READING_ORDER[:5]
    assert sorted(pages[0] + pages[1]) == sorted(expected)
