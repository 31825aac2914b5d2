"""The settings table: every knob of the service, declared once as data.

Each setting has a name, a type, a default, a help text and an environment
variable ``GEOJSON_API_<NAME>``. The same table feeds the Flask app, the
Gunicorn config (``deploy/gunicorn.conf.py``), ``geojson-api settings`` and the
configuration section of the README (a test fails when they drift).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "GEOJSON_API_"


def default_workers() -> int:
    """Gunicorn's classic rule: two workers per core plus one."""
    return 2 * (os.cpu_count() or 1) + 1


def _setting(default: Any, help: str, group: str, *, shown: str | None = None) -> Any:
    """Declare one setting: a dataclass field carrying its help text and group."""
    meta = {"help": help, "group": group, "shown": shown}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """All settings, typed. Build with :meth:`from_env`; never mutate."""

    # -- data ---------------------------------------------------------------
    data_dir: Path = _setting(
        Path("data"), "Folder of published datasets (`*.geojson`, `*.json`).", "data"
    )
    state_dir: Path | None = _setting(
        None,
        "Folder for versions and derived artifacts (copies, gzip/brotli variants, "
        "metadata). Must be writable.",
        "data",
        shown="`<data_dir>/.state`",
    )
    settle_seconds: float = _setting(
        2.0,
        "A data file modified less than this many seconds ago is treated as still being "
        "written; the previous version keeps being served until it settles.",
        "data",
    )
    keep_versions: int = _setting(
        2, "Old versions kept per dataset after a new one is published.", "data"
    )
    precompress: str = _setting(
        "gzip,br",
        "Precompressed variants built once per version (comma list of `gzip`, `br`; empty "
        "for none).",
        "data",
    )
    gzip_level: int = _setting(6, "gzip level (1-9) for the precompressed variant.", "data")
    brotli_quality: int = _setting(
        5, "Brotli quality (0-11) for the precompressed variant.", "data"
    )
    compress_min_bytes: int = _setting(
        1024, "Files smaller than this get no compressed variants.", "data"
    )
    precompress_on_publish_bytes: int = _setting(
        8 * 1024 * 1024,
        "Files up to this size get their compressed variants built as part of publishing, so "
        "the first gzip or br request is already compressed; larger files get them from a "
        "background job (identity bytes until it ends; 0: always in the background).",
        "data",
        shown="`8388608` (8 MiB)",
    )
    small_file_bytes: int = _setting(
        65536,
        "Stored files up to this size are kept in each worker's memory and sent without "
        "opening them (0 disables).",
        "data",
    )
    small_file_cache_bytes: int = _setting(
        32 * 1024 * 1024, "Memory budget per worker for those small files.", "data",
        shown="`33554432` (32 MiB)",
    )
    prepare_on_start: bool = _setting(
        True,
        "Gunicorn's master publishes every dataset and builds its variants before the "
        "workers start.",
        "data",
    )
    # -- HTTP ---------------------------------------------------------------
    cache_max_age: int = _setting(
        60, "`Cache-Control: max-age` (seconds) on dataset downloads.", "http"
    )
    cache_s_maxage: int = _setting(
        300, "`Cache-Control: s-maxage` (seconds) for shared caches and CDNs.", "http"
    )
    cache_public: bool = _setting(
        True, "Mark dataset downloads `public` (`private` otherwise).", "http"
    )
    # -- shared cache and offload ----------------------------------------------
    redis_url: str = _setting(
        "",
        "Redis URL of the shared cache, e.g. `redis://127.0.0.1:6379/0` (empty: a "
        "per-process in-memory cache).",
        "cache",
    )
    cache_timeout: int = _setting(
        300, "Seconds a JSON API response stays in the shared cache.", "cache"
    )
    offload: str = _setting(
        "none",
        "Who sends dataset bytes: `none` (the app, with sendfile) or `nginx` (the app "
        "answers with `X-Accel-Redirect`, Nginx sends the stored file).",
        "cache",
    )
    broker_url: str = _setting(
        "",
        "Celery broker for background jobs (compressed variants, spatial indexes), e.g. "
        "`redis://127.0.0.1:6379/1`, served by `geojson-api worker` (empty: a thread in "
        "each web process).",
        "cache",
    )
    # -- OGC API - Features ----------------------------------------------------
    features_limit: int = _setting(
        10, "Features per items page when the request gives no `limit`.", "features"
    )
    features_max_limit: int = _setting(
        10000, "Largest `limit` served; a larger one is clamped to it, not refused.",
        "features",
    )
    features_cache_max_bytes: int = _setting(
        1024 * 1024,
        "Items pages up to this size are kept in the shared cache (keyed by version and "
        "query); bigger pages are streamed every time.",
        "features", shown="`1048576` (1 MiB)",
    )
    features_retry_after: int = _setting(
        5, "`Retry-After` (seconds) of a feature query made before its index is ready.",
        "features",
    )
    # -- Nginx (rendered by `geojson-api nginx-config`) ---------------------------
    nginx_listen: str = _setting("8080", "Port (or HOST:PORT) Nginx listens on.", "nginx")
    nginx_rate: str = _setting(
        "50r/s", "Request rate allowed per client address (`limit_req`).", "nginx"
    )
    nginx_burst: int = _setting(
        100, "Requests a client may send above the rate before getting 429.", "nginx"
    )
    nginx_microcache: int = _setting(
        1,
        "Seconds Nginx keeps whole small-file responses (those the app sends itself, "
        "up to `GEOJSON_API_SMALL_FILE_BYTES`) and answers repeats from memory (0: off). A "
        "new version reaches clients at most this much later.",
        "nginx",
    )
    nginx_max_body: str = _setting(
        "512m", "`client_max_body_size`: the largest request body Nginx accepts.", "nginx"
    )
    nginx_tls_listen: str = _setting(
        "8443", "Port (or HOST:PORT) of the TLS server, when a certificate is set.", "nginx"
    )
    nginx_tls_cert: str = _setting(
        "", "PEM certificate for TLS termination (empty: no TLS server).", "nginx"
    )
    nginx_tls_key: str = _setting("", "PEM private key of that certificate.", "nginx")
    # -- server (Gunicorn) ----------------------------------------------------
    bind: str = _setting("127.0.0.1:8000", "Address Gunicorn listens on (HOST:PORT).", "server")
    workers: int = _setting(
        default_workers, "Gunicorn worker processes.", "server", shown="2 x cores + 1"
    )
    worker_class: str = _setting(
        "gthread",
        "Gunicorn worker class: `gthread` (sendfile, default by measurement) or `gevent`.",
        "server",
    )
    threads: int = _setting(8, "Threads per worker (gthread).", "server")
    worker_connections: int = _setting(
        1000, "Simultaneous clients per worker (gevent).", "server"
    )
    timeout: int = _setting(
        60, "Seconds a worker may be silent before the master restarts it.", "server"
    )
    graceful_timeout: int = _setting(
        30, "Seconds workers get to finish requests on restart or stop.", "server"
    )
    keepalive: int = _setting(5, "Seconds an idle keep-alive connection stays open.", "server")
    header_timeout: float = _setting(
        10.0,
        "Seconds a client has to send a whole request head (gthread; the poller reads heads, "
        "so slow clients hold no thread). Later, it gets a JSON 408 and is closed.",
        "server",
    )
    max_requests: int = _setting(
        10000, "Requests after which a worker is replaced (0 disables).", "server"
    )
    max_requests_jitter: int = _setting(
        1000, "Random extra requests added to `max_requests` per worker.", "server"
    )
    access_log: str = _setting(
        "-", "Access log file (`-` for stdout, empty to disable).", "server"
    )
    error_log: str = _setting("-", "Error log file (`-` for stderr).", "server")
    log_level: str = _setting("info", "Log level: debug, info, warning, error.", "server")
    proc_name: str = _setting("geojson-api", "Process name shown by ps/top.", "server")
    forwarded_allow_ips: str = _setting(
        "127.0.0.1,::1",
        "Proxies whose X-Forwarded-Proto Gunicorn trusts (comma list, `*` for any): set it "
        "to Nginx's address, or `*` on a private network, so links say https behind TLS.",
        "server",
    )
    # -- debugging ------------------------------------------------------------
    profile_dir: Path | None = _setting(
        None,
        "Folder where every request's cProfile profile is written, one file per request, "
        "read with `geojson-api profile DIR` (empty: off). Slows requests down: never in "
        "production. See docs/profiling.md.",
        "debug",
        shown="(empty: off)",
    )

    # -- construction -------------------------------------------------------
    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Read ``GEOJSON_API_*`` variables; keyword overrides win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None:
                values[f.name] = parse_value(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.name in _PATH_FIELDS:
                object.__setattr__(self, f.name, Path(value))
        _validate(self)

    @property
    def state_path(self) -> Path:
        """The state folder, defaulting to ``<data_dir>/.state``."""
        return self.state_dir if self.state_dir is not None else self.data_dir / ".state"

    @property
    def precompress_encodings(self) -> tuple[str, ...]:
        return tuple(e.strip() for e in self.precompress.split(",") if e.strip())


_PATH_FIELDS = {"data_dir", "state_dir", "profile_dir"}


class SettingsError(ValueError):
    """A setting has a value of the wrong type or out of range."""


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": _parse_bool,
    "str": str,
    "Path": Path,
    "Path | None": lambda raw: Path(raw) if raw else None,
}


