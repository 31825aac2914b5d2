"""Streaming validation and metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from geojson_api.errors import InvalidGeoJSON
from geojson_api.scan import scan

from ..conftest import ROADS


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "x.geojson"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_metadata(tmp_path: Path) -> None:
    result = scan(_write(tmp_path, ROADS))
    assert result.ok
    assert result.top_type == "FeatureCollection"
    assert result.feature_count == 3
    assert result.bbox == [4.8, 45.7, 5.0, 45.8]
    assert result.geometry_types == {"LineString", "Point"}
    assert result.properties == {"name": "string", "lanes": "number"}


def test_sample_file(samples: Path) -> None:
    result = scan(samples / "medium.geojson")
    assert result.ok and result.feature_count > 10_000
    assert result.geometry_types >= {"Point", "LineString", "Polygon"}
    lon_min, lat_min, lon_max, lat_max = result.bbox  # type: ignore[misc]
    assert 4.7 <= lon_min < lon_max <= 5.1 and 45.6 <= lat_min < lat_max <= 45.9
    assert result.properties["rank"] == "integer"


def test_progress_reports_bytes(samples: Path) -> None:
    seen: list[int] = []
    scan(samples / "small.geojson", progress=seen.append)
    assert seen and seen[-1] == (samples / "small.geojson").stat().st_size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a JSON object"),
        ("[1, 2]", "must be a JSON object"),
        ('{"type": "Topology"}', "top-level \"type\""),
        ('{"features": []}', "top-level \"type\""),
        ('{"type":"FeatureCollection","features":[{"type":"Feature"', "not valid JSON"),
        ('{"type":"FeatureCollection","features":[]', "not valid JSON"),
        ('{"type":"FeatureCollection","features":[]} trailing', "not valid JSON"),
        ('{"type":"FeatureCollection","features":{}}', "\"features\" array"),
        ('{"type":"FeatureCollection"}', "\"features\" array"),
        ("{\"type\":\"FeatureCollection\",\"features\":[NaN]}", "not valid JSON"),
    ],
)
def test_fatal_problems(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidGeoJSON) as caught:
        scan(_write(tmp_path, text))
    assert message in caught.value.description


def test_truncated_sample_is_invalid(samples: Path, tmp_path: Path) -> None:
    data = (samples / "small.geojson").read_bytes()
    with pytest.raises(InvalidGeoJSON):
        scan(_write(tmp_path, data[: len(data) // 2]))


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ('{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]},'
         '"properties":{}}', "not closed"),
        ('{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]},'
         '"properties":{}}', "at least 4"),
        ('{"type":"Feature","geometry":{"type":"LineString","coordinates":[[0,0]]},'
         '"properties":{}}', "at least 2"),
        ('{"type":"Feature","geometry":{"type":"Point","coordinates":["a","b"]},"properties":{}}',
         "positions"),
        ('{"type":"Feature","geometry":{"type":"Point","coordinates":[1]},"properties":{}}',
         "positions"),
        ('{"type":"Feature","geometry":{"type":"Circle","coordinates":[1,2]},"properties":{}}',
         "unknown geometry type"),
        ('{"type":"Feature","geometry":{"type":"Polygon","coordinates":7},"properties":{}}',
         "expected an array"),
        ('{"type":"Feature","properties":{}}', "missing member 'geometry'"),
        ('{"type":"Feature","geometry":null,"properties":[]}', "properties must be"),
        ('{"type":"Feature","id":[1],"geometry":null,"properties":null}', "id must be"),
        ('{"type":"Thing"}', "not an object"),
        ('{"type":"Feature","geometry":{"type":"GeometryCollection"},"properties":{}}',
         "'geometries' array"),
    ],
)
def test_feature_problems_are_collected(tmp_path: Path, feature: str, message: str) -> None:
    good = '{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{}}'
    text = f'{{"type":"FeatureCollection","features":[{good},{feature},{good}]}}'
    result = scan(_write(tmp_path, text))
    assert result.feature_count == 3
    assert result.problem_count == 1
    assert result.problems[0].startswith("feature 1: ") and message in result.problems[0]


def test_problem_list_is_capped(tmp_path: Path) -> None:
    bad = '{"type":"Feature","geometry":{"type":"Point","coordinates":[1]},"properties":{}}'
    features = ",".join([bad] * 50)
    result = scan(_write(tmp_path, f'{{"type":"FeatureCollection","features":[{features}]}}'))
    assert result.problem_count == 50 and len(result.problems) == 20


@pytest.mark.parametrize(
    ("text", "kind", "count"),
    [
        ('{"type":"Feature","geometry":{"type":"Point","coordinates":[3,4]},"properties":null}',
         "Feature", 1),
        ('{"type":"MultiPoint","coordinates":[[1,2],[3,4]]}', "MultiPoint", 0),
        ('{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,2]}]}',
         "GeometryCollection", 0),
        ('{"features":[{"type":"Feature","geometry":null,"properties":{}}],'
         '"type":"FeatureCollection"}', "FeatureCollection", 1),
    ],
)
def test_other_top_levels(tmp_path: Path, text: str, kind: str, count: int) -> None:
    result = scan(_write(tmp_path, text))
    assert result.ok and result.top_type == kind and result.feature_count == count


def test_property_types_merge(tmp_path: Path) -> None:
    features = ",".join(
        f'{{"type":"Feature","geometry":null,"properties":{props}}}'
        for props in ['{"a":1,"b":"x","c":null}', '{"a":1.5,"b":2,"c":true}', '{"d":[1]}']
    )
    result = scan(_write(tmp_path, f'{{"type":"FeatureCollection","features":[{features}]}}'))
    assert result.properties == {"a": "number", "b": "mixed", "c": "boolean", "d": "array"}
    assert result.bbox is None
