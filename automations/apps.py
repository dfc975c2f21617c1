from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"

    def ready(self):
        from django.conf import settings
        from django_q.conf import Conf

        from events.signals import event_committed, event_recorded
        from tracking.pages import FIRING_PROVIDERS, THRESHOLD_PROVIDERS

        from .chart_marks import firings_for_run
        from .pages import thresholds_for_run
        from .tasks import enqueue_evaluation

        from actions.payloads import VARIABLES

        from . import event_types

        if "orm" in settings.Q_CLUSTER and not Conf.SYNC:
            # the database broker: the task is a row written in the event's own transaction, so
            # the request takes the database's write lock once, not again after commit
            event_recorded.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
        else:
            event_committed.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
        for definition in event_types.REGISTRY.values():  # the variables only some event types provide
            VARIABLES.update(definition.variables)
        THRESHOLD_PROVIDERS.append(thresholds_for_run)
        FIRING_PROVIDERS.append(firings_for_run)
