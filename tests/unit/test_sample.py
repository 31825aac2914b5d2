"""Tests for geojson_api.sample: deterministic sample GeoJSON datasets."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from geojson_api import sample

# The region the brief asks for (WGS84 lon/lat).
LON_MIN, LON_MAX = 4.70, 5.10
LAT_MIN, LAT_MAX = 45.60, 45.90

PROPERTY_TYPES: dict[str, type] = {
    "name": str,
    "kind": str,
    "category": str,
    "rank": int,
    "measure": float,
    "active": bool,
    "updated": str,
}
FAMILIES = {
    "Polygon": "polygon",
    "MultiPolygon": "polygon",
    "LineString": "line",
    "MultiLineString": "line",
    "Point": "point",
    "MultiPoint": "point",
}
MID_TARGET = 1_000_000

# sha256 of b"".join(generate("small", 20_000)).  If this changes, every
# published sample file changes too: only update it on purpose.
GOLDEN_SMALL_20K = "0e951a890859177f559737b56a5f1426643334d28bdf8beb90629a17dff080d6"


def _bytes(name: str, target: int, seed: int | None = None) -> bytes:
    return b"".join(sample.generate(name, target, seed))


@pytest.fixture(scope="module")
def small_bytes() -> bytes:
    return _bytes("small", sample.SAMPLE_SIZES["small"])


@pytest.fixture(scope="module")
def mid_bytes() -> bytes:
    return _bytes("mid", MID_TARGET)


@pytest.fixture(scope="module")
def mid_doc(mid_bytes: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(mid_bytes)
    return doc


@pytest.fixture(scope="module")
def features(mid_doc: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = mid_doc["features"]
    return result


def _polygons(geometry: dict[str, Any]) -> list[list[list[list[float]]]]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    if geometry["type"] == "MultiPolygon":
        return list(geometry["coordinates"])
    return []


def _lines(geometry: dict[str, Any]) -> list[list[list[float]]]:
    if geometry["type"] == "LineString":
        return [geometry["coordinates"]]
    if geometry["type"] == "MultiLineString":
        return list(geometry["coordinates"])
    return []


def _positions(coordinates: Any) -> Iterator[list[float]]:
    if isinstance(coordinates[0], (int, float)):
        yield coordinates
    else:
        for item in coordinates:
            yield from _positions(item)


def _signed_area(ring: list[list[float]]) -> float:
    return sum(a[0] * b[1] - b[0] * a[1] for a, b in itertools.pairwise(ring)) / 2


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------


def test_same_name_gives_identical_bytes(small_bytes: bytes) -> None:
    assert _bytes("small", sample.SAMPLE_SIZES["small"]) == small_bytes


def test_output_matches_golden_hash() -> None:
    digest = hashlib.sha256(_bytes("small", 20_000)).hexdigest()
    assert digest == GOLDEN_SMALL_20K, "sample output changed: files differ from earlier runs"


def test_different_names_and_seeds_differ() -> None:
    assert _bytes("small", 20_000) != _bytes("other", 20_000).replace(b"other", b"small")
    assert _bytes("small", 20_000, seed=1) != _bytes("small", 20_000, seed=2)
    assert _bytes("small", 20_000, seed=7) == _bytes("small", 20_000, seed=7)


def test_smaller_target_gives_a_prefix_of_the_features() -> None:
    short, long = _bytes("small", 10_000), _bytes("small", 30_000)
    body = short.removesuffix(b"\n]}\n")
    assert long.startswith(body + b",\n")


# --------------------------------------------------------------------------
# Size and streaming
# --------------------------------------------------------------------------


def test_small_is_within_five_percent(small_bytes: bytes) -> None:
    assert abs(len(small_bytes) - 50_000) <= 0.05 * 50_000


def test_small_has_about_a_hundred_features(small_bytes: bytes) -> None:
    assert 60 <= len(json.loads(small_bytes)["features"]) <= 200


def test_mid_size_is_within_five_percent(mid_bytes: bytes) -> None:
    assert abs(len(mid_bytes) - MID_TARGET) <= 0.05 * MID_TARGET


def test_average_feature_size_suits_large_file(mid_bytes: bytes,
                                               features: list[dict[str, Any]]) -> None:
    # ~50 MB / 350..700 bytes gives on the order of 100,000 features.
    assert 350 <= len(mid_bytes) / len(features) <= 700


def test_generate_streams_bounded_chunks() -> None:
    chunks = sample.generate("mid", MID_TARGET)
    assert not isinstance(chunks, (bytes, list))
    sizes = [len(chunk) for chunk in chunks]
    assert len(sizes) > 5
    assert max(sizes) <= 128 * 1024


def test_tiny_target_gives_empty_valid_collection() -> None:
    doc = json.loads(_bytes("small", 0))
    assert doc == {"type": "FeatureCollection", "name": "small", "features": []}


def test_negative_target_is_rejected() -> None:
    with pytest.raises(ValueError):
        sample.generate("small", -1)


# --------------------------------------------------------------------------
# Document layout
# --------------------------------------------------------------------------


def test_top_level_members_in_order(mid_doc: dict[str, Any]) -> None:
    assert list(mid_doc) == ["type", "name", "features"]
    assert mid_doc["type"] == "FeatureCollection"
    assert mid_doc["name"] == "mid"


def test_one_feature_per_line(mid_bytes: bytes, features: list[dict[str, Any]]) -> None:
    lines = mid_bytes.decode("utf-8").split("\n")
    assert lines[0] == '{"type":"FeatureCollection","name":"mid","features":['
    assert lines[-2:] == ["]}", ""]
    feature_lines = lines[1:-2]
    assert len(feature_lines) == len(features)
    assert all(line.endswith("},") for line in feature_lines[:-1])
    assert json.loads(feature_lines[-1]) == features[-1]


def test_ids_are_consecutive_from_one(features: list[dict[str, Any]]) -> None:
    assert [feature["id"] for feature in features] == list(range(1, len(features) + 1))


def test_features_are_plain_geojson(features: list[dict[str, Any]]) -> None:
    for feature in features:
        assert list(feature) == ["type", "id", "geometry", "properties"]
        assert feature["type"] == "Feature"
        assert feature["geometry"] is not None
        assert set(feature["geometry"]) == {"type", "coordinates"}


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


def test_properties_have_the_seven_typed_names(features: list[dict[str, Any]]) -> None:
    for feature in features:
        properties = feature["properties"]
        assert list(properties) == list(PROPERTY_TYPES)
        for key, expected in PROPERTY_TYPES.items():
            assert type(properties[key]) is expected, (feature["id"], key)


def test_property_values_are_plausible(features: list[dict[str, Any]]) -> None:
    for feature in features:
        properties = feature["properties"]
        assert 1 <= properties["rank"] <= 10
        assert properties["updated"].startswith("2024-")
        assert len(properties["updated"]) == 10
        assert properties["name"].rsplit(" ", 1)[1].isdigit()
    categories = {feature["properties"]["category"] for feature in features}
    assert 6 <= len(categories) <= 10
    assert {feature["properties"]["active"] for feature in features} == {True, False}


def test_measure_follows_geometry(features: list[dict[str, Any]]) -> None:
    for feature in features:
        family = FAMILIES[feature["geometry"]["type"]]
        measure = feature["properties"]["measure"]
        assert measure == 0.0 if family == "point" else measure > 0.0


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------


def test_all_geometry_types_present(features: list[dict[str, Any]]) -> None:
    assert {feature["geometry"]["type"] for feature in features} == set(FAMILIES)


def test_family_mix_is_roughly_40_35_25(features: list[dict[str, Any]]) -> None:
    counts = collections.Counter(FAMILIES[f["geometry"]["type"]] for f in features)
    total = len(features)
    for family, share in {"polygon": 0.40, "line": 0.35, "point": 0.25}.items():
        assert abs(counts[family] / total - share) < 0.05, (family, counts)


def test_polygon_rings_are_valid(features: list[dict[str, Any]]) -> None:
    holes = 0
    for feature in features:
        for polygon in _polygons(feature["geometry"]):
            exterior, *interiors = polygon
            assert 6 <= len(exterior) <= 13  # 5-12 vertices, closed
            assert _signed_area(exterior) > 0  # counter-clockwise
            for ring in polygon:
                assert ring[0] == ring[-1]
                assert len(ring) >= 4
            for ring in interiors:
                assert _signed_area(ring) < 0  # clockwise
            holes += len(interiors)
    assert holes > 0


def test_line_strings_are_valid(features: list[dict[str, Any]]) -> None:
    for feature in features:
        for line in _lines(feature["geometry"]):
            assert 3 <= len(line) <= 30
            assert all(a != b for a, b in itertools.pairwise(line))


def test_coordinates_inside_region(features: list[dict[str, Any]]) -> None:
    for feature in features:
        for lon, lat in _positions(feature["geometry"]["coordinates"]):
            assert LON_MIN <= lon <= LON_MAX
            assert LAT_MIN <= lat <= LAT_MAX


def test_coordinates_have_six_decimals(mid_bytes: bytes) -> None:
    first_line = mid_bytes.split(b"\n")[1].decode()
    coordinates = first_line.split('"coordinates":')[1].split("}")[0]
    numbers = coordinates.replace("[", "").replace("]", "").split(",")
    assert all(len(number.split(".")[1]) == 6 for number in numbers)


# --------------------------------------------------------------------------
# write_samples
# --------------------------------------------------------------------------


def test_write_samples_writes_only_requested_names(tmp_path: pathlib.Path,
                                                   small_bytes: bytes) -> None:
    target = tmp_path / "new" / "folder"
    paths = sample.write_samples(target, ["small"])
    assert paths == [target / "small.geojson"]
    assert sorted(os.listdir(target)) == ["small.geojson"]
    assert paths[0].read_bytes() == small_bytes


def test_write_samples_defaults_to_all(tmp_path: pathlib.Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in sample.SAMPLE_SIZES:
        monkeypatch.setitem(sample.SAMPLE_SIZES, name, 5_000)
    paths = sample.write_samples(str(tmp_path))
    assert [path.name for path in paths] == [
        "small.geojson", "medium.geojson", "large.geojson"]
    assert sorted(os.listdir(tmp_path)) == sorted(path.name for path in paths)
    for path in paths:
        assert json.loads(path.read_bytes())["name"] == path.stem


def test_write_samples_rejects_unknown_names(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="huge"):
        sample.write_samples(tmp_path, ["small", "huge"])
    assert os.listdir(tmp_path) == []


def test_write_samples_accepts_a_single_name(tmp_path: pathlib.Path) -> None:
    assert sample.write_samples(tmp_path, "small") == [tmp_path / "small.geojson"]


def test_write_samples_renames_a_hidden_temporary_file(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[pathlib.Path, pathlib.Path]] = []
    real_replace = os.replace

    def spy(source: str, destination: str) -> None:
        assert not pathlib.Path(destination).exists()
        renames.append((pathlib.Path(source), pathlib.Path(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    sample.write_samples(tmp_path, ["small"])
    [(source, destination)] = renames
    assert source.parent == destination.parent == tmp_path
    assert source.name.startswith(".")
    assert os.listdir(tmp_path) == ["small.geojson"]


def test_failed_write_leaves_old_file_and_no_temporary(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "small.geojson").write_bytes(b"old")

    def broken(name: str, target_bytes: int, seed: int | None = None) -> Iterator[bytes]:
        yield b'{"type":"FeatureCollection"'
        raise OSError("disk full")

    monkeypatch.setattr(sample, "generate", broken)
    with pytest.raises(OSError, match="disk full"):
        sample.write_samples(tmp_path, ["small"])
    assert os.listdir(tmp_path) == ["small.geojson"]
    assert (tmp_path / "small.geojson").read_bytes() == b"old"


def test_written_file_is_readable_by_others(tmp_path: pathlib.Path) -> None:
    [path] = sample.write_samples(tmp_path, ["small"])
    if os.name == "posix":
        assert path.stat().st_mode & 0o444 == 0o444


def test_progress_reports_bytes_written(tmp_path: pathlib.Path) -> None:
    calls: list[tuple[str, int, int]] = []
    [path] = sample.write_samples(tmp_path, ["small"],
                                  progress=lambda *args: calls.append(args))
    assert calls
    assert all(name == "small" and target == 50_000 for name, _, target in calls)
    written = [done for _, done, _ in calls]
    assert written == sorted(written)
    assert written[-1] == path.stat().st_size
