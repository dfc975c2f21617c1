"""What the signed-in user may do, for the page templates (the header's links)."""

from django import template
from django.contrib import admin

from teams.models import ROLE_RANK

register = template.Library()


@register.simple_tag(takes_context=True)
def may_use_admin(context):
    """Whether the admin lets this user in: the site's own rule, so the link and the door agree."""
    return admin.site.has_permission(context["request"])


@register.simple_tag(takes_context=True)
def role_at_least(context, team, role):
    held = team.role_of(context["request"].user)
    return held is not None and ROLE_RANK[held] >= ROLE_RANK[role]
