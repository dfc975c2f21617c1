"""Tripline settings, read from the environment (and an optional `.env`) with django-environ.

Every variable of the API.md settings table is read here; nothing else reads os.environ.
"""

import ipaddress
import os
import tempfile
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

env = environ.Env()


def _raw(name, default=None):
    # Keys are read verbatim: django-environ would treat a value starting with `$` as a
    # reference to another variable, and a random key may well start with one.
    value = os.environ.get(name)
    if value:
        return value
    if default is None:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off")
    return default


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _raw("SECRET_KEY", "dev-insecure-tripline-secret-key" if DEBUG else None)
# Old keys, comma-separated, while rotating SECRET_KEY: sessions and encrypted secrets still open.
SECRET_KEY_FALLBACKS = [k.strip() for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]
SALT_KEY = [k.strip() for k in _raw("SALT_KEY", "dev-insecure-salt" if DEBUG else None).split(",") if k.strip()]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")

SLACK_API_URL = env.str("SLACK_API_URL", default="https://slack.com/api/")
WEBHOOK_ALLOW_PRIVATE_IPS = env.bool("WEBHOOK_ALLOW_PRIVATE_IPS", default=False)
# /_demo/receiver/<status>/ answers webhooks with that status, for the demo's automations (load_demo).
DEMO_RECEIVER = env.bool("DEMO_RECEIVER", default=DEBUG)
WEBHOOK_RETRY_SCHEDULE = [float(s) for s in env.list("WEBHOOK_RETRY_SCHEDULE", default=["5", "300", "1800", "7200", "18000", "36000", "36000"])]
WEBHOOK_TIMEOUT = tuple(float(s) for s in env.list("WEBHOOK_TIMEOUT", default=["5", "15"]))
if len(WEBHOOK_TIMEOUT) != 2:
    raise ImproperlyConfigured("WEBHOOK_TIMEOUT takes two numbers: connect,read")
AUTOMATION_COOLDOWN = env.int("AUTOMATION_COOLDOWN", default=86400)
# RUN_STALLED: how often each worker's sweep looks for silent runs, and the seconds in one of an
# automation's `minutes` — 60; only a test server shrinks it, to see a "10 minutes" silence in seconds.
RUN_STALLED_SWEEP_SECONDS = env.float("RUN_STALLED_SWEEP_SECONDS", default=30.0)
RUN_STALLED_MINUTE_SECONDS = env.float("RUN_STALLED_MINUTE_SECONDS", default=60.0)
# The team registry that holds the registered models of the MLflow client, made on first use.
MLFLOW_REGISTRY = env.str("MLFLOW_REGISTRY", default="models")
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", MLFLOW_REGISTRY):
    raise ImproperlyConfigured("MLFLOW_REGISTRY is a registry name: letters, digits, '-', '_' and '.'")
# Days to keep events with their executions and delivery attempts; 0 keeps them for ever.
RETENTION_DAYS = env.int("RETENTION_DAYS", default=0)
if RETENTION_DAYS < 0:
    raise ImproperlyConfigured("RETENTION_DAYS takes a number of days, 0 to keep everything")

INSTALLED_APPS = [
    "config.admin_site.TriplineAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here: /api/docs/ works offline
    "django_q",
    "teams",
    "tracking",
    "events",
    "actions",
    "automations",
    "ops",
    "mlflow_server",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "teams.context.ActorMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "config.postgresql"  # the stock backend, its health check without a round trip
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE: without them SQLite raised "database is locked" under concurrent writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

# Keep a database connection per thread between requests and tasks (seconds; 0: a new one each
# time): opening one costs PostgreSQL a process fork and a round trip on every API call. SQLite
# opens a file, cheap: a new one each time, which also sees the file as it is now.
_sqlite = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0 if _sqlite else 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Files the MLflow client logs (artifacts, models) go to the default storage: MEDIA_ROOT on the
# embedded default; FILE_STORAGE names any Django storage class (e.g. django-storages' S3), with
# FILE_STORAGE_OPTIONS (JSON) as its options.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
STORAGES = {
    "default": {
        "BACKEND": env.str("FILE_STORAGE", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env.json("FILE_STORAGE_OPTIONS", default={}),
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# One sign-in page for every role (the admin's own login refuses non-staff); see config/urls.py.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "teams.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # PlainURL runs before any view looks a path or query value up.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "teams.api_input.PlainURL"],
    # JSON only (API.md): form bodies would reach JSON fields without the parser's checks.
    "DEFAULT_PARSER_CLASSES": ["teams.api_input.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "teams.api_input.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "teams.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tripline API",
    "VERSION": "1",
    "DESCRIPTION": "Runs, metrics, artifacts, registries and the automations that watch them.",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# A worker holds an execution it claimed for one attempt's deadline (connect + read timeout)
# plus this margin; when its worker dies, the execution is delivered again once it runs out.
DELIVERY_LEASE_MARGIN = env.float("DELIVERY_LEASE_MARGIN", default=10.0)
if DELIVERY_LEASE_MARGIN <= 0:
    raise ImproperlyConfigured("DELIVERY_LEASE_MARGIN takes a number of seconds above 0")

# Deliveries a task sends at once (threads in the worker's task process, each with its own
# keep-alive connections): a slow receiver holds one of them, never the rest.
DELIVERY_THREADS = env.int("DELIVERY_THREADS", default=16)
if DELIVERY_THREADS < 1:
    raise ImproperlyConfigured("DELIVERY_THREADS takes a whole number of at least 1")

REDIS_URL = env.str("REDIS_URL", default="")
# A task (evaluate or deliver) stops claiming work after 10 s (automations.dispatch.BUDGET), and
# its last attempt gives up after connect + read timeout in all: the task timeout leaves room
# for the longest, and a task is retried only after it.
Q_TIMEOUT = max(120, int(sum(WEBHOOK_TIMEOUT)) + 60)
Q_CLUSTER = {
    "name": env.str("Q_NAME", default="tripline"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 60,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    "poll": 0.2,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Operations: /healthz and /metrics (README, "Running in production").
# A worker counts as alive while its last heartbeat is younger than this many seconds.
WORKER_HEARTBEAT_TIMEOUT = env.float("WORKER_HEARTBEAT_TIMEOUT", default=30)
# With a token, /metrics wants `Authorization: Bearer <token>` from everyone; without, it answers
# only clients in METRICS_ALLOWED_IPS (networks; behind a reverse proxy every client is the proxy).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
try:
    METRICS_ALLOWED_IPS = [ipaddress.ip_network(n, strict=False) for n in env.list("METRICS_ALLOWED_IPS", default=["127.0.0.0/8", "::1/128"])]
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {exc}") from None
# host:port where `manage.py worker` serves its machine's metrics (for workers on machines
# without the web server); unset: not served.
WORKER_METRICS_ADDRESS = env.str("WORKER_METRICS_ADDRESS", default="")
# Every process of one install on one machine (gunicorn workers, qcluster processes) records its
# counters in files here, and /metrics adds them up. prometheus_client reads the variable when it
# is first imported, so it is set here, before any app loads.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=os.path.join(tempfile.gettempdir(), f"tripline-metrics-{Q_CLUSTER['name']}"))
os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=SITE_URL.startswith("https://"))
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])
