"""The settings table: every knob of the service, declared once as data.

Each setting has a name, a type, a default, a help text and an environment
variable ``GEOJSON_API_<NAME>``. The same table feeds the Flask app, the
Gunicorn config (``deploy/gunicorn.conf.py``), ``geojson-api settings`` and the
configuration section of the README (a test fails when they drift).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SettingsError as SettingsError  # raised here; importers keep this name

ENV_PREFIX = "GEOJSON_API_"


def default_workers() -> int:
    """Gunicorn's classic rule: two workers per core plus one."""
    return 2 * (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class Rule:
    """What a setting accepts: a test, and the words that tell a user what passes it."""

    expected: str
    test: Callable[[Any], bool]


def one_of(*choices: str, ignore_case: bool = False) -> Rule:
    def test(value: str) -> bool:
        return (value.lower() if ignore_case else value) in choices

    return Rule("one of " + ", ".join(choices), test)


def list_of(*choices: str) -> Rule:
    return Rule(f"a comma list of {', '.join(choices)} (or empty)",
                lambda value: set(comma_list(value)) <= set(choices))


def at_least(low: float) -> Rule:
    return Rule(f"{low} or more", lambda value: value >= low)


def more_than(low: float) -> Rule:
    return Rule(f"more than {low}", lambda value: value > low)


def between(low: int, high: int) -> Rule:
    return Rule(f"between {low} and {high}", lambda value: low <= value <= high)


def matching(pattern: str, expected: str) -> Rule:
    compiled = re.compile(pattern)
    return Rule(expected, lambda value: compiled.fullmatch(value) is not None)


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _setting(default: Any, help: str, group: str, *, shown: str | None = None,
             rule: Rule | None = None, derived: str | None = None) -> Any:
    """Declare one setting: a dataclass field carrying its help text, group and rule.

    ``derived`` says what an unset value is computed from (``geojson-api settings``).
    """
    meta = {"help": help, "group": group, "shown": shown, "rule": rule, "derived": derived}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


NONNEGATIVE = at_least(0)
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")
PORT_OR_ADDRESS = matching(r"(?:\S+:)?\d{1,5}", "a port or HOST:PORT")


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
        derived="GEOJSON_API_DATA_DIR/.state",
    )
    settle_seconds: float = _setting(
        2.0,
        "A data file modified less than this many seconds ago is treated as still being "
        "written; the previous version keeps being served until it settles.",
        "data",
        rule=NONNEGATIVE,
    )
    keep_versions: int = _setting(
        2, "Old versions kept per dataset after a new one is published.", "data",
        rule=NONNEGATIVE,
    )
    precompress: str = _setting(
        "gzip,br",
        "Precompressed variants built once per version (comma list of `gzip`, `br`; empty "
        "for none).",
        "data",
        rule=list_of("gzip", "br"),
    )
    gzip_level: int = _setting(
        6, "gzip level (1-9) for the precompressed variant.", "data", rule=between(1, 9)
    )
    brotli_quality: int = _setting(
        5, "Brotli quality (0-11) for the precompressed variant.", "data",
        rule=between(0, 11),
    )
    compress_min_bytes: int = _setting(
        1024, "Files smaller than this get no compressed variants.", "data",
        rule=NONNEGATIVE,
    )
    precompress_on_publish_bytes: int = _setting(
        8 * 1024 * 1024,
        "Files up to this size get their compressed variants built as part of publishing, so "
        "the first gzip or br request is already compressed; larger files get them from a "
        "background job (identity bytes until it ends; 0: always in the background).",
        "data",
        shown="`8388608` (8 MiB)",
        rule=NONNEGATIVE,
    )
    small_file_bytes: int = _setting(
        65536,
        "Stored files up to this size are kept in each worker's memory and sent without "
        "opening them (0 disables).",
        "data",
        rule=NONNEGATIVE,
    )
    small_file_cache_bytes: int = _setting(
        32 * 1024 * 1024, "Memory budget per worker for those small files.", "data",
        shown="`33554432` (32 MiB)",
        rule=NONNEGATIVE,
    )
    prepare_on_start: bool = _setting(
        True,
        "Gunicorn's master publishes every dataset and builds its variants and index before "
        "the workers start (the workers then build the vector tiles in the background).",
        "data",
    )
    # -- HTTP ---------------------------------------------------------------
    cache_max_age: int = _setting(
        60, "`Cache-Control: max-age` (seconds) on dataset downloads.", "http",
        rule=NONNEGATIVE,
    )
    cache_s_maxage: int = _setting(
        300, "`Cache-Control: s-maxage` (seconds) for shared caches and CDNs.", "http",
        rule=NONNEGATIVE,
    )
    cache_public: bool = _setting(
        True, "Mark dataset downloads `public` (`private` otherwise).", "http"
    )
    cors_origins: str = _setting(
        "*",
        "Origins whose pages may read the service (CORS): `*` for any (anonymous reads, "
        "never with credentials), a comma list such as `https://maps.example.org`, or empty "
        "for same-origin pages only.",
        "http",
        rule=Rule("*, empty, or a comma list of origins (scheme://host[:port])",
                  lambda value: value.strip() in ("", "*") or all(
                      _ORIGIN.fullmatch(o) for o in comma_list(value))),
    )
    cors_credentials: bool = _setting(
        False,
        "Let the listed origins send cookies and HTTP authentication "
        "(`Access-Control-Allow-Credentials`); refused with `*`.",
        "http",
    )
    cors_max_age: int = _setting(
        600, "Seconds a browser may reuse a preflight answer (`Access-Control-Max-Age`).",
        "http", rule=NONNEGATIVE,
    )
    dashboard_whole_file_bytes: int = _setting(
        2 * 1024 * 1024,
        "The dashboard loads layers up to this size as whole files; bigger ones draw their "
        "vector tiles (or, until those are built, the features in view, page by page).",
        "http", shown="`2097152` (2 MiB)",
        rule=NONNEGATIVE,
    )
    # -- shared cache and offload ----------------------------------------------
    redis_url: str = _setting(
        "",
        "Redis URL of the shared cache, e.g. `redis://127.0.0.1:6379/0` (empty: a "
        "per-process in-memory cache).",
        "cache",
        rule=matching(r"|(?:redis|rediss|unix)://\S+",
                      "empty or a redis://, rediss:// or unix:// URL"),
    )
    cache_timeout: int = _setting(
        300, "Seconds a JSON API response stays in the shared cache.", "cache",
        rule=NONNEGATIVE,
    )
    offload: str = _setting(
        "none",
        "Who sends dataset bytes: `none` (the app, with sendfile) or `nginx` (the app "
        "answers with `X-Accel-Redirect`, Nginx sends the stored file).",
        "cache",
        rule=one_of("none", "nginx"),
    )
    broker_url: str = _setting(
        "",
        "Celery broker for background jobs (compressed variants, spatial indexes), e.g. "
        "`redis://127.0.0.1:6379/1`, served by `geojson-api worker` (empty: a thread in "
        "each web process).",
        "cache",
        rule=matching(r"|[A-Za-z][A-Za-z0-9+.-]*://\S*", "empty or a URL (SCHEME://...)"),
    )
    # -- OGC API - Features ----------------------------------------------------
    features_limit: int = _setting(
        10, "Features per items page when the request gives no `limit`.", "features",
        rule=at_least(1),
    )
    features_max_limit: int = _setting(
        10000, "Largest `limit` served; a larger one is clamped to it, not refused.",
        "features",
        rule=at_least(1),
    )
    features_cache_max_bytes: int = _setting(
        1024 * 1024,
        "Items pages up to this size are kept in the shared cache (keyed by version and "
        "query); bigger pages are streamed every time.",
        "features", shown="`1048576` (1 MiB)",
        rule=NONNEGATIVE,
    )
    features_retry_after: int = _setting(
        5, "`Retry-After` (seconds) of a feature query made before its index is ready.",
        "features",
        rule=NONNEGATIVE,
    )
    # -- vector tiles (docs/tiles.md) ---------------------------------------------
    tiles: bool = _setting(
        True,
        "Build vector tiles (OGC API - Tiles) for every version. Off: no tile builds and no "
        "tile endpoints; the dashboard pages big layers by bbox.",
        "tiles",
    )
    tiles_max_zoom: int = _setting(
        14, "Deepest zoom built into each version's tile archive; clients overzoom beyond.",
        "tiles",
        rule=between(0, 16),
    )
    tiles_retry_after: int = _setting(
        5, "`Retry-After` (seconds) of a tile asked for before the version's tiles are built.",
        "tiles",
        rule=NONNEGATIVE,
    )
    # -- Nginx (rendered by `geojson-api nginx-config`) ---------------------------
    nginx_listen: str = _setting(
        "8080", "Port (or HOST:PORT) Nginx listens on.", "nginx", rule=PORT_OR_ADDRESS
    )
    nginx_rate: str = _setting(
        "50r/s", "Request rate allowed per client address (`limit_req`).", "nginx",
        rule=matching(r"\d+r/[sm]", "a rate such as 50r/s or 600r/m"),
    )
    nginx_burst: int = _setting(
        100, "Requests a client may send above the rate before getting 429.", "nginx",
        rule=NONNEGATIVE,
    )
    nginx_microcache: int = _setting(
        1,
        "Seconds Nginx keeps whole small-file responses (those the app sends itself, "
        "up to `GEOJSON_API_SMALL_FILE_BYTES`) and answers repeats from memory (0: off). A "
        "new version reaches clients at most this much later.",
        "nginx",
        rule=NONNEGATIVE,
    )
    nginx_direct: bool = _setting(
        True,
        "With `GEOJSON_API_OFFLOAD=nginx`: Nginx answers plain `GET`/`HEAD` of public whole "
        "files from the current version itself (`<state>/public/<name>`), with the app's "
        "headers; queries, conditionals and other encodings still go to the app. Files up "
        "to `GEOJSON_API_SMALL_FILE_BYTES` are left to the micro-cache while it is on.",
        "nginx",
    )
    nginx_direct_watch: float = _setting(
        1.0,
        "Seconds between two checks of the data folder by each app process when Nginx "
        "answers files itself (a changed or removed file reaches clients this much later).",
        "nginx",
        rule=more_than(0),
    )
    nginx_max_body: str = _setting(
        "512m", "`client_max_body_size`: the largest request body Nginx accepts.", "nginx",
        rule=matching(r"\d+[kKmMgG]?", "a size such as 512m (bytes, or k, m, g)"),
    )
    nginx_tls_listen: str = _setting(
        "8443", "Port (or HOST:PORT) of the TLS server, when a certificate is set.", "nginx",
        rule=PORT_OR_ADDRESS,
    )
    nginx_tls_cert: str = _setting(
        "", "PEM certificate for TLS termination (empty: no TLS server).", "nginx"
    )
    nginx_tls_key: str = _setting("", "PEM private key of that certificate.", "nginx")
    # -- server (Gunicorn) ----------------------------------------------------
    bind: str = _setting(
        "127.0.0.1:8000", "Address Gunicorn listens on (HOST:PORT).", "server",
        rule=matching(r"\S+:\d{1,5}|unix:\S+|fd://\d+", "HOST:PORT or unix:PATH"),
    )
    workers: int = _setting(
        default_workers, "Gunicorn worker processes.", "server", shown="2 x cores + 1",
        rule=at_least(1), derived="2 x cores + 1",
    )
    worker_class: str = _setting(
        "gthread",
        "Gunicorn worker class: `gthread` (sendfile, default by measurement) or `gevent`.",
        "server",
        rule=one_of("gthread", "gevent", "sync"),
    )
    threads: int = _setting(8, "Threads per worker (gthread).", "server", rule=at_least(1))
    worker_connections: int = _setting(
        1000, "Simultaneous clients per worker (gevent).", "server",
        rule=at_least(1),
    )
    timeout: int = _setting(
        60, "Seconds a worker may be silent before the master restarts it.", "server",
        rule=NONNEGATIVE,
    )
    graceful_timeout: int = _setting(
        30, "Seconds workers get to finish requests on restart or stop.", "server",
        rule=NONNEGATIVE,
    )
    keepalive: int = _setting(
        5, "Seconds an idle keep-alive connection stays open.", "server", rule=NONNEGATIVE
    )
    header_timeout: float = _setting(
        10.0,
        "Seconds a client has to send a whole request head (gthread; the poller reads heads, "
        "so slow clients hold no thread). Later, it gets a JSON 408 and is closed.",
        "server",
        rule=more_than(0),
    )
    max_requests: int = _setting(
        10000, "Requests after which a worker is replaced (0 disables).", "server",
        rule=NONNEGATIVE,
    )
    max_requests_jitter: int = _setting(
        1000, "Random extra requests added to `max_requests` per worker.", "server",
        rule=NONNEGATIVE,
    )
    access_log: str = _setting(
        "-", "Access log file (`-` for stdout, empty to disable).", "server"
    )
    error_log: str = _setting("-", "Error log file (`-` for stderr).", "server")
    log_level: str = _setting(
        "info", "Log level: debug, info, warning, error.", "server",
        rule=one_of("debug", "info", "warning", "error", ignore_case=True),
    )
    proc_name: str = _setting("geojson-api", "Process name shown by ps/top.", "server")
    forwarded_allow_ips: str = _setting(
        "127.0.0.1,::1",
        "Proxies whose X-Forwarded-Proto Gunicorn trusts (comma list, `*` for any): set it "
        "to Nginx's address, or `*` on a private network, so links say https behind TLS.",
        "server",
    )
    # -- operations (docs/operations.md) ---------------------------------------
    metrics: bool = _setting(
        True,
        "Prometheus metrics at `GET /metrics` (requests, datasets, artifacts, cache, jobs, "
        "processes), summed over Gunicorn's workers.",
        "operations",
    )
    metrics_port: int = _setting(
        0,
        "A separate port for `/metrics` (on the bind address's host; the app port then has no "
        "`/metrics`); `geojson-api worker` serves its job metrics there (0: off, `/metrics` on "
        "the app port only).",
        "operations",
        rule=between(0, 65535),
    )
    metrics_token: str = _setting(
        "",
        "Bearer token `/metrics` asks for (`Authorization: Bearer <token>`; a wrong one is a "
        "401). Empty: no token.",
        "operations",
    )
    metrics_datasets: str = _setting(
        "",
        "Comma list of dataset names allowed as a `dataset` label of the dataset metrics "
        "(the others are only in the `_all` sum).",
        "operations",
    )
    metrics_dir: Path | None = _setting(
        None,
        "Folder of the metrics files shared by Gunicorn's workers, emptied when the master "
        "starts (empty: a fresh folder per master under the system's temporary folder).",
        "operations",
        shown="(empty: a fresh temporary folder)",
    )
    metrics_flush_interval: float = _setting(
        1.0,
        "Seconds between two flushes of a worker's counts into the shared metrics files (a "
        "scrape flushes the worker answering it; a killed worker loses at most this much).",
        "operations",
        rule=more_than(0),
    )
    log_format: str = _setting(
        "json",
        "Log lines of the app, Gunicorn (error and access logs) and the job worker: `json` "
        "(one object per line, with the request id) or `text` (the classic formats, for a "
        "terminal). Nginx's access log follows it too.",
        "operations",
        rule=one_of("json", "text"),
    )
    request_id_header: str = _setting(
        "X-Request-ID",
        "Request header whose id (when sane: up to 128 letters, digits or `+/=._:@-`) names "
        "a request in every log line; otherwise one is made. Echoed in the answer.",
        "operations",
        rule=matching(r"[A-Za-z][A-Za-z0-9-]{0,63}", "an HTTP header name such as X-Request-ID"),
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
    def direct_files(self) -> bool:
        """Nginx answers public whole files itself (offload to Nginx, direct path on)."""
        return self.offload == "nginx" and self.nginx_direct

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """``("*",)``, the listed origins, or nothing (CORS off)."""
        value = self.cors_origins.strip()
        return ("*",) if value == "*" else tuple(comma_list(value))

    @property
    def precompress_encodings(self) -> tuple[str, ...]:
        return tuple(comma_list(self.precompress))

    @property
    def metrics_dataset_list(self) -> tuple[str, ...]:
        return tuple(comma_list(self.metrics_datasets))


_PATH_FIELDS = {"data_dir", "state_dir", "profile_dir", "metrics_dir"}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


# type -> (parser, what a value of that type looks like, for the error message)
_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "int": (int, "an integer"),
    "float": (float, "a number"),
    "bool": (_parse_bool, "true or false (also 1/0, yes/no, on/off)"),
    "str": (str, "text"),
    "Path": (Path, "a path"),
    "Path | None": (lambda raw: Path(raw) if raw else None, "a path (or empty)"),
}


