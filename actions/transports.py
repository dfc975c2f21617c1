"""One small transport per action kind, and `send`, the one way a message goes out: it never
raises, and every text of the result it returns has the secrets masked, before anything stores,
shows or logs it. `DeliveryResult.retryable` is the one place that decides whether to try again.
"""

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from django.conf import settings
from requests_hardened.ip_filter import InvalidIPAddress
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from standardwebhooks.webhooks import Webhook

from . import http
from .models import SlackChannelSlot
from .payloads import MASK, mask_values

logger = logging.getLogger("tripline.delivery")
RESPONSE_LIMIT = 1024
ERROR_LIMIT = 1000
# 4xx answers that mean "try again later" rather than "this will never work".
RETRYABLE_4XX = {408, 409, 425, 429}
TEST_SLACK_WAIT = 5  # seconds a test send may wait for its Slack channel's next free slot
SLACK_RETRYABLE = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# What a header value may hold: visible ASCII and inner spaces. A secret read from a file often
# ends with a newline; HTTP clients refuse it, and their error quotes the value.
HEADER_SAFE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


@dataclass
class DeliveryResult:
    ok: bool
    status_code: int | None = None
    response_body: str = ""
    error: str = ""
    duration_ms: int = 0
    retryable: bool = False
    retry_after: float | None = None
    disable_integration: bool = False
    request: dict = field(default_factory=dict)
    truncated: bool = False  # the response body was not read to its end


@dataclass
class Message:
    """What an action sends: the rendered payload twice (real secrets / masked), or Slack text."""

    delivery_id: str
    payload: object = None
    masked_payload: object = None
    secret_values: tuple = ()
    slack: dict | None = None


