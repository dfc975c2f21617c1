import base64
import hashlib
import secrets
import time
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from teams.fields import GuardedEncryptedTextField
from teams.models import Secret, Team
from teams.validators import validate_slug_name

ROTATION_OVERLAP = timedelta(hours=24)


def new_signing_key():
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class IntegrationKind(models.TextChoices):
    WEBHOOK = "webhook"
    SLACK = "slack"


def kinds():
    from . import kinds

    return kinds


class Integration(models.Model):
    """A team's Slack channel or webhook endpoint; secrets are referenced, never copied."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="integrations")
    kind = models.CharField(max_length=8, choices=IntegrationKind.choices)
    name = models.CharField(max_length=64, validators=[validate_slug_name])
    # webhook
    url = models.URLField(max_length=2000, blank=True)
    access_token_secret = models.ForeignKey(Secret, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                            help_text="Sent as Authorization: Bearer <value>; ${ACCESS_TOKEN} in payloads.")
    secret = models.ForeignKey(Secret, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                               help_text="Signs the body: X-Wandb-Signature = base64(HMAC-SHA256(secret, body)).")
    signing_key = GuardedEncryptedTextField(null=True, blank=True, editable=False)
    previous_signing_key = GuardedEncryptedTextField(null=True, blank=True, editable=False)
    previous_key_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # slack
    channel = models.CharField(max_length=128, blank=True, help_text="Channel id (C0123…) or name (#deploys).")
    token_secret = models.ForeignKey(Secret, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                     help_text="The Slack bot token (xoxb-…).")
    # state
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    last_error = models.TextField(blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_integration_name")]
        ordering = ["team", "name"]

    def __str__(self):
        return f"{self.name} ({self.kind})"

    def clean(self):
        errors = {}
        if self.kind in kinds().KINDS:
            values = {"url": self.url, "channel": self.channel, "token_secret": self.token_secret_id}
            errors.update(kinds().get(self.kind).missing(values, api=False))
        for field in ("access_token_secret", "secret", "token_secret"):
            secret = getattr(self, field)
            if secret is not None and self.team_id and secret.team_id != self.team_id:
                errors[field] = "Use a secret of the same team."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        if self.kind in kinds().signing_kinds() and not self.signing_key:
            self.signing_key = new_signing_key()
        super().save(*args, **kwargs)

    def rotate_signing_key(self):
        """A new key; the old one keeps signing too for 24 hours so receivers can switch over."""
        self.previous_signing_key = self.signing_key
        self.previous_key_expires_at = timezone.now() + ROTATION_OVERLAP
        self.signing_key = new_signing_key()
        self.save(update_fields=["signing_key", "previous_signing_key", "previous_key_expires_at"])
        return self.signing_key

    def active_signing_keys(self):
        keys = [self.signing_key]
        if self.previous_signing_key and self.previous_key_expires_at and self.previous_key_expires_at > timezone.now():
            keys.append(self.previous_signing_key)
        return keys

    def attached_secrets(self):
        """{name: Secret} of the secrets a payload may reference, ACCESS_TOKEN included."""
        attached = {}
        for field in ("access_token_secret", "secret", "token_secret"):
            secret = getattr(self, field)
            if secret is not None:
                attached[secret.name] = secret
        if self.access_token_secret is not None:
            attached["ACCESS_TOKEN"] = self.access_token_secret
        return attached

    def disable(self, reason):
        self.enabled = False
        self.disabled_reason = reason[:300]
        self.save(update_fields=["enabled", "disabled_reason"])


class SlackChannelSlot(models.Model):
    """When the next message may go to a Slack channel. Slack takes about one message a second
    per channel from an app, so the slot is keyed by the app's installation (a digest of the bot
    token: one token is one app in one workspace) and the channel as integrations name it.
    Integrations sharing a bot and a channel share the slot; another team's, another workspace's
    or another app's traffic never waits on it."""

    key = models.CharField(max_length=200, unique=True)
    next_slot = models.DateTimeField()

    INTERVAL = timedelta(seconds=1)

    @staticmethod
    def key_for(integration):
        # A digest, never the token: bot tokens are long random strings, so it cannot be reversed.
        digest = hashlib.sha256(b"tripline-slack-slot:" + integration.token_secret.value.encode()).hexdigest()[:32]
        return f"{digest}:{integration.channel.strip().lstrip('#').lower()}"

    @classmethod
    def take(cls, integration):
        """Take the channel's slot if it is free now: None when taken, else when it frees."""
        key, now = cls.key_for(integration), timezone.now()
        if cls.objects.filter(key=key, next_slot__lte=now).update(next_slot=now + cls.INTERVAL):
            return None
        slot, created = cls.objects.get_or_create(key=key, defaults={"next_slot": now + cls.INTERVAL})
        return None if created else slot.next_slot

    @classmethod
    def wait_for(cls, integration, longest):
        """Queue up for the channel's next free slot and sleep until it, for a send that happens
        now or not at all (a test); False, without waiting, when it is further than `longest`
        seconds away."""
        key, now = cls.key_for(integration), timezone.now()
        with transaction.atomic():
            slot, _ = cls.objects.select_for_update().get_or_create(key=key, defaults={"next_slot": now})
            at = max(slot.next_slot, now)
            if (at - now).total_seconds() > longest:
                return False
            slot.next_slot = at + cls.INTERVAL
            slot.save(update_fields=["next_slot"])
        time.sleep((at - now).total_seconds())
        return True
