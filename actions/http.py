"""The one way out to webhooks: timeouts, no redirects, a User-Agent, and private, loopback and
link-local addresses refused at connect time (the resolved IP is checked and pinned, so DNS
rebinding cannot slip past) unless WEBHOOK_ALLOW_PRIVATE_IPS is on."""

import threading
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


class DeadlineExceeded(requests.Timeout):
    pass


def attempt_deadline():
    """The longest one attempt may take: connect and read timeout together. HTTP clients apply
    the read timeout to each read, so without this a receiver that drips a byte at a time could
    hold an attempt, and so outlive the delivery lease (`automations.delivery.delivery_lease`)."""
    return float(sum(settings.WEBHOOK_TIMEOUT))


def within_deadline(call):
    """`call()`'s result, or DeadlineExceeded once the attempt deadline has passed. The call runs
    in a daemon thread; an abandoned one ends by itself at the receiver's next pause."""
    seconds = attempt_deadline()
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="tripline-send", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise DeadlineExceeded(f"no complete answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def post(url, body: bytes, headers):
    """POST exact bytes; raises requests exceptions (timeouts, refused addresses) to the caller."""

    def send():
        with session() as s:
            return s.post(url, data=body, headers=headers, timeout=tuple(settings.WEBHOOK_TIMEOUT), allow_redirects=False)

    return within_deadline(send)


RequestException = requests.RequestException
