"""Minga's settings: one module, driven by the environment (docs/deployment.md has the table).

With nothing set, Minga runs on the embedded default: SQLite, the in-memory channel layer,
Celery tasks run in-process, email to the console, DEBUG on and a generated development secret.
Production (`DEBUG=0`) refuses to start without `SECRET_KEY` and `ALLOWED_HOSTS`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def celery_broker_url(redis_url: str) -> str:
    """Celery's name for the Redis of REDIS_URL. Kombu reads `redis://` and `rediss://` as
    redis-py does, but knows no `unix://`: a unix socket is `redis+socket://PATH` there, its
    database number `virtual_host`, and any other option stays in the query."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    if not parts.path:
        raise ImproperlyConfigured("REDIS_URL names no socket: unix:///path/to/redis.sock?db=0.")
    query = dict(parse_qsl(parts.query))
    db = query.pop("db", "0")
    if not db.isdigit():
        raise ImproperlyConfigured(f"REDIS_URL's db must be a number, not {db!r}.")
    password = query.pop("password", None) or unquote(parts.password or "")
    user = query.pop("username", None) or unquote(parts.username or "")
    auth = ""
    if user or password:
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return f"redis+socket://{auth}{parts.path}?" + urlencode({**query, "virtual_host": db})


def mailer_from_url(url: str) -> dict[str, object]:
    """`smtp://user:password@host:port`, `smtp+tls://...` (STARTTLS) or `smtp+ssl://...`."""
    parts = urlsplit(url)
    schemes = {"smtp": (False, False), "smtp+tls": (True, False), "smtp+ssl": (False, True)}
    if parts.scheme not in schemes:
        raise ImproperlyConfigured(
            f"EMAIL_URL must start with smtp://, smtp+tls:// or smtp+ssl://, not {parts.scheme!r}."
        )
    if not parts.hostname:
        raise ImproperlyConfigured("EMAIL_URL has no host.")
    use_tls, use_ssl = schemes[parts.scheme]
    return {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": parts.hostname,
            "port": parts.port or (465 if use_ssl else 587 if use_tls else 25),
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "use_tls": use_tls,
            "use_ssl": use_ssl,
            "timeout": 20,
        },
    }


def development_secret() -> str:
    """A per-checkout secret kept in a git-ignored file, so sessions survive a restart."""
    path = BASE_DIR / ".dev-secret-key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        path.write_text(key)
        path.chmod(0o600)
        return key


# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", True)
TESTING = env_bool("MINGA_TESTING", False)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if "*" in ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS must not contain '*': list the host names Minga answers to. "
        "A wildcard would also let any web page open a websocket with a member's cookies."
    )

if DEBUG:
    SECRET_KEY = os.environ.get("SECRET_KEY") or development_secret()
    if not ALLOWED_HOSTS:
        ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
else:
    missing = [
        name for name in ("SECRET_KEY", "ALLOWED_HOSTS") if not os.environ.get(name, "").strip()
    ]
    if missing:
        raise ImproperlyConfigured(
            f"Production settings (DEBUG=0) need {' and '.join(missing)} in the environment."
        )
    SECRET_KEY = os.environ["SECRET_KEY"]
# Rotating the key: put the old one in SECRET_KEY_FALLBACKS (comma-separated) for a while, so
# sessions, reset links and unsubscribe links signed with it keep working.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")

HTTPS = env_bool("HTTPS", not DEBUG)
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()

DJANGO_APPS = [
    "daphne",  # first: its runserver serves websockets too
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
]
THIRD_PARTY_APPS = [
    "channels",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "django_countries",
    "ninja",
]
LOCAL_APPS = [
    "minga",
    "frontend",
    "community",
    "forums",
    "events",
    "notifications",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    "minga.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "minga.middleware.MemberPreferencesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
]

ROOT_URLCONF = "minga.urls"
ASGI_APPLICATION = "minga.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project templates first: our allauth layouts must win over allauth's own.
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context_processors.shell",
            ],
        },
    },
]

# --- Data -------------------------------------------------------------------------------------

