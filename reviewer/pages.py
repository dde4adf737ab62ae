"""Server-rendered pages: worklist and reader assignment, arbitration queue, statistics (the
annotation pages are ``reviewer.label_pages``). The reading itself happens in OHIF
(``/viewer/open/<study_uid>/``).

Role rules are those of the API (``reviewer.permissions.role_required`` on every page) and
blinding follows ``reviewer.selectors.blinding``. Patient identities and reader
names are rendered for admins only.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.functional import cached_property
from django.views.decorators.http import require_http_methods

from ml.conditions import BY_KEY, CONDITION_KEYS, CONDITIONS
from reviewer import selectors
from reviewer.models import Review, Study
from reviewer.permissions import role_required
from reviewer.research import exports, plots, stats
from reviewer.roles import Role, has_role, roles_of
from reviewer.services import workflow

R, A, S = Role.RADIOLOGIST, Role.ANNOTATOR, Role.RESEARCHER
PAGE_SIZE = 50


def render_page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    """A page with the navigation its user's roles allow (every page renders through here)."""
    roles = roles_of(request.user)
    nav = {
        "is_admin": Role.ADMIN in roles,
        "can_annotate": bool(roles & {A, Role.ADMIN}),
        "can_arbitrate": bool(roles & {R, Role.ADMIN}),
        "can_see_stats": bool(roles & {S, Role.ADMIN}),
    }
    return render(request, template, {**context, "nav": nav}, status=status)


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


# --- worklist and assignment --------------------------------------------------------------


