"""Who is acting in the current request, so that signal receivers can name the author of an event.

Set by `ActorMiddleware` for session users (admin, pages) and by the API views after DRF has
authenticated a token. `cause` carries the delivery id an automation's receiver echoed back in
the `Tripline-Cause` header, so that an automation never triggers on its own action.
"""

from contextlib import contextmanager
from contextvars import ContextVar

_actor = ContextVar("tripline_actor", default=None)
_cause = ContextVar("tripline_cause", default="")

CAUSE_HEADER = "HTTP_TRIPLINE_CAUSE"


def current_actor():
    return _actor.get()


def current_cause():
    return _cause.get()


@contextmanager
def acting_as(user, cause=""):
    actor_token = _actor.set(user if user is not None and user.is_authenticated else None)
    cause_token = _cause.set((cause or "")[:64])
    try:
        yield
    finally:
        _actor.reset(actor_token)
        _cause.reset(cause_token)


def set_from_request(request):
    user = getattr(request, "user", None)
    _actor.set(user if user is not None and user.is_authenticated else None)
    _cause.set(request.META.get(CAUSE_HEADER, "")[:64])


class ActorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(None):
            set_from_request(request)
            return self.get_response(request)