if DATABASE_URL:
    # Under ASGI every request may run on another thread: persistent connections leak, so
    # connections are borrowed from Django's psycopg pool instead (CONN_MAX_AGE must be 0).
    default_db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if default_db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL.")
    default_db["OPTIONS"] = {
        "pool": {
            "min_size": env_int("DATABASE_POOL_MIN", 1),
            "max_size": env_int("DATABASE_POOL_MAX", 10),
            "timeout": 10,
        },
    }
    if env_bool("DATABASE_PREPARED_STATEMENTS", True):
        # Parameters bound by the server, and a statement a connection has run 5 times prepared
        # there (psycopg's protocol-level prepare; Django's default is neither): PostgreSQL
        # stops parsing and planning a post's statements, the gateway's hops and the pages'
        # reads on every call: a third less of its CPU per post (docs/performance.md, "Prepared
        # statements"). Behind PgBouncer's transaction pooling this needs PgBouncer 1.21 or
        # later with `max_prepared_statements` set; else turn it off (docs/deployment.md).
        default_db["OPTIONS"] |= {"server_side_binding": True, "prepare_threshold": 5}
    # No server-side cursors: `QuerySet.iterator()` (a form's choices, for one) declared a
    # `WITH HOLD` cursor, three round trips for a handful of rows, and a cursor that PgBouncer's
    # transaction pooling (docs/deployment.md) would send to another server connection. Nothing
    # here iterates a result too big to fetch at once.
    default_db["DISABLE_SERVER_SIDE_CURSORS"] = True
    default_db["TEST"] = {"NAME": os.environ.get("DATABASE_TEST_NAME") or None}
else:
    default_db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SQLITE_PATH") or BASE_DIR / "db.sqlite3",
        # IMMEDIATE: a writer takes the lock up front instead of failing on upgrade under load.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
DATABASES = {"default": default_db}
# The gateway's database hops run on this many threads of their own (each with a connection from
# the pool above), so one slow hop does not queue every connect, subscribe and post of the
# process behind it. 0: Channels' one database thread (SQLite takes one writer at a time).
GATEWAY_DB_THREADS = env_int("GATEWAY_DB_THREADS", 4 if DATABASE_URL else 0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The web processes' GIL switch interval (minga.asgi), in microseconds; Python's default is
# 5,000. A page's view thread and the gateway's database threads give the GIL back to the event
# loop, which fans frames out, at every query; with 5 ms slices each of those waited up to 5 ms
# to get it back while the loop was busy, and a page under fan-out load waited for dozens of
# them (docs/performance.md, "H5: the GIL's switch interval"; ADR 0012).
GIL_SWITCH_INTERVAL_US = env_int("GIL_SWITCH_INTERVAL_US", 500)
if not 0 < GIL_SWITCH_INTERVAL_US <= 100_000:
    raise ImproperlyConfigured(
        f"GIL_SWITCH_INTERVAL_US must be 1 to 100000 microseconds, not {GIL_SWITCH_INTERVAL_US}."
    )

# Seconds. Redis answers in well under a millisecond; these only bound the wait on a Redis that
# is paused, overloaded or unreachable (tests/reliability/test_faults.py measures them).
REDIS_SOCKET_TIMEOUT = 1.0
REDIS_CONNECT_TIMEOUT = 1.0

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Why pub/sub and not the core layer: docs/decisions/0003-channel-layer.md. The
            # subclass bounds a publish's whole wait, queue for the connection included. Its
            # path names channels_redis: forums.presence keeps presence in Redis for such layers.
            "BACKEND": "minga.channels_redis_bounded.BoundedPubSubChannelLayer",
            "CONFIG": {
                "publish_timeout": 2 * REDIS_SOCKET_TIMEOUT,
                "breaker_seconds": 1.0,
                # Timeouts bound what a paused or unreachable Redis costs: a publish (after a
                # commit, inside the request) waits at most REDIS_SOCKET_TIMEOUT, then is
                # logged and dropped; clients catch up by seq (docs/operations.md, "Redis").
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": REDIS_SOCKET_TIMEOUT,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                    }
                ],
                # Pub/sub is not scoped by database number: deployments (or test runs) that share
                # one Redis keep apart by prefix.
                "prefix": os.environ.get("REDIS_PREFIX", "minga"),
            },
        },
    }
    CACHES = {
        "default": {
            # A cache that cannot answer must not turn a request into a 500 (rate limits then
            # fail open for the outage): minga.cache.ResilientRedisCache logs and degrades.
            "BACKEND": "minga.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "minga",
            "OPTIONS": {
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
            },
        },
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # One channel per process (the gateway's hub) carries every group's frames: the
            # default capacity of 100 would drop frames of a burst (the layer drops, silently).
            "CONFIG": {"capacity": 100_000},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SESSION_ENGINE = "minga.sessions"  # Django's db sessions, read by a written statement

# --- Celery -----------------------------------------------------------------------------------

CELERY_BROKER_URL = celery_broker_url(REDIS_URL) if REDIS_URL else "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL  # embedded default: tasks run in-process
# One prefix namespaces a deployment in a shared Redis: channel-layer groups and the task queue.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("REDIS_PREFIX", "minga")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Enqueueing happens after a commit, inside the request: with Redis away it must fail fast (the
# email sweep sends what was not enqueued). socket_timeout stays above the worker's 1 s BRPOP.
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_timeout": 2.0,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 0}
CELERY_TIMEZONE = "UTC"
# The periodic work: `celery -A minga beat` in production (Procfile); under `make run` (no
# broker) `python manage.py run_periodic` runs the same schedule inside its own process.
from celery.schedules import crontab  # noqa: E402 - next to the only setting that needs it

CELERY_BEAT_SCHEDULE = {
    "events-reminders": {"task": "events.reminders_due_task", "schedule": 60.0},
    # Immediate emails whose task was lost, held by quiet hours, or due for a retry.
    "notifications-email-sweep": {
        "task": "notifications.email_sweep_task",
        "schedule": crontab(minute="*/5"),
    },
    # Hourly: each member's digest goes at their local morning (notifications.email).
    "notifications-digests": {"task": "notifications.digest_task", "schedule": crontab(minute=5)},
    # Expired sessions (Django's clearsessions): every sign-in leaves a row behind.
    "community-sessions-clear": {
        "task": "community.sessions_clear_task",
        "schedule": crontab(minute=45, hour=3),
    },
    # Uploads never posted and the files of deleted messages.
    "forums-attachments-purge": {
        "task": "forums.attachments_purge_task",
        "schedule": crontab(minute=30, hour=3),
    },
}

# --- Accounts ---------------------------------------------------------------------------------

AUTH_USER_MODEL = "community.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing dominates test time otherwise; never set MINGA_TESTING in a deployment.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"

ACCOUNT_ADAPTER = "community.adapters.AccountAdapter"
ACCOUNT_FORMS = {"signup": "community.forms.DomainSignupForm"}
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "reauthenticate": "10/m/user",
    "confirm_email": "1/3m/key",
}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Minga] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if HTTPS else "http"
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = False
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG and not HTTPS
MFA_TOTP_ISSUER = "Minga"
USERSESSIONS_TRACK_ACTIVITY = False