class CountedPaginator(Paginator):
    """A paginator told how many objects there are, for a list whose count is known from a
    query the page runs anyway (counting 100,000 filtered studies again costs as much)."""

    def __init__(self, object_list: QuerySet, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


SORT_LABELS = (
    ("priority", "Reading priority"),
    ("received", "Received, newest first"),
    ("oldest", "Received, oldest first"),
)


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    """Studies with their status and readers, set up for a reading shift: sorted by reading
    priority (what waits for the reader, urgent AI findings first, oldest received first — the
    viewer's "next study" order) or by received time, filtered by assignment, status, study date,
    text and an AI finding called present, with the number of studies per status. Not for
    researchers: a study row carries its UID, description and dates, and researchers must see no
    identity anywhere; they work from the pseudonymised statistics, so a researcher (without a
    reading, annotating or admin role) is sent there."""
    user = request.user
    if has_role(user, S) and not has_role(user, R, A, Role.ADMIN):
        return redirect("statistics")
    status = request.GET.get("status", "")
    status = status if status in Study.Status.values else ""
    mine = request.GET.get("mine") == "1"
    date_from, date_to = _date(request.GET.get("from")), _date(request.GET.get("to"))
    q = request.GET.get("q", "").strip()[:100]
    finding = request.GET.get("finding", "")
    finding = finding if finding in CONDITION_KEYS else ""
    sort = request.GET.get("sort", "")
    sort = sort if sort in selectors.WORKLIST_SORTS else ("priority" if has_role(user, R) else "received")
    scope = {"user": user, "mine": mine, "date_from": date_from, "date_to": date_to, "q": q, "finding": finding}
    counts = selectors.worklist_status_counts(**scope)
    qs = selectors.worklist(status=status, sort=sort, **scope)
    # the status counts already say how many studies the filters keep: no second count
    paginator = CountedPaginator(qs, PAGE_SIZE, count=counts.get(status, 0) if status else sum(counts.values()))
    page = paginator.get_page(request.GET.get("page"))
    page.object_list = selectors.worklist_rows(page.object_list, finding=finding)
    is_admin = has_role(user, Role.ADMIN)
    rows = []
    for study in page:
        job = study.jobs_newest_first[0] if study.jobs_newest_first else None
        readers = [a.reader for a in study.assignments.all()]
        rows.append(
            {
                "study": study,
                "job": job,
                "reason": study.status_reason or (job.reason if job and job.state == "failed" else ""),
                "readers": readers,
                "assigned_to_me": any(r.pk == user.pk for r in readers),
                "urgent": BY_KEY[study.urgent_condition].name if study.urgent_condition else "",
            }
        )
    filters = {"status": status, "mine": "1" if mine else "", "from": request.GET.get("from", ""),
               "to": request.GET.get("to", ""), "q": q, "finding": finding, "sort": sort}  # fmt: skip
    unfiltered = {k: v for k, v in filters.items() if v and k != "status"}
    status_chips = [
        {"value": value, "label": label, "n": counts.get(value, 0), "active": value == status,
         "query": urlencode({**unfiltered, "status": value})}
        for value, label in Study.Status.choices
    ]  # fmt: skip
    return render_page(
        request,
        "reviewer/worklist.html",
        {
            "page": page,
            "rows": rows,
            "statuses": Study.Status.choices,
            "status_chips": status_chips,
            "all_count": sum(counts.values()),
            "all_query": urlencode(unfiltered),
            "conditions": CONDITIONS,
            "finding_name": BY_KEY[finding].name if finding else "",
            "sorts": SORT_LABELS,
            "filters": filters,
            "query": urlencode({k: v for k, v in filters.items() if v}),
            "filtered": any(v for k, v in filters.items() if k != "sort"),
            "show_identity": is_admin,
            "is_reader": has_role(user, R),
            "can_read": has_role(user, R, Role.ADMIN),
        },
    )


@role_required()  # admins only
@require_http_methods(["POST"])
def force_draft(request: HttpRequest, pk: int) -> HttpResponse:
    """Draft a study the scope check refused (the worklist's "Draft anyway", confirmed in the
    browser first): an admin judged that it is a spine MRI worth a draft after all."""
    from reviewer.services.audit import audit
    from reviewer.services.drafting import request_draft

    study = get_object_or_404(Study, pk=pk)
    if study.status != Study.Status.OUT_OF_SCOPE:
        messages.error(request, f"Study {study.study_uid} is not refused by the scope check.")
        return redirect("worklist")
    job, created = request_draft(study=study, retry_failed=True, force_scope=True)
    audit(actor=request.user, action="draft.requested", obj=study, job=job.pk, created=created, force_scope=True)
    messages.success(
        request, f"Draft queued for {study.description or study.study_uid} despite: {study.status_reason}."
    )
    return redirect("worklist")


@role_required()  # admins only
@require_http_methods(["GET", "POST"])
def assign(request: HttpRequest, pk: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=pk)
    if request.method == "POST":
        try:
            if "unassign" in request.POST:
                workflow.unassign_reader(study=study, reader_id=int(request.POST["unassign"]), actor=request.user)
            else:
                workflow.set_blinding(study=study, blinded=request.POST.get("blinded") == "on", actor=request.user)
                ids = [int(i) for i in request.POST.getlist("readers")]
                if ids:
                    workflow.assign_readers(study=study, reader_ids=ids, assigned_by=request.user)
            messages.success(request, "Assignment saved.")
            return redirect("study-assign", pk=study.pk)
        except (ValidationError, ValueError) as exc:
            messages.error(request, "; ".join(getattr(exc, "messages", [str(exc)])))
    assigned = list(study.assignments.select_related("reader").order_by("created_at"))
    signed = set(study.reviews.filter(signed_at__isnull=False).values_list("reader_id", flat=True))
    assigned_ids = {a.reader_id for a in assigned}
    return render_page(
        request,
        "reviewer/assign.html",
        {
            "study": study,
            "assigned": [(a, a.reader_id in signed) for a in assigned],
            "candidates": [u for u in selectors.radiologists() if u.pk not in assigned_ids],
        },
    )


# --- arbitration ---------------------------------------------------------------------------


@role_required(R)
def arbitration_queue(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "open")
    state = state if state in ("open", "resolved", "") else "open"
    page = Paginator(selectors.arbitrations_for(request.user, state=state), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "state": state, "is_admin": has_role(request.user, Role.ADMIN)}
    return render_page(request, "reviewer/arbitration_queue.html", context)


@role_required(R)
@require_http_methods(["GET", "POST"])
def arbitration_detail(request: HttpRequest, pk: int) -> HttpResponse:
    arbitration = get_object_or_404(selectors.arbitrations_for(request.user, state=""), pk=pk)
    if request.method == "POST":
        try:
            workflow.resolve_arbitration(
                arbitration_id=arbitration.pk, arbiter=request.user,
                decision=request.POST.get("decision", ""), comment=request.POST.get("comment", ""),
            )  # fmt: skip
            messages.success(request, "Arbitration resolved.")
            return redirect("arbitration-queue")
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        except PermissionDenied as exc:
            messages.error(request, str(exc))
    review = arbitration.review
    draft = review.draft
    return render_page(
        request,
        "reviewer/arbitration_detail.html",
        {
            "arbitration": arbitration,
            "review": review,
            "draft_text": draft.text if draft else "",
            "signed_text": review.signed_revision.text if review.signed_revision else "",
            "choices": Review.Radpeer.choices,
            "is_admin": has_role(request.user, Role.ADMIN),
        },
    )


# --- statistics ----------------------------------------------------------------------------


def _fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _dist_rows(groups: dict[str, dict]) -> list[dict]:
    return [
        {
            "name": name.replace("_", " "),
            "n": g["n"],
            "cells": [(g["counts"][sc], _fmt_rate(g["share"][sc])) for sc in stats.RADPEER_SCORES],
            "discrepancy": _fmt_rate(g["discrepancy_rate"]),
            "significant": _fmt_rate(g["significant_rate"]),
        }
        for name, g in groups.items()
    ]


@role_required(S)
def statistics(request: HttpRequest) -> HttpResponse:
    is_admin = has_role(request.user, Role.ADMIN)
    # reader names are identities: others see the readers' keys, the ``reader_key`` of the
    # exports and of /api/stats/, so the page, the API and the files can be related
    data = stats.overview(reader_keys=not is_admin)
    by_reader = data["radpeer_by_reader"]
    edit = data["edit_distance"]
    edit_rows = [{"score": s, **{k: edit[k][s] for k in stats.DISTANCE_KEYS}} for s in (*stats.RADPEER_SCORES, "all")]
    return render_page(
        request,
        "reviewer/statistics.html",
        {
            "d": data,
            "overall": data["radpeer"],
            "discrepancy": _fmt_rate(data["radpeer"]["discrepancy_rate"]),
            "significant": _fmt_rate(data["radpeer"]["significant_rate"]),
            "scores": stats.RADPEER_SCORES,
            "dist_overall": _dist_rows({"all reviews": data["radpeer"]}),
            "by_model": _dist_rows(data["radpeer_by_model"]),
            "by_reader": _dist_rows(by_reader),
            "by_scope": _dist_rows(data["radpeer_by_scope"]),
            "edit_rows": edit_rows,
            "agreement": data["label_agreement"],
            "accuracy": [
                {**r, "scope": r["scope"].replace("_", " ")} for r in data["draft_accuracy"] if r["scope"] != "all"
            ],
            "plots": [(name, name.replace("_", " ")) for name in plots.PLOTS],
            "tables": list(exports.TABLES),
            "is_admin": is_admin,
        },
    )


# --- reading-room statistics (finding verdicts and reading time) -----------------------------


def _fmt_seconds(x: float | None) -> str:
    if x is None:
        return "—"
    whole = round(x)
    return f"{whole // 60}:{whole % 60:02d}"


@role_required(S)
def reading_statistics(request: HttpRequest) -> HttpResponse:
    """Per-condition agreement of the readers with the AI's findings (current verdicts, optionally
    of one model version) and active reading time by model version and RADPEER score: what the
    reading room records, kept apart from the review statistics (its own section template,
    ``reviewer/_reading_statistics.html``). Pseudonymous like the statistics page: no reader, no
    study, only aggregates."""
    from reviewer.models import ModelVersion
    from reviewer.research.reading import iter_reading_rows, reading_time_summary

    versions = [mv.key for mv in ModelVersion.objects.order_by("name", "version")]
    model_version = request.GET.get("model_version", "")
    model_version = model_version if model_version in versions else ""
    agreement = [
        {**a.to_dict(), "name": BY_KEY[a.condition].name, "share": _fmt_rate(a.agreement)}
        for a in selectors.agreement_by_condition(model_version or None)
    ]
    reading = reading_time_summary(iter_reading_rows())
    for rows in reading.values():
        for r in rows:
            r.update(median=_fmt_seconds(r["median_seconds"]), mean=_fmt_seconds(r["mean_seconds"]),
                     accepted_rate=_fmt_rate(r["accepted_share"]))  # fmt: skip
    return render_page(
        request,
        "reviewer/reading_statistics.html",
        {"agreement": agreement, "reading": reading, "versions": versions, "model_version": model_version,
         "judged": sum(a["n"] for a in agreement)},
    )  # fmt: skip