def parse_value(name: str, raw: str) -> Any:
    """Turn the text of an environment variable into the setting's type."""
    parser, expected = _PARSERS[type_name(name)]
    try:
        return parser(raw.strip())
    except ValueError:
        raise SettingsError(f"{env_name(name)} must be {expected} (got {raw!r})") from None


def type_name(name: str) -> str:
    return str(_FIELDS[name].type)


def _validate(s: Settings) -> None:
    """Check each value against its field's rule, then the rules that join two fields."""
    for f in dataclasses.fields(s):
        rule: Rule | None = f.metadata["rule"]
        if rule is None:
            continue
        value = getattr(s, f.name)
        try:
            ok = rule.test(value)
        except (TypeError, AttributeError):  # a value of the wrong type, from Python code
            ok = False
        if not ok:
            raise SettingsError(f"{env_name(f.name)} must be {rule.expected} (got {value!r})")
    if bool(s.nginx_tls_cert) != bool(s.nginx_tls_key):
        raise SettingsError(f"{env_name('nginx_tls_cert')} and {env_name('nginx_tls_key')} "
                            "must be both set or both empty")
    if s.cors_credentials and s.cors_origins.strip() == "*":
        raise SettingsError(f"{env_name('cors_credentials')} cannot be true while "
                            f"{env_name('cors_origins')} is '*': list the origins instead")
    if s.metrics_port and s.bind.endswith(f":{s.metrics_port}"):
        raise SettingsError(f"{env_name('metrics_port')} must differ from the port of "
                            f"{env_name('bind')} ({s.bind})")
    if s.features_limit > s.features_max_limit:
        raise SettingsError(
            f"{env_name('features_limit')} must be at most {env_name('features_max_limit')} "
            f"({s.features_max_limit}) (got {s.features_limit})")


