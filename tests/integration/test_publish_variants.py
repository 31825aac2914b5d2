"""Compressed bytes right after a publish, through a real Gunicorn.

Files up to ``GEOJSON_API_PRECOMPRESS_ON_PUBLISH_BYTES`` get their variants
while they are published, so the very first gzip or br request is compressed;
larger files answer identity until their background job ends, then compressed.
"""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import brotli
import requests

from .servers import GunicornServer

LIMIT = 200_000  # between the small (~50 kB) and the medium (~5 MB) sample


def publish(source: Path, target: Path) -> None:
    tmp = target.with_name("." + target.name + ".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)


def test_first_request_after_a_publish_is_compressed(samples: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    server = GunicornServer(data, tmp_path / "gunicorn.log", workers=2, env={
        "GEOJSON_API_PRECOMPRESS_ON_PUBLISH_BYTES": str(LIMIT),
        "GEOJSON_API_PREPARE_ON_START": "false"})
    server.start()
    try:
        small = (samples / "small.geojson").read_bytes()
        publish(samples / "small.geojson", data / "fresh.geojson")
        first = requests.get(f"{server.url}/geojson/fresh", timeout=30,
                             headers={"Accept-Encoding": "br"}, stream=True)
        assert first.status_code == 200 and first.headers["Content-Encoding"] == "br"
        assert brotli.decompress(first.raw.read()) == small
        # The other worker (a new connection may reach either) sees the same.
        for _ in range(4):
            again = requests.get(f"{server.url}/geojson/fresh", timeout=30,
                                 headers={"Accept-Encoding": "gzip"}, stream=True)
            assert again.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(again.raw.read()) == small

        publish(samples / "medium.geojson", data / "big.geojson")
        big = requests.get(f"{server.url}/geojson/big", timeout=60,
                           headers={"Accept-Encoding": "gzip"}, stream=True)
        assert big.status_code == 200
        assert "Content-Encoding" not in big.headers  # above the limit: the job builds it
        assert big.raw.read() == (samples / "medium.geojson").read_bytes()
        deadline = time.monotonic() + 120
        encoding = None
        while encoding != "gzip" and time.monotonic() < deadline:
            time.sleep(0.2)
            encoding = requests.head(f"{server.url}/geojson/big", timeout=30,
                                     headers={"Accept-Encoding": "gzip"}).headers.get(
                                         "Content-Encoding")
        assert encoding == "gzip"
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()
