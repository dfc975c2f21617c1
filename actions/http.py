"""The one way out to webhooks: timeouts, no redirects, a User-Agent, and private, loopback and
link-local addresses refused at connect time (the resolved IP is checked and pinned, so DNS
rebinding cannot slip past) unless WEBHOOK_ALLOW_PRIVATE_IPS is on."""

from importlib.metadata import PackageNotFoundError, version

import requests
from django.conf import settings
from requests_hardened import Config, Manager

try:
    VERSION = version("tripline")
except PackageNotFoundError:  # running from a tree that was not installed
    VERSION = "dev"
USER_AGENT = f"Tripline/{VERSION}"


def session():
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_IPS
    config = Config(
        ip_filter_enable=not allow_private,
        ip_filter_allow_loopback_ips=allow_private,
        never_redirect=True,
        default_timeout=tuple(settings.WEBHOOK_TIMEOUT),
        user_agent_override=USER_AGENT,
    )
    return Manager(config).get_session()


def post(url, body: bytes, headers):
    """POST exact bytes; raises requests exceptions (timeouts, refused addresses) to the caller."""
    with session() as s:
        return s.post(url, data=body, headers=headers, timeout=tuple(settings.WEBHOOK_TIMEOUT), allow_redirects=False)


RequestException = requests.RequestException
