"""MetricPoint.run loses the index of its own, which `metric_window` (run_id, key, step DESC)
makes redundant. Dropped by name rather than by AlterField, which on SQLite rebuilds the whole
table (a copy of every point) to remove an index."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "tracking_metricpoint_run_id_3baab4e6"  # the name Django gave it (0001)


class Migration(migrations.Migration):

    dependencies = [
        ("tracking", "0004_fill_metric_summary"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX "{INDEX}" ON "tracking_metricpoint" ("run_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="metricpoint",
                    name="run",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="points", to="tracking.run"),
                ),
            ],
        ),
    ]
