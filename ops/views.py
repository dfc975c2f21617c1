"""GET /healthz and GET /metrics: no authentication of users, no team data."""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .health import health
from .metrics import scrape_registry


@never_cache
@require_GET
def healthz(request):
    status = health()
    return JsonResponse(status, status=200 if all(v == "ok" for v in status.values()) else 503)


def metrics_refusal(request):
    """None when the scrape is allowed: with METRICS_TOKEN set, only `Authorization: Bearer
    <token>` opens it; without, only clients in METRICS_ALLOWED_IPS (loopback by default)."""
    if settings.METRICS_TOKEN:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode()):
            return None
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        client = None
    if client is not None and client.version == 6 and client.ipv4_mapped:
        client = client.ipv4_mapped
    if client is not None and any(client in network for network in settings.METRICS_ALLOWED_IPS):
        return None
    return HttpResponse("Not allowed from this address (METRICS_ALLOWED_IPS).\n", status=403, content_type="text/plain")


@never_cache
@require_GET
def metrics(request):
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
