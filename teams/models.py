from django.conf import settings
from django.db import models

from .fields import GuardedEncryptedTextField
from .validators import validate_secret_name, validate_slug_name


class Role(models.TextChoices):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}

KEEP_AN_ADMIN = "The team must keep at least one admin."


class Team(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[validate_slug_name])
    display_name = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        from django.urls import reverse

        return reverse("team", args=[self.name])

    def role_of(self, user):
        """The user's role in this team, or None. Superusers act as admins of every team."""
        if not user.is_authenticated:
            return None
        membership = self.memberships.filter(user=user).first()
        if membership:
            return membership.role
        return Role.ADMIN if user.is_superuser else None


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_membership")]
        ordering = ["team", "user__username"]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"

    def is_last_admin(self):
        """True when this membership, as stored, is its team's only admin: demoting or removing
        it would leave nobody able to manage the team."""
        return (
            self.pk is not None
            and self.role == Role.ADMIN
            and not Membership.objects.filter(team_id=self.team_id, role=Role.ADMIN).exclude(pk=self.pk).exists()
        )


class SecretQuerySet(models.QuerySet):
    def listing(self):
        # Lists never need the value; leaving it out also keeps a key mismatch from breaking them.
        return self.defer("value")


class Secret(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=64, validators=[validate_secret_name])
    value = GuardedEncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SecretQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_secret_name")]
        ordering = ["team", "name"]

    def __str__(self):
        return f"{self.team}/{self.name}"
