"""The demo's webhook receiver, inside Tripline: `make run`'s demo automations deliver real
webhooks to it over loopback, so a newcomer sees a delivery succeed, one fail and retry.
On only with DEMO_RECEIVER (default: DEBUG); otherwise it is not there (404)."""

import json

from django.conf import settings
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt

ANSWERS = {200: {"ok": True}, 500: {"ok": False, "error": "the demo receiver fails on purpose, to show retries"}}


@csrf_exempt
def receiver(request, status):
    if not settings.DEMO_RECEIVER or status not in ANSWERS:
        raise Http404
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    answer = {**ANSWERS[status], "webhook_id": request.headers.get("webhook-id", ""), "received_keys": sorted(body) if isinstance(body, dict) else []}
    return JsonResponse(answer, status=status)
