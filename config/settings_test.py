"""Settings for the test suite: tasks run synchronously in the test process.

django-q2 reads Q_CLUSTER when it is first imported, so `sync` cannot be switched by a fixture.
End-to-end tests start a real server and qcluster with config.settings instead.
"""

import os

os.environ.setdefault("DEBUG", "false")  # whatever a developer's .env (from `make run`) says
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("SALT_KEY", "test-salt")
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_IPS", "true")

from config.settings import *  # noqa: E402,F403
from config.settings import Q_CLUSTER  # noqa: E402

Q_CLUSTER["sync"] = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ALLOWED_HOSTS = ["*"]
