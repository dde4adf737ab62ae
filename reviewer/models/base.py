"""The abstract base of the rows that may be created but never edited."""

from __future__ import annotations

from django.db import models


class ImmutableModel(models.Model):
    """A row that may be created but never updated (drafts, revisions, audit events)."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError(f"{type(self).__name__} rows are immutable; create a new one instead")
        super().save(*args, **kwargs)