def parse_retry_after(value):
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(dt_timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def unusable_in_header(secret, where):
    """A DeliveryResult refusing to send when `secret` cannot go into a header, else None. The
    error names the secret, never its value."""
    if HEADER_SAFE.fullmatch(secret.value):
        return None
    return DeliveryResult(ok=False, error=(
        f"the secret {secret.name} cannot be used as {where}: it holds a line break, another control character, "
        "a non-ASCII character or spaces at either end (a newline at the end of a value read from a file?). "
        "Store it without them; a secret used only in the payload may hold anything."
    ))


def slack_turn_now(integration):
    """For a Slack send that happens now or not at all (a test): None once the channel's next
    slot is ours (having waited for it a few seconds at most), else the refusal to report."""
    if SlackChannelSlot.wait_for(integration, TEST_SLACK_WAIT):
        return None
    return DeliveryResult(ok=False, error=f"the Slack channel {integration.channel} is busy (about one message a second); try again shortly")


def hide_url_path(text, url):
    """`text` without the path and query of `url`, which may carry a token (an incoming-webhook
    URL) and which HTTP client errors quote; errors are shown to every role."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    text = text.replace(url, http.site_of(url) + "/…")
    return text.replace(path, "/…") if len(path) > 1 else text


def send(kind, integration, build):
    """Build the message (`build()`) and send it through the transport of `kind`. Never raises;
    every text of the result (error, response) has the integration's and the payload's secrets
    masked, in the forms a receiver might echo them, before the response is cut to 1 KiB."""
    secrets = []
    try:
        secrets = [s.value for s in (integration.attached_secrets().values() if integration else ())]
        message = build()
        secrets += list(message.secret_values)
        result = TRANSPORTS[kind].send(integration, message)
    except Exception as exc:  # a bug or an undecryptable secret: fail visibly, never quote a secret
        logger.error("could not send: %s", mask_values(traceback.format_exc(), secrets))
        result = DeliveryResult(ok=False, error=f"could not send: {type(exc).__name__}: {exc}")
    if integration is not None and integration.url:
        result.error = hide_url_path(result.error, integration.url)
    result.error = mask_values(result.error, secrets)[:ERROR_LIMIT]
    result.response_body = mask_values(result.response_body, secrets, keep=RESPONSE_LIMIT, truncated=result.truncated)
    return result


class Transport:
    def send(self, integration, message: Message) -> DeliveryResult:  # pragma: no cover - interface
        raise NotImplementedError


class NoOpTransport(Transport):
    name = "NO_OP"

    def send(self, integration, message):
        return DeliveryResult(ok=True, request={"action": self.name})


def elapsed_ms(started):
    return int((time.monotonic() - started) * 1000)


class WebhookTransport(Transport):
    name = "WEBHOOK"

    def headers(self, integration, message, body: bytes, secrets):
        """The request headers; `secrets` are the values to use (real ones, or masks to store)."""
        # identity: the body is read within a byte limit, and never inflated from a small one
        headers = {"Content-Type": "application/json", "User-Agent": http.USER_AGENT, "Accept-Encoding": "identity"}
        if integration.access_token_secret_id:
            headers["Authorization"] = f"Bearer {secrets['access_token']}"
        if integration.secret_id:
            digest = hmac.new(secrets["secret"].encode(), body, hashlib.sha256).digest()
            headers["X-Wandb-Signature"] = base64.b64encode(digest).decode()
        now = datetime.now(dt_timezone.utc)
        signatures = [Webhook(key).sign(message.delivery_id, now, body.decode()) for key in integration.active_signing_keys()]
        headers.update({"webhook-id": message.delivery_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": " ".join(signatures)})
        return headers

    def send(self, integration, message):
        body = json.dumps(message.payload, ensure_ascii=False).encode("utf-8")
        secrets = {
            "access_token": integration.access_token_secret.value if integration.access_token_secret_id else "",
            "secret": integration.secret.value if integration.secret_id else "",
        }
        headers = self.headers(integration, message, body, secrets)
        masked_headers = {k: (f"Bearer {MASK}" if k == "Authorization" else v) for k, v in headers.items()}
        request = {"method": "POST", "url": integration.url, "headers": masked_headers, "body": message.masked_payload}
        if integration.access_token_secret_id:
            refused = unusable_in_header(integration.access_token_secret, "the webhook's access token (Authorization header)")
            if refused:
                refused.request = request
                return refused
        started = time.monotonic()
        try:
            answer = http.post(integration.url, body, headers)
        except InvalidIPAddress:
            return DeliveryResult(ok=False, error="refused: the URL resolves to a private or loopback address (WEBHOOK_ALLOW_PRIVATE_IPS is off)", request=request)
        except http.RequestException as exc:
            return DeliveryResult(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=True, duration_ms=elapsed_ms(started), request=request)
        code = answer.status_code
        result = DeliveryResult(ok=200 <= code < 300, status_code=code, response_body=answer.text(), truncated=answer.truncated,
                                duration_ms=elapsed_ms(started), request=request)
        if not result.ok:
            result.retryable = code >= 500 or code in RETRYABLE_4XX
            result.retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            result.disable_integration = code == 410
            result.error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
        return result


class SlackTransport(Transport):
    name = "SLACK"

    def send(self, integration, message):
        slack = message.slack
        request = {"method": "chat.postMessage", "channel": integration.channel, "text": slack["text"], "blocks": slack["blocks"]}
        refused = unusable_in_header(integration.token_secret, "the Slack bot token")
        if refused:
            refused.request = request
            return refused
        client = WebClient(token=integration.token_secret.value, base_url=settings.SLACK_API_URL, timeout=int(http.attempt_deadline()))
        client.retry_handlers = []  # a 429 is rescheduled by the caller, never slept on in a worker
        started = time.monotonic()
        try:
            response = http.within_deadline(
                lambda: client.chat_postMessage(channel=integration.channel, text=slack["text"], blocks=slack["blocks"], unfurl_links=False)
            )
            return DeliveryResult(ok=True, status_code=response.status_code, response_body=json.dumps(response.data),
                                  duration_ms=elapsed_ms(started), request=request)
        except SlackApiError as exc:
            code = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = data.get("error") or f"HTTP {code}"
            return DeliveryResult(
                ok=False,
                status_code=code,
                response_body=json.dumps(data),
                error=f"slack: {error}",
                retryable=code == 429 or code >= 500 or error in SLACK_RETRYABLE,
                retry_after=parse_retry_after(exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")),
                duration_ms=elapsed_ms(started),
                request=request,
            )
        except Exception as exc:  # connection errors, timeouts: slack_sdk raises urllib errors
            return DeliveryResult(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=True, duration_ms=elapsed_ms(started), request=request)


TRANSPORTS = {transport.name: transport for transport in (WebhookTransport(), SlackTransport(), NoOpTransport())}
