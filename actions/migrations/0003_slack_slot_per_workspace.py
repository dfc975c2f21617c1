from django.db import migrations, models


class Migration(migrations.Migration):
    """Slack slots keyed by the bot's installation (a token digest) and the channel, not the
    channel alone. The old rows only say when a channel was last written to: dropped."""

    dependencies = [
        ("actions", "0002_slack_channel_slot"),
    ]

    operations = [
        migrations.RunPython(lambda apps, schema: apps.get_model("actions", "SlackChannelSlot").objects.all().delete(), migrations.RunPython.noop),
        migrations.RemoveField(model_name="slackchannelslot", name="channel"),
        migrations.AddField(
            model_name="slackchannelslot",
            name="key",
            field=models.CharField(default=None, max_length=200, unique=True),
            preserve_default=False,
        ),
    ]
