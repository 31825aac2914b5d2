"""The settings table: parsing, validation, and docs that cannot drift."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from geojson_api.settings import Settings, SettingsError, markdown_table, table

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.data_dir == Path("data") and s.state_path == Path("data/.state")
    assert s.workers >= 3 and s.worker_class == "gthread"
    assert s.precompress_encodings == ("gzip", "br")


def test_environment_values_are_typed() -> None:
    s = Settings.from_env({
        "GEOJSON_API_DATA_DIR": "/srv/data", "GEOJSON_API_WORKERS": "3",
        "GEOJSON_API_CACHE_PUBLIC": "off", "GEOJSON_API_SETTLE_SECONDS": "0.5",
        "GEOJSON_API_STATE_DIR": "/var/lib/x", "GEOJSON_API_PRECOMPRESS": "",
    })
    assert s.data_dir == Path("/srv/data") and s.workers == 3
    assert s.cache_public is False and s.settle_seconds == 0.5
    assert s.state_path == Path("/var/lib/x") and s.precompress_encodings == ()


def test_overrides_win_over_environment() -> None:
    s = Settings.from_env({"GEOJSON_API_BIND": "0.0.0.0:1"}, bind="127.0.0.1:2")
    assert s.bind == "127.0.0.1:2"


@pytest.mark.parametrize(
    ("name", "value"),
    [("WORKERS", "many"), ("CACHE_PUBLIC", "perhaps"), ("WORKER_CLASS", "eventlet"),
     ("PRECOMPRESS", "zstd"), ("GZIP_LEVEL", "12"), ("BIND", "8000"), ("THREADS", "0")],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({f"GEOJSON_API_{name}": value})
    assert name.lower().split("_")[0] in str(caught.value).lower()


def test_every_field_is_documented() -> None:
    rows = {row.name: row for row in table()}
    assert set(rows) == {f.name for f in dataclasses.fields(Settings)}
    assert all(row.help and row.env.startswith("GEOJSON_API_") for row in rows.values())


def test_readme_configuration_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert match, "README.md lacks the settings markers"
    assert match.group(1) == markdown_table(), "run `make docs` to refresh the README table"


def test_gunicorn_config_follows_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setenv("GEOJSON_API_WORKERS", "7")
    monkeypatch.setenv("GEOJSON_API_WORKER_CLASS", "gevent")
    monkeypatch.setenv("GEOJSON_API_ACCESS_LOG", "")
    from gunicorn.config import Config

    from geojson_api import gunicorn_conf

    conf = importlib.reload(gunicorn_conf)
    cfg = Config()
    for name, value in vars(conf).items():
        if name in cfg.settings:
            cfg.set(name, value)
    assert cfg.workers == 7 and cfg.worker_class_str == "gevent" and cfg.accesslog is None
    assert cfg.settings["control_socket_disable"].get() is True
    assert cfg.sendfile is True  # any value of the `sendfile` setting would turn it off
