"""Two worker clusters evaluating history batches of one run at the same time: a metric
automation's condition state is locked per run while evaluated, so the false → true transition
and the cooldown are seen by one evaluation only. (On SQLite evaluations are serialised by
the database's single writer anyway; the test runs there too.)"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.live import LiveTripline, wait_for

pytestmark = pytest.mark.e2e
BATCHES = 40


@pytest.fixture
def live(tmp_path):
    server = LiveTripline(tmp_path).start()
    server.start_worker("worker2")
    yield server
    server.stop()


def test_two_clusters_logging_into_one_run_fire_a_metric_automation_once(live):
    bob = live.session("bob")
    base = f"{live.url}/api/v1/teams/acme"
    bob.post(f"{base}/projects/", json={"name": "race"})
    ids = []
    for name, cmp in [("high", "$gt"), ("low", "$lt")]:
        created = bob.post(f"{base}/automations/", json={
            "name": name, "scope": {"type": "project", "project": "race"}, "action": {"type": "NO_OP"},
            "event": {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": cmp, "threshold": 1},
        })
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    assert bob.post(f"{base}/projects/race/runs/", json={"id": "r"}).status_code == 201
    history = f"{base}/projects/race/runs/r/history/"

    def log(step):  # values swing across the threshold: each condition turns true again and again
        return bob.post(history, json={"rows": [{"step": step, "metrics": {"loss": 5 if step % 2 else 0}}]}).status_code

    # The first batches too at the same time: the run's record of the metric, which concurrent
    # batches lock to add up, does not exist yet; each creates it or finds it created.
    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(log, range(BATCHES))) == [201] * BATCHES
    counted = live.manage("shell", "-c", "from tracking.models import RunMetric; print('COUNT', RunMetric.objects.get(key='loss').count)").stdout
    assert counted.split("COUNT", 1)[1].split() == [str(BATCHES)]  # every batch added up
    wait_for(lambda: live.unevaluated_events() == 0, timeout=120, message="every batch evaluated")
    for pk in ids:  # within the cooldown (a day), each fires once, whichever worker saw what first
        assert bob.get(f"{base}/automations/{pk}/executions/").json()["count"] == 1
