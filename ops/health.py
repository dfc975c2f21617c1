"""What /healthz checks: the database, the broker, and that a worker beat recently."""

import logging
import os
import socket
import time
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import WorkerHeartbeat

logger = logging.getLogger("tripline.health")
BROKER_TIMEOUT = 2  # seconds: a load balancer's probe must not hang on a silent Redis
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
_last_beat = None


def beat():
    """Called by `manage.py worker` on every tick while its qcluster runs; writes at most four
    times per WORKER_HEARTBEAT_TIMEOUT."""
    global _last_beat
    now = time.monotonic()
    if _last_beat is not None and now - _last_beat < settings.WORKER_HEARTBEAT_TIMEOUT / 4:
        return
    stamp = timezone.now()
    WorkerHeartbeat.objects.update_or_create(worker=WORKER_NAME, defaults={"beat_at": stamp})
    WorkerHeartbeat.objects.filter(beat_at__lt=stamp - timedelta(days=1)).delete()  # workers long gone
    _last_beat = now


@lru_cache(maxsize=1)
def _redis():
    import redis

    return redis.from_url(settings.REDIS_URL, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT)


def broker_queue_size():
    """Tasks waiting in the broker, None when it cannot be reached."""
    from django_q.brokers import get_broker

    try:
        broker = get_broker()
        return _redis().llen(broker.list_key) if settings.REDIS_URL else broker.queue_size()
    except Exception:
        logger.warning("broker unreachable", exc_info=True)
        return None


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker():
    if settings.REDIS_URL:
        _redis().ping()
    else:  # the database broker: its queue table must be readable
        from django_q.brokers import get_broker

        get_broker().queue_size()


def check_worker():
    if not WorkerHeartbeat.objects.filter(beat_at__gte=timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_TIMEOUT)).exists():
        raise RuntimeError(f"no worker heartbeat within {settings.WORKER_HEARTBEAT_TIMEOUT:g}s")


def health():
    """{"database", "broker", "worker"} → "ok" or "down" ("unknown" for the worker when the
    database, where heartbeats are kept, is down)."""
    status = {}
    for name, check in (("database", check_database), ("broker", check_broker), ("worker", check_worker)):
        if name == "worker" and status["database"] != "ok":
            status[name] = "unknown"
            continue
        try:
            check()
            status[name] = "ok"
        except Exception as exc:
            logger.warning("healthz: %s is down: %s", name, exc)
            status[name] = "down"
    return status
