"""The account page: the signed-in user's API token, ready-to-paste snippets that use it, and
signing out."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from rest_framework.authtoken.models import Token

from .models import Membership


@never_cache
@login_required
def account_page(request):
    token = Token.objects.filter(user=request.user).first()
    site = request.build_absolute_uri("/").rstrip("/")
    memberships = list(Membership.objects.filter(user=request.user).select_related("team"))
    return render(request, "tripline/account.html", {"token": token, "site": site, "memberships": memberships})


@never_cache
@login_required
def token_regenerate(request):
    """GET: the confirmation step (the old token stops working); POST with its CSRF token: a new
    token. A user without a token gets one without the confirmation: nothing stops working."""
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    has_token = Token.objects.filter(user=request.user).exists()
    if request.method == "GET":
        if not has_token:
            return redirect("account")
        return render(request, "tripline/token_regenerate.html")
    with transaction.atomic():
        Token.objects.filter(user=request.user).delete()
        Token.objects.create(user=request.user)
    messages.success(request, "A new API token is ready; the old one no longer works." if has_token else "Your API token is ready.")
    return redirect("account")