# Sign-up is by invitation. MINGA_SIGNUP_DOMAINS (comma-separated) opens sign-up to addresses
# of those domains only, e.g. "trabajo.gob.ar,labour.gc.ca".
MINGA_SIGNUP_DOMAINS = [d.lower().lstrip("@") for d in env_list("MINGA_SIGNUP_DOMAINS")]
MINGA_INVITATION_DAYS = env_int("MINGA_INVITATION_DAYS", 14)
# The public address, for links in emails and calendar feeds made outside a request.
MINGA_SITE_URL = (
    os.environ.get("MINGA_SITE_URL", "").strip().rstrip("/")
    or f"{'https' if HTTPS else 'http'}://{ALLOWED_HOSTS[0] if not DEBUG else '127.0.0.1:8000'}"
)
# The host part of calendar UIDs (event-<id>@<domain>): stable for the life of a deployment.
MINGA_CALENDAR_DOMAIN = os.environ.get("MINGA_CALENDAR_DOMAIN", "").strip() or (
    ALLOWED_HOSTS[0] if not DEBUG else "minga.calendar"
)

# --- Email ------------------------------------------------------------------------------------

DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Minga <minga@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Without EMAIL_URL: the console in development; in production a local MTA on port 25 (as
# Django's own default), since verification and invitations must reach people.
MAILERS = {
    "default": mailer_from_url(os.environ.get("EMAIL_URL", "").strip() or "smtp://localhost:25")
    if os.environ.get("EMAIL_URL", "").strip() or not DEBUG
    else {"BACKEND": "django.core.mail.backends.console.EmailBackend"},
}

# --- Internationalisation ---------------------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", _("English")),
    ("es", _("Spanish")),
    ("pt", _("Portuguese")),
    ("fr", _("French")),
]
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "frontend" / "locale_vendor"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"

# --- Static files -----------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        ),
    },
}

# --- Security ---------------------------------------------------------------------------------

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
CSRF_TRUSTED_ORIGINS = [
    f"{'https' if HTTPS else 'http'}://{host.lstrip('.')}"
    for host in ALLOWED_HOSTS
    if host not in {"testserver"}
]
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if TRUSTED_PROXY_COUNT:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
elif not DEBUG:
    # HTTPS=0 in production is for loopback tests only: the deploy check says so (W-series).
    SILENCED_SYSTEM_CHECKS = [
        "security.W004",
        "security.W008",
        "security.W012",
        "security.W016",
    ]

DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Logging ----------------------------------------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "minga.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "minga": {"level": LOG_LEVEL},
        "community": {"level": LOG_LEVEL},
        "forums": {"level": LOG_LEVEL},
        "events": {"level": LOG_LEVEL},
        "notifications": {"level": LOG_LEVEL},
        # One line per request comes from minga.request; Django's own would repeat it.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "ERROR"},
        "django.channels.server": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
    },
}

ADMINS = env_list("ADMINS")
