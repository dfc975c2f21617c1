"""The summary of the histories stored before it existed, aggregated as at ingestion (streamed)."""

from django.db import migrations


def fill(apps, schema_editor):
    from tracking.summary import rebuild

    rebuild(apps.get_model("tracking", "MetricPoint").objects.all(), schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("tracking", "0003_metric_summary"),
    ]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
