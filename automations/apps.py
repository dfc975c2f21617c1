from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"

    def ready(self):
        from events.signals import event_committed
        from tracking.pages import THRESHOLD_PROVIDERS

        from .pages import thresholds_for_run
        from .tasks import enqueue_evaluation

        event_committed.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
        THRESHOLD_PROVIDERS.append(thresholds_for_run)
