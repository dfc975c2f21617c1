"""Tripline settings, read from the environment (and an optional `.env`) with django-environ.

Every variable of the API.md settings table is read here; nothing else reads os.environ.
"""

import os
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
WEBHOOK_RETRY_SCHEDULE = [float(s) for s in env.list("WEBHOOK_RETRY_SCHEDULE", default=["5", "300", "1800", "7200", "18000", "36000", "36000"])]
WEBHOOK_TIMEOUT = tuple(float(s) for s in env.list("WEBHOOK_TIMEOUT", default=["5", "15"]))
if len(WEBHOOK_TIMEOUT) != 2:
    raise ImproperlyConfigured("WEBHOOK_TIMEOUT takes two numbers: connect,read")
AUTOMATION_COOLDOWN = env.int("AUTOMATION_COOLDOWN", default=86400)
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE: without them SQLite raised "database is locked" under concurrent writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

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
# One sign-in page for every role (the admin's own login refuses non-staff); see config/urls.py.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
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

REDIS_URL = env.str("REDIS_URL", default="")
# A task is one evaluation, or one delivery attempt, which gives up after connect + read timeout
# in all: the task timeout leaves room for the longest, and a task is retried only after it.
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
