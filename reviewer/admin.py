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

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Outgoing messages of signed reports: what was sent where, what failed and why."""

    list_display = ("created_at", "study", "kind", "destination", "state", "attempts", "next_attempt_at", "sent_at")
    list_filter = ("state", "kind", "destination")
    search_fields = ("study__study_uid", "destination", "last_error")
    readonly_fields = [f.name for f in models.OutboxMessage._meta.fields]
    actions = ["resend_messages"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Re-send the selected messages now")
    def resend_messages(self, request, queryset) -> None:
        from reviewer.integrations.outbox import resend

        n = resend(message_ids=list(queryset.values_list("pk", flat=True)), actor=request.user)
        self.message_user(request, f"{n} message(s) queued to be sent again.")
