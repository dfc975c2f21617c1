from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from ops.compiled import Compiled

from .context import set_from_request
from .models import ROLE_RANK, Membership, Role, Team


_membership = Compiled(lambda team_name, user_id: Membership.objects.select_related("team").filter(team__name=team_name, user_id=user_id))


def team_for_user(user, team_name, needed=Role.VIEWER):
    """The team named `team_name` if `user` holds at least the `needed` role in it.

    Outsiders get 404 (a team's existence is not revealed); members with too low a role 403.
    """
    # the team and the user's role in one query when the user is a member (every API call)
    membership = _membership(team_name, user.pk) if user.is_authenticated else None
    if membership:
        team, role = membership[0].team, membership[0].role
    else:
        team = get_object_or_404(Team, name=team_name)
        role = team.role_of(user)
    if role is None:
        raise Http404
    if ROLE_RANK[role] < ROLE_RANK[needed]:
        raise PermissionDenied(f"This needs the {needed} role in team {team.name}; you are {role}.")
    return team, role


class TeamScopedMixin:
    """For API views under /teams/{team}/: resolves `self.team` and enforces the role table.

    `read_role` applies to safe methods and `write_role` to the others (SPEC.md section 5).
    """

    read_role = Role.VIEWER
    write_role = Role.MEMBER

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        set_from_request(request)  # token-authenticated users are only known from here on
        needed = self.read_role if request.method in SAFE_METHODS else self.write_role
        self.team, self.role = team_for_user(request.user, kwargs["team"], needed)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):
            response.add_post_render_callback(_release)
        return response


def _release(response):
    """Once a response is rendered, break the reference cycles that kept each request, and the
    body it parsed, alive until a full collection walked them (8 in 100 history batches, 5.8 ms
    each against 1.1 ms without the bodies): the response's context holds the response itself,
    the view and the request; the view holds itself (Django's `self.head = self.get`), the
    response and the request; the request's parser context holds the request and the view. Then
    all of them are freed as soon as the server lets the response go (the request only waits for
    the collector when a serializer was handed it in its context: serializers and their fields
    refer to each other)."""
    context = response.renderer_context
    view, request = context.get("view"), context.get("request")
    context.clear()
    if view is not None:
        view.__dict__.clear()
    if request is not None and request.parser_context:
        request.parser_context.clear()
