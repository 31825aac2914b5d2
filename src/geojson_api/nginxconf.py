"""Render the Nginx configuration from the settings table.

One template (``nginx/geojson-api.conf.j2``, http-level) serves every
environment: the compose stack and Kubernetes render it with ``geojson-api
nginx-config`` into ``conf.d/``; the local stack and the tests wrap it in a
standalone ``nginx.conf`` (``nginx/nginx.conf.j2``) that keeps every runtime
file inside one folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from . import compress, cors, http, public, requestid
from .delivery import OFFLOAD_PREFIX
from .settings import Settings

MIME_TYPES = "/etc/nginx/mime.types"


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("geojson_api", "nginx"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


TILES_SOCKET = "/tmp/geojson-api-tiles.sock"
"""Where Nginx's own tile-range server listens (docs/tiles.md), unless told otherwise."""

STATUS_LISTEN = "127.0.0.1:8081"
"""Where Nginx serves ``/stub_status`` to prometheus-nginx-exporter beside it
(compose, Kubernetes), unless told otherwise; always a loopback address."""

STATUS_PATH = "/stub_status"


def _loopback(listen: str) -> str:
    host = listen.rsplit(":", 1)[0] if ":" in listen else ""
    if host not in {"127.0.0.1", "[::1]"}:
        raise ValueError(f"the stub_status server must listen on loopback, not {listen!r}")
    return listen


def _direct_encodings() -> list[tuple[str, str, str]]:
    """(Accept-Encoding, first suffix, second suffix) to try, as the app ranks codings."""
    rows = []
    for value in public.COMMON_ACCEPT_ENCODINGS:
        suffixes = [compress.SUFFIX[coding] for coding in http.accepted_encodings(value)]
        first, second = [*suffixes, "", ""][:2]
        rows.append((value, first, second))
    return rows


def render_site(settings: Settings, upstreams: Sequence[str],
                access_log: str = "/dev/stdout",
                cache_dir: str = "/var/cache/nginx/geojson-api",
                tiles_socket: str = TILES_SOCKET,
                status_listen: str | None = STATUS_LISTEN) -> str:
    """The http-level configuration: upstream, rate limit, server(s), offload locations,
    the tile-range server on the unix socket ``tiles_socket``, and (unless
    ``status_listen`` is None) the loopback ``stub_status`` server. ``access_log`` is
    where the access log goes; its format is ``GEOJSON_API_LOG_FORMAT``'s."""
    if not upstreams:
        raise ValueError("at least one upstream HOST:PORT is needed")
    template = _environment().get_template("geojson-api.conf.j2")
    origins = settings.cors_origin_list
    state = Path(settings.state_path).absolute()
    cors_list = [] if origins == (cors.ANY,) else list(origins)
    return template.render(
        direct=settings.direct_files,
        direct_prefix=public.NGINX_PREFIX,
        public_dir=public.folder(state).as_posix(),
        direct_encodings=_direct_encodings(),
        direct_codings=[(compress.SUFFIX[c], c) for c in http.ENCODINGS],
        direct_vary=http.VARY_ENCODING + (", Origin" if cors_list else ""),
        cache_control=http.cache_control(settings),
        cors_credentials=settings.cors_credentials,
        cors=bool(origins),
        cors_list=cors_list,
        cors_expose=", ".join(cors.EXPOSED_HEADERS),
        upstreams=list(upstreams),
        listen=settings.nginx_listen,
        rate=settings.nginx_rate,
        burst=settings.nginx_burst,
        max_body=settings.nginx_max_body,
        access_log=access_log,
        log_format=settings.log_format,
        request_id_header=settings.request_id_header,
        request_id_var="http_" + settings.request_id_header.lower().replace("-", "_"),
        request_id_pattern=requestid.PATTERN,
        offload_prefix=OFFLOAD_PREFIX,
        microcache=settings.nginx_microcache,
        cache_dir=cache_dir,
        tiles_socket=tiles_socket,
        status_listen=_loopback(status_listen) if status_listen else None,
        versions_dir=(state / "versions").as_posix(),
        tls=bool(settings.nginx_tls_cert),
        tls_listen=settings.nginx_tls_listen,
        tls_cert=settings.nginx_tls_cert,
        tls_key=settings.nginx_tls_key,
    )


def write_standalone(settings: Settings, upstreams: Sequence[str], run_dir: Path,
                     status_listen: str | None = None) -> Path:
    """Write ``nginx.conf`` and ``geojson-api.conf`` into ``run_dir``; returns nginx.conf.
    ``stub_status`` is served only when ``status_listen`` is given."""
    run_dir = run_dir.absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    site = run_dir / "geojson-api.conf"
    site.write_text(render_site(settings, upstreams,
                                access_log=f"{run_dir}/access.log",
                                cache_dir=f"{run_dir}/cache",
                                tiles_socket=f"{run_dir}/tiles.sock",
                                status_listen=status_listen))
    main = _environment().get_template("nginx.conf.j2").render(
        run_dir=run_dir.as_posix(),
        site_conf=site.as_posix(),
        mime_types=MIME_TYPES,
        user="root" if os.geteuid() == 0 else None,
    )
    conf = run_dir / "nginx.conf"
    conf.write_text(main)
    return conf
