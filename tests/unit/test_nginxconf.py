"""The Nginx template: renders for every setting combination and passes `nginx -t`."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from geojson_api.nginxconf import render_site, write_standalone
from geojson_api.settings import Settings

from ..conftest import require


def _locations(text: str) -> dict[str, str]:
    """Location header -> body, for the (non-nested) location blocks of a rendered file."""
    return {m.group(1).strip(): m.group(2)
            for m in re.finditer(r"location ([^{]+)\{(.*?)\n    \}", text, re.S)}


@pytest.mark.parametrize("offload", ["none", "nginx"])
@pytest.mark.parametrize("microcache", [0, 1])
def test_locations_that_set_proxy_headers_keep_the_common_ones(microcache: int,
                                                                offload: str) -> None:
    """Nginx drops every inherited proxy_set_header in a location that sets its own."""
    text = render_site(Settings(nginx_microcache=microcache, offload=offload),
                       ["127.0.0.1:8000"])
    for header, body in _locations(text).items():
        if "proxy_set_header" in body:
            for needed in ('Connection ""', "X-Forwarded-Proto $scheme", "Host $http_host"):
                assert f"proxy_set_header {needed};" in body, (header, needed)


def test_upstreams_and_settings_are_rendered() -> None:
    settings = Settings(nginx_rate="7r/s", nginx_burst=3, nginx_max_body="1m",
                        nginx_microcache=0)
    text = render_site(settings, ["10.0.0.1:8000", "10.0.0.2:8000"])
    assert "server 10.0.0.1:8000" in text and "server 10.0.0.2:8000" in text
    assert "rate=7r/s" in text and "burst=3" in text and "client_max_body_size 1m" in text
    assert "proxy_cache " not in text and "ssl_certificate" not in text
    with pytest.raises(ValueError):
        render_site(settings, [])


def test_direct_files_only_with_offload_and_the_setting() -> None:
    assert "@geojson_direct_fallback" in render_site(Settings(offload="nginx"), ["a:1"])
    for settings in (Settings(), Settings(offload="nginx", nginx_direct=False)):
        assert "_direct" not in render_site(settings, ["a:1"])


# (tls, offload, microcache, CORS origins, credentials)
VARIANTS = [(False, "none", 1, "", False), (True, "none", 1, "", False),
            (False, "nginx", 1, "*", False), (True, "nginx", 0, "", False),
            (False, "nginx", 0, "https://a.test,https://b.test", True)]


@pytest.mark.parametrize(("tls", "offload", "microcache", "origins", "credentials"), VARIANTS)
def test_nginx_accepts_the_rendered_configuration(tmp_path: Path, tls: bool, offload: str,
                                                  microcache: int, origins: str,
                                                  credentials: bool) -> None:
    nginx = require("nginx")
    settings = Settings(data_dir=tmp_path, nginx_listen="127.0.0.1:18080", offload=offload,
                        nginx_microcache=microcache, cors_origins=origins,
                        cors_credentials=credentials)
    if tls:
        cert = tmp_path / "tls"
        subprocess.run([str(Path(__file__).resolve().parents[2] / "scripts" / "make-cert"),
                        str(cert)], check=True, capture_output=True, timeout=60)
        settings = dataclasses.replace(settings, nginx_tls_cert=str(cert / "cert.pem"),
                                       nginx_tls_key=str(cert / "key.pem"))
    conf = write_standalone(settings, ["127.0.0.1:8000"], tmp_path / "run")
    result = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
