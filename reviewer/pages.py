"""Server-rendered pages (the worklist). The review itself happens in OHIF."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from reviewer import selectors
from reviewer.models import Study
from reviewer.roles import Role, has_role


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    qs = selectors.study_list().order_by("-created_at")
    status = request.GET.get("status", "")
    if status in Study.Status.values:
        qs = qs.filter(status=status)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "reviewer/worklist.html",
        {
            "page": page,
            "statuses": Study.Status.choices,
            "status": status,
            "show_identity": has_role(request.user, Role.ADMIN),
        },
    )
