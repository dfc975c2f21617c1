"""Prometheus instruments.

Counters and histograms are recorded in the process that does the work (a gunicorn worker for
events stored, a qcluster task process for evaluations and deliveries) and shared through the
files of PROMETHEUS_MULTIPROC_DIR, which config/settings.py points every process at before
prometheus_client is imported. Queue gauges are read from the database when /metrics is
scraped (`DatabaseCollector`), so they are right whichever machine the workers run on.

This module imports nothing of the project at import time: automations calls into it.
"""

import logging
import time
from functools import wraps

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger("tripline.metrics")

EVENTS = Counter("tripline_events_stored", "Events stored (counted when their transaction commits)")
EVALUATION = Histogram(
    "tripline_evaluation_seconds",
    "Time to evaluate one event against the automations that watch it (events evaluated together in one transaction each count an equal share)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_TASKS = Counter(
    "tripline_delivery_tasks",
    "Delivery task runs; claimed=false: the task found nothing due (a redundant task)",
    ["claimed"],
)
DELIVERIES = Counter(
    "tripline_deliveries",
    "Delivery attempts by action and outcome (succeeded, retrying, failed, skipped)",
    ["action", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "tripline_delivery_attempt_seconds",
    "Duration of one delivery attempt (the request to the receiver or Slack)",
    ["action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
LATENCY_SECONDS = Histogram(
    "tripline_delivery_latency_seconds",
    "From the event stored to its delivery succeeding (retries included; tests excluded)",
    ["action"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000),
)
OUTCOMES = {"succeeded": "succeeded", "pending": "retrying", "failed": "failed"}


def count_event(sender=None, **kwargs):
    """event_committed receiver."""
    EVENTS.inc()


def observe_evaluations(count, seconds):
    """`count` events evaluated together (one transaction) in `seconds`: each observes its share."""
    for _ in range(count):
        EVALUATION.observe(seconds / count)


def delivery_task(deliver):
    """Decorates the delivery task, which returns how many executions it claimed (0: it found
    nothing due, a redundant task)."""
    @wraps(deliver)
    def counted(*args, **kwargs):
        claimed = "error"
        try:
            result = deliver(*args, **kwargs)
            claimed = "true" if result else "false"
            return result
        finally:
            DELIVERY_TASKS.labels(claimed=claimed).inc()

    return counted


def observe_delivery(execution, result):
    """After an attempt's outcome is recorded on `execution` (its new status set)."""
    action = execution.automation.action_type
    DELIVERIES.labels(action=action, outcome=OUTCOMES.get(execution.status, execution.status)).inc()
    if result.duration_ms is not None:
        ATTEMPT_SECONDS.labels(action=action).observe(result.duration_ms / 1000)
    if execution.status == "succeeded" and not execution.is_test:
        LATENCY_SECONDS.labels(action=action).observe(max(0.0, (execution.finished_at - execution.event.created_at).total_seconds()))


def count_skipped(execution):
    DELIVERIES.labels(action=execution.automation.action_type, outcome="skipped").inc()


class DatabaseCollector:
    """Queue gauges read at scrape time, each one indexed query."""

    def collect(self):
        from datetime import timedelta

        from django.conf import settings
        from django.utils import timezone

        from automations import lifecycle
        from automations.models import Execution, ExecutionStatus
        from events.models import Event

        from .health import broker_queue_size
        from .models import WorkerHeartbeat

        now = timezone.now()

        def age(stamp):
            return max(0.0, (now - stamp).total_seconds()) if stamp else 0.0

        try:
            oldest_event = (Event.objects.unevaluated()
                            .order_by("created_at").values_list("created_at", flat=True).first())
            oldest_due = (Execution.objects.filter(lifecycle.due(now))
                          .order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first())
            executions = {status: Execution.objects.filter(status=status).count() for status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)}
            last_beat = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
            alive = WorkerHeartbeat.objects.filter(beat_at__gte=now - timedelta(seconds=settings.WORKER_HEARTBEAT_TIMEOUT)).count()
        except Exception:  # a scrape must still return the process metrics
            logger.exception("metrics: could not read the queue gauges")
            return
        yield GaugeMetricFamily("tripline_evaluation_lag_seconds", "Age of the oldest event not evaluated yet (0 when none)", value=age(oldest_event))
        yield GaugeMetricFamily(
            "tripline_oldest_pending_execution_age_seconds",
            "Seconds the longest-waiting due delivery has been due (0 when none is due; future retries do not count)",
            value=age(oldest_due),
        )
        family = GaugeMetricFamily("tripline_executions", "Executions still to deliver (pending, including scheduled retries) or being delivered", labels=["status"])
        for status, count in executions.items():
            family.add_metric([status], count)
        yield family
        yield GaugeMetricFamily("tripline_workers_alive", "Workers whose last heartbeat is within WORKER_HEARTBEAT_TIMEOUT", value=alive)
        if last_beat is not None:
            yield GaugeMetricFamily("tripline_worker_heartbeat_age_seconds", "Seconds since the most recent worker heartbeat", value=age(last_beat))
        queued = broker_queue_size()
        if queued is not None:
            yield GaugeMetricFamily("tripline_broker_queued_tasks", "Tasks waiting in the django-q2 broker", value=queued)


def process_registry():
    """The counters and histograms of every process on this machine."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def scrape_registry():
    registry = process_registry()
    registry.register(DatabaseCollector())
    return registry


def serve_worker_metrics():
    """`manage.py worker` on a machine without the web server: serve this machine's counters and
    histograms on WORKER_METRICS_ADDRESS (host:port) for Prometheus to scrape."""
    from django.conf import settings
    from prometheus_client import start_http_server

    if not settings.WORKER_METRICS_ADDRESS:
        return None
    host, port = settings.WORKER_METRICS_ADDRESS.rsplit(":", 1)
    server, _ = start_http_server(int(port), addr=host.strip("[]"), registry=process_registry())
    logger.info("serving worker metrics on %s", settings.WORKER_METRICS_ADDRESS)
    return server
