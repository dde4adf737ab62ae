from __future__ import annotations

from typing import Any

from django.db import models

from reviewer.models import AuditEvent


def audit(*, actor: Any, action: str, obj: models.Model | None = None, **data: Any) -> AuditEvent:
    """Append one audit event. ``actor`` may be None for system actions (watcher, worker)."""
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        data=data,
    )
