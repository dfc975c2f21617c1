"""/api/docs/ needs nothing from the internet: Swagger UI comes from drf-spectacular-sidecar,
served as our own static files. (tests/browser renders it in Chromium with the network cut.)"""

import re

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_the_docs_page_loads_its_assets_from_our_server(client):
    html = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r'"(/static/[^"]+)"', html)
    assert any("swagger-ui-bundle" in url for url in assets), assets
    for url in assets:
        assert url.startswith("/static/"), f"{url} is not served by Tripline"
        assert finders.find(url.removeprefix("/static/")), f"{url} is not installed"
