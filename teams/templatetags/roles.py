"""What the signed-in user may do, for the page templates (the header's links)."""

from django import template
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

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


@register.simple_tag(takes_context=True)
def admin_link(context, obj, text="In the admin"):
    """A link to `obj`'s admin change page, for those the admin lets see it ('' for the others)."""
    request = context["request"]
    model_admin = admin.site._registry.get(type(obj))
    if model_admin is None or not admin.site.has_permission(request) or not model_admin.has_view_permission(request, obj):
        return ""
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a class="admin-link" href="{}">{}</a>', url, text)
