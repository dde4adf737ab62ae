"""Server-rendered annotation pages: the queue of label extractions to confirm (active-learning
order, ``reviewer.selectors.annotation_queue``) and the confirmation form of one extraction, whose
save goes through ``reviewer.services.labels``. Annotators only; the layout and navigation are
those of the other pages (``reviewer.pages.render_page``)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods

from ml.conditions import CONDITION_KEYS, CONDITIONS
from reviewer import selectors
from reviewer.models import LabelConfirmation, LabelExtraction
from reviewer.pages import PAGE_SIZE, render_page
from reviewer.permissions import role_required
from reviewer.research.metrics import split_sections
from reviewer.roles import Role
from reviewer.services import labels

A = Role.ANNOTATOR


def _queue_params(request: HttpRequest) -> tuple[str, int]:
    strategy = request.GET.get("strategy") or request.POST.get("strategy") or "uncertain"
    strategy = strategy if strategy in selectors.STRATEGIES else "uncertain"
    try:
        seed = int(request.GET.get("seed") or request.POST.get("seed") or 0)
    except ValueError:
        seed = 0
    return strategy, seed


@role_required(A)
def label_queue(request: HttpRequest) -> HttpResponse:
    strategy, seed = _queue_params(request)
    ids = selectors.annotation_queue(annotator=request.user, strategy=strategy, seed=seed, limit=PAGE_SIZE)
    found = {e.pk: e for e in LabelExtraction.objects.filter(pk__in=ids).select_related("study")}
    items = []
    for pk in ids:
        e = found[pk]
        flagged = sum(1 for v in e.labels.values() if v != 0)
        impression = split_sections(e.report_text).get("impression", "")
        items.append(
            {"extraction": e, "impression": impression, "excerpt": impression or e.report_text,
             "min_confidence": selectors.min_confidence(e.confidence), "flagged": flagged}
        )  # fmt: skip
    done = LabelConfirmation.objects.filter(annotator=request.user).count()
    return render_page(
        request,
        "reviewer/label_queue.html",
        {"items": items, "strategy": strategy, "seed": seed, "strategies": selectors.STRATEGIES, "done": done,
         "query": urlencode({"strategy": strategy, "seed": seed})},
    )  # fmt: skip


@role_required(A)
@require_http_methods(["GET", "POST"])
def label_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    extraction = get_object_or_404(LabelExtraction.objects.filter(source__in=selectors.ANNOTATED_SOURCES), pk=pk)
    strategy, seed = _queue_params(request)
    mine = LabelConfirmation.objects.filter(extraction=extraction, annotator=request.user).first()
    errors = ""
    if request.method == "POST":
        submitted = {k: request.POST[f"label_{k}"] for k in CONDITION_KEYS if request.POST.get(f"label_{k}", "") != ""}
        try:
            labels.confirm_labels(
                extraction=extraction, annotator=request.user, labels=submitted, comment=request.POST.get("comment", "")
            )
            messages.success(request, "Labels saved.")
            nxt = selectors.annotation_queue(annotator=request.user, strategy=strategy, seed=seed, limit=1)
            query = urlencode({"strategy": strategy, "seed": seed})
            if nxt:
                return redirect(f"/labels/{nxt[0]}/?{query}")
            return redirect(f"/labels/?{query}")
        except ValidationError as exc:
            errors = "; ".join(exc.messages)
        current = submitted
    else:
        current = mine.labels if mine else extraction.labels
    rows = []
    for c in CONDITIONS:
        rows.append(
            {
                "key": c.key,
                "name": c.name,
                "category": c.category,
                "extracted": extraction.labels.get(c.key),
                "confidence": extraction.confidence.get(c.key),
                "evidence": extraction.evidence.get(c.key, ""),
                "value": str(current.get(c.key, "")),
            }
        )
    return render_page(
        request,
        "reviewer/label_confirm.html",
        {
            "extraction": extraction,
            "segments": labels.highlight(extraction.report_text, extraction.evidence),
            "rows": rows,
            "mine": mine,
            "errors": errors,
            "strategy": strategy,
            "seed": seed,
            "choices": ((1, "present"), (0, "absent"), (-1, "uncertain")),
        },
        status=400 if errors else 200,
    )
