"""Every setting of the service, read from the environment in one place.

Each field is documented in the README's "Settings" table; the environment variable is the
field name in upper case (``DATABASE_URL``, ``REPLY_TIMEOUT_SECONDS``, ...).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Obvious on purpose: a deployment that forgot SECRET_KEY is easy to spot, and refused when
# ENVIRONMENT=production.
DEV_SECRET_KEY = "dev-only-secret-key-do-not-use-in-production"  # noqa: S105


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = "postgresql://root@127.0.0.1:5432/root"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every stream, group, key and channel name starts with this, so several deployments
    # (or test runs, or the benchmark) can share one Redis without seeing each other.
    redis_namespace: str = Field(default="signup", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Interface the worker's /metrics listens on (the web's is uvicorn's --host).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    service_name: str = "signup-service"

    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    # Hashing runs in threads (bcrypt releases the GIL). A few per core keep the cores busy
    # while finished hashes wait for the event loop to pick them up; more only add memory.
    bcrypt_threads: int = Field(default_factory=lambda: 4 * (os.cpu_count() or 1), ge=1)

    reply_timeout_seconds: float = Field(default=5.0, gt=0)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=1)
    # A reservation that was never enqueued (its web process died) frees the key after this.
    idempotency_lease_seconds: int = Field(default=30, ge=1)
    outcome_ttl_seconds: int = Field(default=86_400, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    # The whole request body must arrive within this; a client trickling it slower gets 408.
    body_read_timeout_seconds: float = Field(default=10.0, gt=0)
    # Per client (its IP as uvicorn sees it; behind a proxy, set uvicorn's
    # --forwarded-allow-ips) and shared by all web processes; 0 turns the limit off.
    signup_rate_limit: int = Field(default=20, ge=0)
    signup_rate_window_seconds: int = Field(default=60, ge=1)
    # Requests one web process serves at once; more get 503 at the door.
    max_in_flight_requests: int = Field(default=1024, ge=1)

    # 1: while a batch is being applied the next one accumulates in the stream, so reads
    # come in batches. With more, an idle reader is always waiting and takes entries one
    # by one as they arrive: a transaction per command.
    worker_concurrency: int = Field(default=1, ge=1, description="batches in flight per worker")
    worker_batch_size: int = Field(default=64, ge=1, le=1000)
    worker_block_ms: int = Field(default=2_000, ge=10)
    # An entry pending this long on a consumer is taken over (XAUTOCLAIM) by another one.
    # Far above the longest batch; a busy worker also refreshes the idle time of what it
    # holds, so slow work is never stolen.
    worker_claim_idle_ms: int = Field(default=30_000, ge=100)
    worker_max_deliveries: int = Field(default=5, ge=1)
    # honcho sends SIGKILL 5 s after SIGTERM, Kubernetes and Heroku 30 s.
    worker_shutdown_grace_seconds: float = Field(default=4.0, ge=0)
    deadletter_maxlen: int = Field(default=10_000, ge=1)
    # Acked entries kept in the commands stream for inspection; older ones are trimmed.
    stream_keep_entries: int = Field(default=1_000, ge=0)
    stream_trim_interval_seconds: float = Field(default=5.0, gt=0)
    # Backpressure: above this many unread + unacked commands the web answers 503.
    max_backlog: int = Field(default=10_000, ge=1)
    worker_name: str = Field(
        default_factory=lambda: (
            os.environ.get("HONCHO_PROCESS_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )
    )

    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    redis_max_connections: int = Field(default=64, ge=2)

    ready_max_cpu_percent: float = Field(default=100.0, gt=0, le=100)
    ready_max_memory_percent: float = Field(default=95.0, gt=0, le=100)
    ready_max_disk_percent: float = Field(default=95.0, gt=0, le=100)

    log_json: bool = False
    log_level: str = "INFO"

    # production refuses to start without a real SECRET_KEY.
    environment: Literal["development", "production"] = "development"
    # Signs verification tokens (HMAC-SHA256). Rotating it invalidates tokens in flight.
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # Where the links in mails point: the web's address as users reach it.
    public_base_url: str = Field(default="http://localhost:5000", pattern=r"^https?://[^\s]+$")
    # smtp://user:pass@host:port (STARTTLS when offered), smtp+starttls:// (STARTTLS
    # required), smtps:// (TLS from the start). Unset: the mailer logs each message instead.
    smtp_url: SecretStr | None = None
    mail_from: str = "Signup service <no-reply@localhost>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    verification_ttl_seconds: int = Field(default=86_400, ge=60)
    # Resends per address per hour, shared by every web process (0: no resends).
    verification_resend_limit: int = Field(default=3, ge=0)
    # Events older than this go, once every consumer group has read them.
    events_retention_seconds: int = Field(default=7 * 86_400, ge=60)
    # Messages one mailer process sends at once.
    mailer_concurrency: int = Field(default=8, ge=1)
    # The mailer runs at the lowest CPU priority there is (SCHED_IDLE, nice 19): mail is
    # background work, so on a host it shares with the web and the workers it takes only
    # the CPU time they leave, falls behind during a burst (its lag is on the dashboard)
    # and catches up after. false: the priority it was started with.
    mailer_background: bool = True

    @model_validator(mode="after")
    def _secret_key_in_production(self) -> Self:
        key = self.secret_key.get_secret_value()
        if self.environment == "production" and (key == DEV_SECRET_KEY or len(key) < 32):
            raise ValueError(
                "SECRET_KEY must be set to at least 32 random characters when "
                "ENVIRONMENT=production (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        return self


def load_settings() -> Settings:
    """Settings from the environment; on a bad value, one line per problem and exit 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            name = "_".join(str(p) for p in error["loc"]).upper() or "SECRET_KEY"
            print(f"invalid setting {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
