from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS

from .context import set_from_request
from .models import ROLE_RANK, Membership, Role, Team


def team_for_user(user, team_name, needed=Role.VIEWER):
    """The team named `team_name` if `user` holds at least the `needed` role in it.

    Outsiders get 404 (a team's existence is not revealed); members with too low a role 403.
    """
    # the team and the user's role in one query when the user is a member (every API call)
    membership = Membership.objects.select_related("team").filter(team__name=team_name, user=user).first() if user.is_authenticated else None
    if membership is not None:
        team, role = membership.team, membership.role
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
