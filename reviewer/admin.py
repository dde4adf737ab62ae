from django.contrib import admin

from reviewer import models


@admin.register(models.Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("study_uid", "patient_id", "study_date", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("study_uid", "patient_id", "accession_number")


@admin.register(models.Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = (
        "series_uid",
        "description",
        "sequence_class",
        "sequence_subtype",
        "plane",
        "instance_count",
    )
    list_filter = ("sequence_class", "plane")


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "is_active", "created_at")


@admin.register(models.DraftJob)
class DraftJobAdmin(admin.ModelAdmin):
    list_display = ("study", "pipeline_version", "state", "attempts", "queued_at", "finished_at")
    list_filter = ("state",)


@admin.register(models.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "action", "object_type", "object_id")
    list_filter = ("action",)

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
