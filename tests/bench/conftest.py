import pytest

from . import results
from .harness import BenchServer


def pytest_terminal_summary(terminalreporter):
    if not results.ROWS:
        return
    database, broker = results.backend()
    terminalreporter.section(f"benchmarks: {database} + {broker} broker")
    terminalreporter.write_line(results.table(results.ROWS))
    terminalreporter.write_line(f"written to {results.write(results.ROWS)}")


@pytest.fixture
def bench_server(tmp_path):
    """bench_server(worker=True, static=False, **env) starts a fresh server + worker on a database of its own (stopped
    after the test): rows do not inherit each other's backlog."""
    started = []

    def start(worker=True, static=False, **env):
        server = BenchServer(tmp_path / f"server{len(started)}", worker=worker, env=env)
        if static:  # before the server starts: WhiteNoise lists the static files once, at start
            server.manage("collectstatic", "--noinput", "-v", "0")
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
