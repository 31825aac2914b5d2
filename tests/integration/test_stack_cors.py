"""CORS with a list of origins through the real stack: Nginx's micro-cache keeps one
answer per origin (Vary: Origin), and its own errors name only listed origins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_stack import DASHBOARD, RunningStack, cors_fields, running_stack

OTHER = "http://127.0.0.1:10"


@pytest.fixture(scope="module")
def listed(served_data: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningStack]:
    env = {"GEOJSON_API_CORS_ORIGINS": f"{DASHBOARD},{OTHER}",
           "GEOJSON_API_CORS_CREDENTIALS": "true"}
    with running_stack(served_data, tmp_path_factory.mktemp("stack-cors"), "nginx",
                       env) as stack:
        yield stack


@pytest.mark.parametrize("path", ["/geojson/large", "/geojson/small?listed=1",
                                  "/api/datasets", "/geojson/missing"])
def test_listed_origins_get_their_own_answer(listed: RunningStack, path: str) -> None:
    expected = [("access-control-allow-credentials", "true"),
                ("access-control-allow-origin", DASHBOARD)]
    for _ in range(2):  # the second small-file answer comes from the micro-cache
        fields = cors_fields(listed.url + path)
        assert [f for f in fields if f[0] != "access-control-expose-headers"
                and f[0] != "vary"] == expected
        assert any(k == "vary" and "Origin" in v for k, v in fields)
        assert fields == cors_fields(listed.part_url("app1") + path)
    other = cors_fields(listed.url + path, Origin=OTHER)
    assert ("access-control-allow-origin", OTHER) in other
    stranger = cors_fields(listed.url + path, Origin="http://127.0.0.1:11")
    assert not [f for f in stranger if f[0].startswith("access-control")]


def test_nginx_errors_name_only_listed_origins(listed: RunningStack) -> None:
    assert ("access-control-allow-origin", DASHBOARD) in cors_fields(
        f"{listed.url}/_errors/not-found")
    stranger = cors_fields(f"{listed.url}/_errors/not-found", Origin="http://127.0.0.1:11")
    assert not [f for f in stranger if f[0].startswith("access-control")]