# Set (outside the prefix) by a process that has already warned, for its children.
UNKNOWN_WARNED = "_GEOJSON_API_UNKNOWN_WARNED"


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per ``GEOJSON_API_*`` variable that names no setting.

    Not an error: the variable may be meant for something else (Kubernetes
    service links, say), but a misspelt setting silently keeps its default.
    """
    environ = os.environ if environ is None else environ
    known = [name.upper() for name in _FIELDS]  # compared without the shared prefix
    lines = []
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX) and key not in _ENV_NAMES:
            close = difflib.get_close_matches(key.removeprefix(ENV_PREFIX), known, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            lines.append(f"unknown setting {key} is ignored{hint}")
    return lines


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_ENV_NAMES = {env_name(name) for name in _FIELDS}


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


def effective(settings: Settings, environ: Mapping[str, str] | None = None
              ) -> list[tuple[SettingDoc, str, str]]:
    """(row, the value in force, where it comes from) for every setting.

    Where it comes from is ``environment``, ``default``, or ``derived: ...``
    for a default computed from something else (the state folder, the workers).
    Folders are shown absolute, as the service will use them.
    """
    environ = os.environ if environ is None else environ
    rows = []
    for row in table():
        derived = _FIELDS[row.name].metadata["derived"]
        if row.env in environ:
            origin = "environment"
        elif derived:
            origin = f"derived: {derived}"
        else:
            origin = "default"
        rows.append((row, _show_value(settings, row.name), origin))
    return rows


def _show_value(settings: Settings, name: str) -> str:
    value = settings.state_path if name == "state_dir" else getattr(settings, name)
    if isinstance(value, Path):
        return str(value.absolute())
    if value is None:
        return "(off)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else "(empty)"
