from django.apps import AppConfig


class ReviewerConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "reviewer"
    verbose_name = "Spine review"

    def ready(self) -> None:
        from reviewer import accounts  # noqa: F401  (connects the sign-out receiver)
        from reviewer.devserver import enable_tcp_nodelay
        from reviewer.integrations.dicomweb_access import connect_signals

        enable_tcp_nodelay()
        connect_signals()
