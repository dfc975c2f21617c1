"""API clients that sign in as a script does: a real `Authorization: Token …` header."""

from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def token_client(user, **kwargs):
    client = APIClient(**kwargs)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client