def parse_value(name: str, raw: str) -> Any:
    """Turn the text of an environment variable into the setting's type."""
    kind = type_name(name)
    try:
        return _PARSERS[kind](raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{env_name(name)}: {exc}") from None


def type_name(name: str) -> str:
    return str(_FIELDS[name].type)


_WORKER_CLASSES = {"gthread", "gevent", "sync"}
_OFFLOADS = {"none", "nginx"}
_ENCODINGS = {"gzip", "br"}


def _validate(s: Settings) -> None:
    checks = [
        (s.worker_class in _WORKER_CLASSES, "worker_class", f"one of {sorted(_WORKER_CLASSES)}"),
        (s.offload in _OFFLOADS, "offload", f"one of {sorted(_OFFLOADS)}"),
        (bool(s.nginx_tls_cert) == bool(s.nginx_tls_key), "nginx_tls_cert/nginx_tls_key",
         "both set or both empty"),
        (set(s.precompress_encodings) <= _ENCODINGS, "precompress", "a list of gzip, br"),
        (1 <= s.gzip_level <= 9, "gzip_level", "between 1 and 9"),
        (0 <= s.brotli_quality <= 11, "brotli_quality", "between 0 and 11"),
        (s.workers >= 1 and s.threads >= 1, "workers/threads", "at least 1"),
        (s.keep_versions >= 0, "keep_versions", "0 or more"),
        (s.settle_seconds >= 0, "settle_seconds", "0 or more"),
        (s.precompress_on_publish_bytes >= 0, "precompress_on_publish_bytes", "0 or more"),
        (s.header_timeout > 0, "header_timeout", "more than 0"),
        (":" in s.bind or s.bind.startswith("unix:"), "bind", "HOST:PORT or unix:PATH"),
        (1 <= s.features_limit <= s.features_max_limit, "features_limit",
         "between 1 and features_max_limit"),
    ]
    for ok, name, expected in checks:
        if not ok:
            raise SettingsError(f"setting {name} must be {expected}")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


@dataclass(frozen=True)
class SettingDoc:
    """One row of the settings table as users see it."""

    name: str
    env: str
    type: str
    default: str
    help: str
    group: str


def table() -> list[SettingDoc]:
    """The settings table, in declaration order."""
    rows = []
    for f in dataclasses.fields(Settings):
        rows.append(
            SettingDoc(
                name=f.name,
                env=env_name(f.name),
                type=str(f.type).replace("Path | None", "path").replace("Path", "path"),
                default=f.metadata["shown"] or _show_default(f),
                help=f.metadata["help"],
                group=f.metadata["group"],
            )
        )
    return rows


def _show_default(f: dataclasses.Field[Any]) -> str:
    value = f.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def markdown_table() -> str:
    """The configuration section of the README, generated from the table."""
    lines = ["| Environment variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for row in table():
        lines.append(f"| `{row.env}` | {row.type} | {row.default} | {row.help} |")
    return "\n".join(lines) + "\n"
