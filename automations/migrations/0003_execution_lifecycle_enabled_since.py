import django.utils.timezone
from django.db import migrations, models
from django.db.models import F


def enabled_since_creation(apps, schema_editor):
    # Existing automations keep firing for the events already waiting for evaluation.
    apps.get_model("automations", "Automation").objects.filter(enabled=True).update(enabled_since=F("created_at"))


class Migration(migrations.Migration):

    dependencies = [
        ("automations", "0002_sweep_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="Nudge",
            fields=[
                ("kind", models.CharField(max_length=16, primary_key=True, serialize=False)),
                ("token", models.CharField(blank=True, max_length=32)),
                ("queued_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.AddField(
            model_name="automation",
            name="enabled_since",
            field=models.DateTimeField(blank=True, default=django.utils.timezone.now, editable=False, null=True),
        ),
        migrations.RunPython(enabled_since_creation, migrations.RunPython.noop),
        migrations.AddField(
            model_name="execution",
            name="claimed_by",
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AddField(
            model_name="execution",
            name="round_start",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
