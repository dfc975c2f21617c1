"""The README's first steps, as written, on a fresh copy of the tree: `make run`, then in a fresh
shell (no DEBUG, SECRET_KEY or DATABASE_URL in the environment) the token command, the API with
that token, and signing in on the login page with the password `make run` printed."""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import requests

from tests.live import ROOT, free_port, wait_for

# The README's first steps run on SQLite whatever database the suite uses: once is enough.
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                                  reason="runs on SQLite, as `make run` does; the SQLite pass of the suite runs it")]

KEEP_OUT = shutil.ignore_patterns(".git", ".venv", ".env", "db.sqlite3*", "staticfiles", "__pycache__", "*.egg-info")


@pytest.fixture
def checkout(tmp_path):
    """A copy of the tree as a fresh clone has it, sharing this virtualenv."""
    tree = tmp_path / "tripline"
    shutil.copytree(ROOT, tree, ignore=KEEP_OUT)
    (tree / ".venv").symlink_to(ROOT / ".venv")
    return tree


def fresh_shell(tmp_path):
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}


def test_the_readme_commands_work_in_a_fresh_shell_after_make_run(checkout, tmp_path):
    port = free_port()
    log = open(tmp_path / "make-run.log", "w+")
    # -o: the shared virtualenv is installed already (make would reinstall it into this copy)
    run = subprocess.Popen(["make", "-o", ".venv/bin/.installed", "run", f"ADDR=127.0.0.1:{port}"], cwd=checkout,
                           env=fresh_shell(tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        printed = wait_for(lambda: re.search(r"Sign in at (\S+) as admin / (\S+)", (tmp_path / "make-run.log").read_text()),
                           timeout=120, message="make run to load the demo")
        assert printed.group(1) == "http://localhost:8000/login/"
        password = printed.group(2)
        site = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(site + "/login/"), timeout=60, message="the web server")

        env_file = (checkout / ".env").read_text()
        assert re.search(r"^SECRET_KEY=\S{40,}$", env_file, re.M) and re.search(r"^SALT_KEY=\S{20,}$", env_file, re.M)
        assert oct((checkout / ".env").stat().st_mode & 0o777) == "0o600"

        # README: `.venv/bin/python manage.py drf_create_token admin`, in another shell
        made = subprocess.run([".venv/bin/python", "manage.py", "drf_create_token", "admin"], cwd=checkout, env=fresh_shell(tmp_path),
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        token = re.search(r"Generated token (\w+) for user admin", made.stdout).group(1)
        me = requests.get(site + "/api/v1/me/", headers={"Authorization": f"Token {token}"}, timeout=10)
        assert me.status_code == 200 and me.json()["username"] == "admin"

        browser = requests.Session()
        form = browser.get(site + "/login/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        landed = browser.post(site + "/login/", data={"username": "admin", "password": password, "csrfmiddlewaretoken": csrf}, timeout=10)
        assert landed.url == site + "/demo/" and "Sign out" in landed.text

        # the demo's webhook reaches Tripline's own demo receiver (make run: --site, loopback allowed)
        delivered = site + "/demo/executions/?status=succeeded&event=ADD_ARTIFACT_ALIAS"
        wait_for(lambda: "promoted to production: deploy" in browser.get(delivered, timeout=10).text, timeout=90,
                 message="the demo's webhook to be delivered")

        # a second `make run` keeps the keys
        subprocess.run(["make", "-o", ".venv/bin/.installed", ".env"], cwd=checkout, env=fresh_shell(tmp_path), check=True, capture_output=True)
        assert (checkout / ".env").read_text() == env_file
    finally:
        os.killpg(run.pid, signal.SIGTERM)  # Ctrl-C's SIGINT would do the same
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group: a qcluster can hang on SIGTERM (django-q2 #346; issue 8,
        # "Stopping cleanly", is fixed in the worker command).
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.wait()
        log.close()


def test_an_existing_env_file_is_never_replaced(checkout, tmp_path):
    mine = "DEBUG=true\nSECRET_KEY=kept-as-it-is\nSALT_KEY=mine\n"
    (checkout / ".env").write_text(mine)
    time.sleep(0.01)
    subprocess.run(["make", "-o", ".venv/bin/.installed", ".env"], cwd=checkout, env=fresh_shell(tmp_path), check=True, capture_output=True)
    assert (checkout / ".env").read_text() == mine


def _answers(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
