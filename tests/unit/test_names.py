"""Dataset names: what is accepted, what is refused, and the attack suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api.errors import InvalidName
from geojson_api.names import is_valid_name, name_of_file, parse_request_name

from ..attacks import ATTACKS


@pytest.mark.parametrize("name", ["roads", "Roads_2024", "a", "a.b", "x-y.z_1", "9" * 128])
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", ".a", "a.", "a..b", "a/b", "a\\b", "a b", "a%2e", "a\x00", "é", "-a",
     "_a", "a" * 129, "x.geojson", "x.json"],
)
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)
    if not name.endswith(".geojson"):  # in a URL, "x.geojson" means dataset "x"
        with pytest.raises(InvalidName):
            parse_request_name(name)


def test_geojson_suffix_is_optional_in_urls() -> None:
    assert parse_request_name("roads.geojson") == "roads"
    assert parse_request_name("roads") == "roads"


def test_files_that_publish_names() -> None:
    assert name_of_file("roads.geojson") == "roads"
    assert name_of_file("roads.json") == "roads"
    assert name_of_file(".roads.geojson") is None
    assert name_of_file("roads.txt") is None
    assert name_of_file("bad name.geojson") is None


@pytest.fixture
def attack_app(make_app: object, data_dir: Path, tmp_path: Path) -> Flask:
    """An app whose data folder sits next to secrets and has links leading out of it."""
    outside = tmp_path / "outside.geojson"
    outside.write_bytes(b'{"type":"FeatureCollection","features":[],"secret":1}')
    (tmp_path / "secret.txt").write_text("secret")
    (data_dir / "outside.geojson").symlink_to(outside)
    (data_dir / "escape.geojson").symlink_to("../outside.geojson")
    (data_dir / "inside-link-to-outside.geojson").symlink_to(data_dir / "escape.geojson")
    (data_dir / ".hidden.geojson").write_bytes(b'{"type":"FeatureCollection","features":[]}')
    return make_app()  # type: ignore[operator,no-any-return]


def test_attack_list_is_long_enough() -> None:
    assert len(set(ATTACKS)) >= 40


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_are_refused(attack_app: Flask, attack: str) -> None:
    client: FlaskClient = attack_app.test_client()
    for prefix in ("/geojson/", "/api/datasets/"):
        response = client.get(prefix + attack)
        assert response.status_code in (400, 404), (prefix, attack, response.status_code)
        assert response.is_json
        assert set(response.json) >= {"code", "description"}  # type: ignore[arg-type]
        assert b"secret" not in response.data


def test_symlink_inside_the_data_folder_is_served(make_app: object, data_dir: Path) -> None:
    (data_dir / "alias.geojson").symlink_to(data_dir / "roads.geojson")
    client = make_app().test_client()  # type: ignore[operator]
    assert client.get("/geojson/alias").status_code == 200


def test_links_out_of_the_folder_are_not_listed(attack_app: Flask) -> None:
    names = [d["name"] for d in attack_app.test_client().get("/api/datasets").json["datasets"]]
    assert names == ["roads"]
