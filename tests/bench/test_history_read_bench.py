"""`make bench`: bounded history reads of a 1,000,000-point run, through the API. Prints figures,
asserts nothing about speed."""

import math
import time

import pytest
from django.db import connection

from tests.token_client import token_client
from tracking.history import log_history
from tracking.models import Run

from .results import record

pytestmark = [pytest.mark.bench, pytest.mark.django_db]

POINTS = 1_000_000


def test_history_reads_of_a_million_points(team, project, bob):
    run = Run.objects.create(project=project, run_id="big", name="big")
    for start in range(0, POINTS, 100_000):
        log_history(run, [{"step": s, "metrics": {"loss": math.sin(s / 1000)}} for s in range(start, start + 100_000)])
    client, url = token_client(bob), "/api/v1/teams/acme/projects/vision/runs/big/history/?keys=loss"

    def read(query):
        started = time.perf_counter()
        response = client.get(url + query)
        assert response.status_code == 200
        return (time.perf_counter() - started) * 1000, response

    read(f"&min_step={POINTS - 10}")  # a first request pays for what Django and DRF load once
    first_page_before_analyze = None
    if connection.vendor == "postgresql":
        # Right after a bulk load the planner has no statistics until autovacuum analyzes the
        # table (within a minute): the first page was planned as a scan and sort of all the
        # run's points. Measured both ways, the table is the one autovacuum leads to (as row 5).
        first_page_before_analyze = read("")[0]
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE tracking_metricpoint")
    for letter, (label, query) in zip("abcde", [("first page (10,000 points)", ""), ("a page mid-run", "&min_step=500000"),
                         ("samples=1000 over the run", "&samples=1000"), ("samples=10000 over the run", "&samples=10000"),
                         ("samples=1000 over 10% of the run", "&samples=1000&min_step=0&max_step=99999")]):
        ms, response = read(query)
        measured, extra = f"{ms:,.0f} ms", {}
        if letter == "a" and first_page_before_analyze is not None:
            measured += f" ({first_page_before_analyze:,.0f} ms before the table's first ANALYZE)"
            extra["ms_before_analyze"] = first_page_before_analyze
        record(f"8{letter}", f"history read through the API, {label}", f"{POINTS:,} points logged", measured,
               "report", points=len(response.json()["loss"]), **extra)
