"""What a long-lived process builds once and keeps: built before it serves requests, or before
django-q2 forks the task processes from it, instead of on first use."""

from django.urls import get_resolver


def url_resolver():
    """Load the URLconf, and with it every view module (~45 ms), and build its reverse lookups
    (~85 ms). Left to the first `reverse()`, the build is paid by every thread that reverses
    before the first build ends (Django guards it per thread, not per process): each delivery
    thread of a fresh task process built it at once for its payload's links — 12 % of the
    worker's CPU in a 1,000-webhook fan-out (py-spy, bench row 2) — and each of a gunicorn
    worker's threads for its first pages."""
    resolver = get_resolver()
    resolver.url_patterns
    resolver.reverse_dict
