"""Which pipeline drafts: the admin-activated model version, or the deployment's default.

Why a read of its own: asking for a draft and computing one both need the same answer, and the
worker must see the version an admin activated since the job was queued."""

from __future__ import annotations

from django.conf import settings

from reviewer.models import ModelVersion


def active_pipeline() -> tuple[str, ModelVersion | None]:
    """The pipeline version new drafts use: the admin-activated ModelVersion if any."""
    active = ModelVersion.objects.filter(is_active=True).first()
    return (active.key, active) if active else (settings.DRAFT_PIPELINE_VERSION, None)
