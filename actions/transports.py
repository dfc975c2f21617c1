"""One small transport per action kind. `send` never raises: it returns a DeliveryResult, and
`DeliveryResult.retryable` is the one place that decides whether to try again."""

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from email.utils import parsedate_to_datetime

from django.conf import settings
from requests_hardened.ip_filter import InvalidIPAddress
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from standardwebhooks.webhooks import Webhook

from . import http
from .payloads import MASK, mask_values

RESPONSE_LIMIT = 1024
# 4xx answers that mean "try again later" rather than "this will never work".
RETRYABLE_4XX = {408, 409, 425, 429}
SLACK_RETRYABLE = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


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


class Transport:
    def send(self, integration, message: Message) -> DeliveryResult:  # pragma: no cover - interface
        raise NotImplementedError


class NoOpTransport(Transport):
    def send(self, integration, message):
        return DeliveryResult(ok=True, request={"action": "NO_OP"})


class WebhookTransport(Transport):
    def headers(self, integration, message, body: bytes, secrets):
        """The request headers; `secrets` are the values to use (real ones, or masks to store)."""
        headers = {"Content-Type": "application/json", "User-Agent": http.USER_AGENT}
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
        secret_values = [v for v in secrets.values() if v] + list(message.secret_values)
        started = time.monotonic()
        try:
            response = http.post(integration.url, body, headers)
        except InvalidIPAddress:
            return DeliveryResult(ok=False, error="refused: the URL resolves to a private or loopback address (WEBHOOK_ALLOW_PRIVATE_IPS is off)", request=request)
        except http.RequestException as exc:
            error = mask_values(f"{type(exc).__name__}: {exc}", secret_values)
            return DeliveryResult(ok=False, error=error[:1000], retryable=True, duration_ms=self._ms(started), request=request)
        code = response.status_code
        result = DeliveryResult(
            ok=200 <= code < 300,
            status_code=code,
            response_body=mask_values(response.content[:RESPONSE_LIMIT].decode("utf-8", "replace"), secret_values),
            duration_ms=self._ms(started),
            request=request,
        )
        if not result.ok:
            result.retryable = code >= 500 or code in RETRYABLE_4XX
            result.retry_after = parse_retry_after(response.headers.get("Retry-After"))
            result.disable_integration = code == 410
            result.error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
        return result

    @staticmethod
    def _ms(started):
        return int((time.monotonic() - started) * 1000)


class SlackTransport(Transport):
    def send(self, integration, message):
        slack = message.slack
        request = {"method": "chat.postMessage", "channel": integration.channel, "text": slack["text"], "blocks": slack["blocks"]}
        token = integration.token_secret.value
        client = WebClient(token=token, base_url=settings.SLACK_API_URL, timeout=int(http.attempt_deadline()))
        client.retry_handlers = []  # a 429 is rescheduled by the caller, never slept on in a worker
        started = time.monotonic()
        try:
            response = http.within_deadline(
                lambda: client.chat_postMessage(channel=integration.channel, text=slack["text"], blocks=slack["blocks"], unfurl_links=False)
            )
            return DeliveryResult(ok=True, status_code=response.status_code, response_body=json.dumps(response.data)[:RESPONSE_LIMIT],
                                  duration_ms=WebhookTransport._ms(started), request=request)
        except SlackApiError as exc:
            code = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = data.get("error") or f"HTTP {code}"
            return DeliveryResult(
                ok=False,
                status_code=code,
                response_body=mask_values(json.dumps(data)[:RESPONSE_LIMIT], [token]),
                error=f"slack: {error}",
                retryable=code == 429 or code >= 500 or error in SLACK_RETRYABLE,
                retry_after=parse_retry_after(exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")),
                duration_ms=WebhookTransport._ms(started),
                request=request,
            )
        except Exception as exc:  # connection errors, timeouts: slack_sdk raises urllib errors
            return DeliveryResult(ok=False, error=mask_values(f"{type(exc).__name__}: {exc}", [token])[:1000], retryable=True,
                                  duration_ms=WebhookTransport._ms(started), request=request)


TRANSPORTS = {"WEBHOOK": WebhookTransport(), "SLACK": SlackTransport(), "NO_OP": NoOpTransport()}
