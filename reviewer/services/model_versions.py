"""Drafting pipeline versions: registered, edited and removed by admins; exactly one is active."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from reviewer.models import ModelVersion
from reviewer.services.audit import audit


@transaction.atomic
def create_model_version(**fields: Any) -> ModelVersion:
    """A new version from validated fields (``name``, ``version``, ``artifact_uri`` ...)."""
    return ModelVersion.objects.create(**fields)


@transaction.atomic
def update_model_version(*, version: ModelVersion, **fields: Any) -> ModelVersion:
    """Change the given fields of ``version`` (a partial update names only some)."""
    for name, value in fields.items():
        setattr(version, name, value)
    version.save()
    return version


@transaction.atomic
def delete_model_version(*, version: ModelVersion) -> None:
    """Remove a version; drafts made with it protect it (the database refuses)."""
    version.delete()


@transaction.atomic
def activate_model_version(*, version_id: int, actor: Any) -> ModelVersion:
    """Make one version the active one (new drafts use it) and deactivate the others; the row
    lock serialises two admins activating at once, so exactly one stays active."""
    version = ModelVersion.objects.select_for_update().get(pk=version_id)
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    version.is_active = True
    version.save(update_fields=["is_active"])
    audit(actor=actor, action="model.activated", obj=version)
    return version
