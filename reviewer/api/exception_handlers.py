"""The API's one exception handler (DRF ``EXCEPTION_HANDLER``): service exceptions become JSON.

Views call services and let their exceptions travel; this module is the single place that says
which status each one answers with, so no view catches, translates or re-raises them:

- Django ``ValidationError`` (services validate their input): 400 with the field dict
  (``{"field": ["message"]}``) or, for a message without a field, the list of messages;
- Django ``PermissionDenied`` and ``Http404``: DRF's own 403 / 404 ``{"detail": ...}``;
- ``reports.ReportSigned``: 409 ``{"detail", "signed": true}`` (only an addendum is accepted);
- ``reports.RevisionConflict``: 409 with the revision saved as a conflict and the current head,
  so the client can show both;
- ``sr_dataset.SRInputError``: 400 ``{"detail"}`` (a box set that cannot be encoded);
- ``OrthancUnavailable``: 503 ``{"detail"}`` (the image store did not answer; nothing saved).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from reviewer.integrations.orthanc import OrthancUnavailable
from reviewer.services import reports


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer ``exc`` as JSON, or None to let Django turn it into a 500."""
    if isinstance(exc, reports.RevisionConflict):
        return _revision_conflict(exc)
    if isinstance(exc, reports.ReportSigned):
        return Response({"detail": str(exc), "signed": True}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, OrthancUnavailable):
        return Response({"detail": f"image store unavailable, nothing saved: {exc}"}, status=503)
    if _is_sr_input_error(exc):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    return exception_handler(exc, context)


def _revision_conflict(conflict: reports.RevisionConflict) -> Response:
    """The conflicting save was committed on purpose (the reader's text is kept), so this answer
    leaves the transaction alone, unlike DRF's handler, which would mark it for rollback."""
    from reviewer.api.serializers import RevisionSerializer

    return Response(
        {
            "detail": "Someone saved this report meanwhile. Your text is kept as a conflicting "
            "revision; merge it into the current one and save again.",
            "saved": RevisionSerializer(conflict.saved).data,
            "head": RevisionSerializer(conflict.head).data if conflict.head else None,
        },
        status=status.HTTP_409_CONFLICT,
    )


def _is_sr_input_error(exc: Exception) -> bool:
    """``reviewer.integrations.sr_dataset`` imports highdicom, so it is imported only when a box set
    is saved; if it was never imported, no exception can come from it."""
    sr = sys.modules.get("reviewer.integrations.sr_dataset")
    return sr is not None and isinstance(exc, sr.SRInputError)
