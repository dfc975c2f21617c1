"""Django's PostgreSQL backend with a health check that costs no round trip.

CONN_HEALTH_CHECKS makes Django check a kept connection once per request before using it; the
stock check sends `SELECT 1` and waits for the answer: under bench row 1 that round trip was
7.7 % of an API call's time on PostgreSQL. Here the check reads, without blocking, what the
server sent while the connection was idle: a server that ended the connection (restart,
pg_terminate_backend, idle timeout) has closed the socket, which the read finds, and the
connection is dropped and opened anew exactly as after a failed `SELECT 1`."""

from django.db.backends.postgresql import base
from psycopg import OperationalError, pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        if self.connection is None or self.connection.closed:
            return False
        pgconn = self.connection.pgconn
        try:
            # twice: a terminated backend sends its notice, then closes; the second read meets the end
            pgconn.consume_input()
            pgconn.consume_input()
        except OperationalError:
            return False
        return pgconn.status == pq.ConnStatus.OK and pgconn.transaction_status == pq.TransactionStatus.IDLE
