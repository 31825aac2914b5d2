"""The settings table: parsing, validation, and docs that cannot drift."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from geojson_api.settings import (
    Settings,
    SettingsError,
    effective,
    env_name,
    markdown_table,
    parse_value,
    table,
    unknown_variables,
)

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


# -- validation names the variable and what it accepts ---------------------------

def test_log_level_is_refused_at_start_up_with_the_accepted_values() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"GEOJSON_API_LOG_LEVEL": "loud"})
    assert str(caught.value) == (
        "GEOJSON_API_LOG_LEVEL must be one of debug, info, warning, error (got 'loud')")
    assert Settings.from_env({"GEOJSON_API_LOG_LEVEL": "WARNING"}).log_level == "WARNING"


RULED = [f for f in dataclasses.fields(Settings) if f.metadata["rule"] is not None]


def test_every_number_setting_is_bounded() -> None:
    numbers = {f.name for f in dataclasses.fields(Settings) if f.type in ("int", "float")}
    assert numbers <= {f.name for f in RULED}


@pytest.mark.parametrize("f", RULED, ids=[f.name for f in RULED])
def test_a_value_breaking_a_rule_names_variable_rule_and_value(
    f: dataclasses.Field[object],
) -> None:
    """-1 breaks every number rule, and text with a space and `!` every text rule."""
    raw = "-1" if f.type in ("int", "float") else "no good!"
    env = env_name(f.name)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({env: raw})
    value = parse_value(f.name, raw)
    assert str(caught.value) == f"{env} must be {f.metadata['rule'].expected} (got {value!r})"


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [("WORKERS", "abc", "an integer"), ("SETTLE_SECONDS", "soon", "a number"),
     ("CACHE_PUBLIC", "perhaps", "true or false")],
)
def test_a_value_that_does_not_parse_says_the_type(name: str, raw: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({f"GEOJSON_API_{name}": raw})
    assert str(caught.value).startswith(f"GEOJSON_API_{name} must be {expected}")
    assert str(caught.value).endswith(f"(got {raw!r})")


def test_rules_joining_two_settings_name_both() -> None:
    with pytest.raises(SettingsError, match="GEOJSON_API_NGINX_TLS_CERT and "
                                            "GEOJSON_API_NGINX_TLS_KEY must be both set"):
        Settings.from_env({"GEOJSON_API_NGINX_TLS_CERT": "/c.pem"})
    with pytest.raises(SettingsError, match=r"GEOJSON_API_FEATURES_LIMIT must be at most "
                                            r"GEOJSON_API_FEATURES_MAX_LIMIT \(50\) \(got 60\)"):
        Settings.from_env({"GEOJSON_API_FEATURES_LIMIT": "60",
                           "GEOJSON_API_FEATURES_MAX_LIMIT": "50"})


@pytest.mark.parametrize(
    ("name", "good"),
    [("BIND", "[::1]:8000"), ("BIND", "unix:/run/geojson.sock"), ("BIND", "fd://3"),
     ("NGINX_LISTEN", "0.0.0.0:80"), ("NGINX_RATE", "600r/m"), ("NGINX_MAX_BODY", "1g"),
     ("REDIS_URL", "rediss://cache:6380/0"), ("BROKER_URL", "amqp://guest@mq//"),
     ("PRECOMPRESS", "br"), ("WORKER_CLASS", "sync")],
)
def test_accepted_values_pass(name: str, good: str) -> None:
    Settings.from_env({f"GEOJSON_API_{name}": good})


def test_unknown_variables_are_named_with_the_closest_setting() -> None:
    lines = unknown_variables({"GEOJSON_API_WORKRES": "3", "GEOJSON_API_WORKERS": "2",
                               "GEOJSON_API_ZZZ": "1", "HOME": "/root"})
    assert lines == [
        "unknown setting GEOJSON_API_WORKRES is ignored (did you mean GEOJSON_API_WORKERS?)",
        "unknown setting GEOJSON_API_ZZZ is ignored",
    ]


def test_effective_values_show_derived_defaults(tmp_path: Path) -> None:
    shown = {row.name: (value, origin) for row, value, origin in
             effective(Settings.from_env({"GEOJSON_API_DATA_DIR": str(tmp_path)}),
                       {"GEOJSON_API_DATA_DIR": str(tmp_path)})}
    assert shown["data_dir"] == (str(tmp_path), "environment")
    assert shown["state_dir"] == (str(tmp_path / ".state"),
                                  "derived: GEOJSON_API_DATA_DIR/.state")
    assert shown["workers"][1] == "derived: 2 x cores + 1" and int(shown["workers"][0]) >= 3
    assert shown["profile_dir"] == ("(off)", "default")
    assert shown["redis_url"] == ("(empty)", "default")
    assert shown["cache_public"] == ("true", "default")
