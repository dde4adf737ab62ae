"""OpenAPI generation (drf-spectacular) for the API's style of nested serializers.

Every endpoint names its serializers ``InputSerializer`` / ``OutputSerializer`` inside its API
class, so the class name alone would give every component the name ``Input`` or ``Output`` (and
the schema a collision warning). A nested serializer is named after its API class instead:
``FindingFeedbackApi.OutputSerializer`` -> ``FindingFeedbackOutput``. ``Meta.ref_name`` still
wins where a component keeps an older name."""

from __future__ import annotations

from typing import Literal

from drf_spectacular import openapi
from rest_framework.serializers import BaseSerializer


class AutoSchema(openapi.AutoSchema):
    def get_serializer_name(self, serializer: BaseSerializer, direction: Literal["request", "response"]) -> str:
        cls = serializer.__class__
        outer, _, inner = cls.__qualname__.rpartition(".")
        if not outer or "<locals>" in outer:
            return super().get_serializer_name(serializer, direction)
        return outer.rpartition(".")[2].removesuffix("Api") + inner
