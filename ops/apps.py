from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self):
        from events.signals import event_committed

        from .metrics import count_event

        event_committed.connect(count_event, dispatch_uid="ops.count_event")
