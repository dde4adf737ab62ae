"""List endpoints: filtering, ordering and one page of results, the same for every list.

A list API declares what may be asked of it as class attributes, which both this helper and the
OpenAPI schema read:

- ``filterset_class`` or ``filterset_fields``: django-filter query parameters (bad values: 400);
- ``ordering_fields``: the ``?ordering=`` names (``-name`` for descending);
- ``queryset = Model.objects.none()``: only names the model for the schema (filter types, id
  descriptions); the rows always come from a selector.

and its ``get`` passes the selector's queryset to ``paginated_response``. Pages are DRF's
``PageNumberPagination`` (``?page=``, ``PAGE_SIZE`` from the settings):
``{"count", "next", "previous", "results"}``."""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

FILTER_BACKENDS = [DjangoFilterBackend, OrderingFilter]


class ListApi(APIView):
    """Base of the list endpoints: the filter backends and pagination they declare to the schema."""

    filter_backends = FILTER_BACKENDS
    pagination_class = PageNumberPagination
    ordering_fields: list[str] = ["id"]  # each list names its own


def _filter_queryset(*, request: Request, view: APIView, queryset: QuerySet) -> QuerySet:
    """The query's filters and ordering applied to ``queryset``."""
    for backend in FILTER_BACKENDS:
        queryset = backend().filter_queryset(request, queryset, view)
    return queryset


def paginated_response(
    *, request: Request, view: ListApi, queryset: QuerySet, serializer_class: type[BaseSerializer]
) -> Response:
    """One page of ``queryset``, filtered and ordered as the request asks."""
    queryset = _filter_queryset(request=request, view=view, queryset=queryset)
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context={"request": request}).data
    return paginator.get_paginated_response(data)
