"""The account page: a user sees, creates and regenerates their own API token (POST, CSRF, a
confirmation step), with snippets that work as pasted."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from .signin import csrf_token, signed_in

pytestmark = pytest.mark.django_db


def me_with(token):
    return Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token}")


def test_signed_out_people_are_sent_to_sign_in(client):
    response = client.get("/accounts/")
    assert response.status_code == 302 and response.url == "/login/?next=/accounts/"


@pytest.mark.parametrize("username", ["alice", "bob", "vic", "charlie"])
def test_everyone_sees_their_own_token_and_nobody_elses(team, username):
    mine = Token.objects.create(user=get_user_model().objects.get(username=username))
    Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in get_user_model().objects.exclude(username=username)])
    others = [t.key for t in Token.objects.exclude(pk=mine.pk)]
    page = signed_in(username).get("/accounts/")
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    text = page.content.decode()
    assert f'<pre id="token">{mine.key}</pre>' in text and not any(key in text for key in others)


def test_a_user_creates_a_token_and_the_snippets_work_as_pasted(team):
    client = signed_in("bob")
    page = client.get("/accounts/")
    assert "You have no API token yet." in page.content.decode()
    assert client.get("/accounts/token/").url == "/accounts/"  # nothing to confirm
    assert client.post("/accounts/token/").status_code == 403  # no CSRF token
    made = client.post("/accounts/token/", {"csrfmiddlewaretoken": csrf_token(page)}, follow=True)
    text = made.content.decode()
    token = Token.objects.get(user__username="bob").key
    assert "Your API token is ready." in text
    curl = html.unescape(re.search(r'<pre id="snippet-curl">(.*?)</pre>', text).group(1))
    assert curl == f"curl -H \"Authorization: Token {token}\" http://testserver/api/v1/me/"
    assert f"export MLFLOW_TRACKING_URI=http://testserver/mlflow/acme\nexport MLFLOW_TRACKING_TOKEN={token}" in text
    answer = me_with(token)
    assert answer.status_code == 200 and answer.json()["username"] == "bob"
    mlflow = Client().get("/mlflow/acme/api/2.0/mlflow/experiments/search", {"max_results": 1}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert mlflow.status_code == 200, mlflow.content


def test_regenerating_asks_first_and_the_old_token_stops_working(team, vic):
    old = Token.objects.create(user=vic).key
    client = signed_in("vic")
    confirm = client.get("/accounts/token/")
    assert confirm.status_code == 200 and "stops working" in confirm.content.decode()
    assert Token.objects.get(user=vic).key == old  # asking changes nothing
    done = client.post("/accounts/token/", {"csrfmiddlewaretoken": csrf_token(confirm)}, follow=True)
    new = Token.objects.get(user=vic).key
    assert new != old and "the old one no longer works" in done.content.decode() and new in done.content.decode()
    assert me_with(old).status_code == 401 and me_with(new).status_code == 200
    assert client.put("/accounts/token/").status_code == 403  # CSRF guards every unsafe method
    assert Token.objects.get(user=vic).key == new


def test_the_account_page_signs_out(team):
    client = signed_in("bob")
    page = client.get("/accounts/")
    assert 'action="/logout/"' in page.content.decode()
    client.post("/logout/", {"csrfmiddlewaretoken": csrf_token(page)})
    assert client.get("/accounts/").status_code == 302
