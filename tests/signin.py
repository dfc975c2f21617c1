"""Signing in as a person does: the login form, with its CSRF token."""

import re

from django.test import Client

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def csrf_token(response):
    return CSRF.search(response.content.decode()).group(1)


def sign_in(client, username, password=None, next=None):
    """Sign `client` in through /login/ (signing out whoever was signed in); returns the answer."""
    if client.session.get("_auth_user_id"):
        sign_out(client)
    url = "/login/" + (f"?next={next}" if next else "")
    form = client.get(url)
    assert form.status_code == 200, form.status_code
    data = {"username": username, "password": password or f"{username}-password", "csrfmiddlewaretoken": csrf_token(form)}
    if next:
        data["next"] = next
    return client.post(url, data)


def sign_out(client):
    page = client.get("/", follow=True)
    return client.post("/logout/", {"csrfmiddlewaretoken": csrf_token(page)})


def signed_in(username, password=None):
    """A new browser-like client (CSRF enforced) signed in as `username`."""
    client = Client(enforce_csrf_checks=True)
    response = sign_in(client, username, password)
    assert response.status_code == 302, f"{username} could not sign in: {response.status_code}"
    return client
