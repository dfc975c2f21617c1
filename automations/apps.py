from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"

    def ready(self):
        from django.conf import settings
        from django_q.conf import Conf

        from events.signals import event_committed, event_recorded
        from tracking.pages import THRESHOLD_PROVIDERS

        from .pages import thresholds_for_run
        from .tasks import enqueue_evaluation

        if "orm" in settings.Q_CLUSTER and not Conf.SYNC:
            # the database broker: the task is a row written in the event's own transaction, so
            # the request takes the database's write lock once, not again after commit
            event_recorded.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
        else:
            event_committed.connect(enqueue_evaluation, dispatch_uid="automations.evaluate")
        THRESHOLD_PROVIDERS.append(thresholds_for_run)
