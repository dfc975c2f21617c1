import pytest

from tests.live import LiveTripline


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveTripline(tmp_path_factory.mktemp("live")).start()
    yield server
    server.stop()
