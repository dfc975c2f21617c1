from django.db import models


class WorkerHeartbeat(models.Model):
    """The last sign of life of one `manage.py worker` (host:pid), for /healthz and /metrics."""

    worker = models.CharField(max_length=255, unique=True)
    beat_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.worker} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
