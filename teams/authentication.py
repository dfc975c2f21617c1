"""API authentication by token (DRF's), its query compiled once per process: it runs on every
API call, and Django compiling it cost more than the database answering (ops.compiled)."""

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from ops.compiled import Compiled

_token = Compiled(lambda key: Token.objects.select_related("user").filter(key=key))


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        found = _token(key) if "\x00" not in key else None  # PostgreSQL's text refuses NUL: a 500, not a 401
        if not found:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = found[0]
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
