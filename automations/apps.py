from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"

    def ready(self):
        from events.signals import event_committed
        from tracking.pages import FIRING_PROVIDERS, THRESHOLD_PROVIDERS

        from .chart_marks import firings_for_run
        from .pages import thresholds_for_run
        from .tasks import enqueue_evaluation

        from actions.payloads import VARIABLES

        from . import event_types

        event_committed.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
        for definition in event_types.REGISTRY.values():  # the variables only some event types provide
            VARIABLES.update(definition.variables)
        THRESHOLD_PROVIDERS.append(thresholds_for_run)
        FIRING_PROVIDERS.append(firings_for_run)
