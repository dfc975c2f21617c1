"""PostgreSQL: a kept connection the server has ended is found before a request uses it (the
health check that replaced Django's `SELECT 1` round trip, config/postgresql)."""

import time

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_connection_ended_by_the_server_is_replaced_at_the_next_request():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's connection check")
    connection.ensure_connection()
    assert connection.is_usable()
    sent = connection.connection.pgconn.status, connection.connection.info.backend_pid
    assert connection.is_usable()  # asking twice changes nothing
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"], port=s["PORT"] or 5432, user=s["USER"], password=s["PASSWORD"], dbname=s["NAME"], autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [sent[1]])
    time.sleep(0.2)
    assert not connection.is_usable()
    connection.health_check_done = False  # what a new request does first
    connection.close_if_health_check_failed()
    assert connection.connection is None
    assert get_user_model().objects.count() == 0  # a new connection, no error
    assert connection.connection.info.backend_pid != sent[1]
