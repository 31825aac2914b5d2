"""Streaming validation and metadata."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from geojson_api.errors import InvalidGeoJSON
from geojson_api.scan import (
    BATCH,
    INVALID_GEOMETRY,
    LEGACY_CRS,
    MAX_PROBLEMS,
    OUT_OF_RANGE,
    UNKNOWN_TYPE,
    Problem,
    ScanResult,
    plural,
    scan,
)

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


# -- what the scan tells about data (issue 10) ---------------------------------------------
def _feature(geometry: object, **extra: object) -> dict[str, object]:
    return {"type": "Feature", "geometry": geometry, "properties": {}, **extra}


def _collection(features: Sequence[object], **top: object) -> bytes:
    return json.dumps({"type": "FeatureCollection", **top, "features": features}).encode()


POINT = {"type": "Point", "coordinates": [4.8, 45.7]}
BOW_TIE = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}


def _only_problem(result: ScanResult) -> Problem:
    assert result.problem_count == 1 and len(result.examples) == 1, result.problems
    return result.examples[0]


def test_bow_tie_is_an_invalid_geometry(tmp_path: Path) -> None:
    result = scan(_write(tmp_path, _collection([_feature(POINT), _feature(BOW_TIE)])))
    problem = _only_problem(result)
    assert (problem.kind, problem.feature) == (INVALID_GEOMETRY, 1)
    assert str(problem) == "feature 1: invalid geometry: Self-intersection[1 1]"
    assert result.bbox == [0, 0, 4.8, 45.7] and result.problem_features == 1


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        ({"type": "MultiPolygon", "coordinates": [BOW_TIE["coordinates"]]}, "Self-intersection"),
        ({"type": "MultiPolygon", "coordinates": [  # two squares that overlap
            [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]],
            [[[1, 1], [5, 1], [5, 5], [1, 5], [1, 1]]]]},
         "Self-intersection"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]],
                                             [[5, 5], [6, 5], [6, 6], [5, 5]]]},
         "Hole lies outside shell"),
        ({"type": "LineString", "coordinates": [[1, 1], [1, 1]]}, "Too few points"),
        ({"type": "GeometryCollection", "geometries": [POINT, BOW_TIE]}, "Self-intersection"),
        ({"type": "Polygon", "coordinates": [[[0, 0, 5], [2, 2, 5], [2, 0, 5], [0, 2], [0, 0, 1]]]},
         "Self-intersection"),
    ],
    ids=["multipolygon", "overlapping-parts", "hole-outside", "one-point-line", "collection",
         "with-heights"],
)
def test_geos_reasons(tmp_path: Path, geometry: dict[str, object], reason: str) -> None:
    problem = _only_problem(scan(_write(tmp_path, _collection([_feature(geometry)]))))
    assert problem.kind == INVALID_GEOMETRY and reason in problem.reason


def test_valid_polygons_and_lines_are_not_reported(samples: Path) -> None:
    result = scan(samples / "medium.geojson")
    assert result.ok and result.problem_counts == {} and result.problem_features == 0


@pytest.mark.parametrize(
    ("coordinates", "span", "hint"),
    [
        ([400, 95], "(x 400, y 95)", "projected coordinates"),
        ([500000, 5000000], "(x 500000, y 5000000)", "projected coordinates (metres"),
        ([45.7, 120.5], "(x 45.7, y 120.5)", "longitude and latitude may be swapped"),
    ],
)
def test_coordinates_outside_lon_lat(tmp_path: Path, coordinates: list[float], span: str,
                                     hint: str) -> None:
    point = {"type": "Point", "coordinates": coordinates}
    result = scan(_write(tmp_path, _collection([_feature(POINT), _feature(point)])))
    problem = _only_problem(result)
    assert (problem.kind, problem.feature) == (OUT_OF_RANGE, 1)
    assert problem.reason.startswith(f"coordinates outside longitude/latitude range {span}: ")
    assert "longitude -180..180, latitude -90..90 (RFC 7946)" in problem.reason
    assert hint in problem.reason
    assert result.bbox == [4.8, 45.7, max(4.8, coordinates[0]), max(45.7, coordinates[1])]


def test_a_line_of_projected_coordinates_gives_its_span(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [[500000, 5000000], [500100.5, 5000200]]}
    problem = _only_problem(scan(_write(tmp_path, _collection([_feature(line)]))))
    assert "(x 500000..500100.5, y 5000000..5000200)" in problem.reason


def test_the_edges_of_the_range_are_inside(tmp_path: Path) -> None:
    corners = {"type": "MultiPoint", "coordinates": [[-180, -90], [180, 90]]}
    assert scan(_write(tmp_path, _collection([_feature(corners)]))).ok


CRS_2154 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2154"}}
CRS_84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}


def test_top_level_crs_before_the_features(tmp_path: Path) -> None:
    result = scan(_write(tmp_path, _collection([_feature(POINT)], crs=CRS_2154)))
    problem = _only_problem(result)
    assert (problem.kind, problem.feature, problem.where) == (LEGACY_CRS, None, "top level")
    assert str(problem).startswith(
        'top level: legacy "crs" member (urn:ogc:def:crs:EPSG::2154): RFC 7946 removed it')
    assert "reprojected" in problem.reason and result.problem_features == 0


def test_top_level_crs_after_the_features(tmp_path: Path) -> None:
    padding = [_feature(POINT, id=i) for i in range(3000)]  # the crs is chunks away from the head
    text = json.dumps({"type": "FeatureCollection", "features": padding, "crs": CRS_84})
    problem = _only_problem(scan(_write(tmp_path, text)))
    assert problem.kind == LEGACY_CRS and problem.where == "top level"
    assert "harmless" in problem.reason


def test_crs_in_a_feature_and_in_a_geometry(tmp_path: Path) -> None:
    features = [_feature(POINT, crs=CRS_2154), _feature(dict(POINT, crs=CRS_2154)),
                {"type": "Feature", "geometry": POINT, "properties": {"crs": "EPSG:2154"}}]
    result = scan(_write(tmp_path, _collection(features)))
    assert result.problem_counts == {LEGACY_CRS: 2}
    assert [p.feature for p in result.examples] == [0, 1]


def test_a_property_named_crs_is_not_a_crs_member(tmp_path: Path) -> None:
    feature = {"type": "Feature", "geometry": POINT, "properties": {"crs": "EPSG:2154"}}
    assert scan(_write(tmp_path, _collection([feature]))).ok


@pytest.mark.parametrize(
    "geometry",
    [{"type": "Circle", "coordinates": [4.8, 45.7], "radius": 100},
     {"type": "GeometryCollection",
      "geometries": [POINT, {"type": "Circle", "coordinates": [1, 2]}]}],
)
def test_unknown_geometry_type(tmp_path: Path, geometry: dict[str, object]) -> None:
    result = scan(_write(tmp_path, _collection([_feature(geometry)])))
    problem = _only_problem(result)
    assert problem.kind == UNKNOWN_TYPE and problem.feature == 0
    assert "unknown geometry type 'Circle'" in problem.reason
    assert "Circle" not in result.geometry_types


def test_a_feature_with_several_problems_counts_once(tmp_path: Path) -> None:
    projected_bow_tie = {"type": "Polygon", "coordinates": [
        [[5e5, 5e6], [5e5 + 2, 5e6 + 2], [5e5 + 2, 5e6], [5e5, 5e6 + 2], [5e5, 5e6]]]}
    result = scan(_write(tmp_path, _collection([_feature(projected_bow_tie, crs=CRS_2154)])))
    assert result.problem_counts == {INVALID_GEOMETRY: 1, OUT_OF_RANGE: 1, LEGACY_CRS: 1}
    assert result.problem_count == 3 and result.problem_features == 1


def test_problems_are_counted_in_full_and_kept_per_kind_up_to_a_cap(tmp_path: Path) -> None:
    far = _feature({"type": "Point", "coordinates": [500000, 5000000]})
    features = [far] * (BATCH * 2 + 10) + [_feature(BOW_TIE)]
    result = scan(_write(tmp_path, _collection(features)))
    assert result.problem_counts == {OUT_OF_RANGE: BATCH * 2 + 10, INVALID_GEOMETRY: 1}
    assert result.problem_features == BATCH * 2 + 11
    kept = [p.feature for p in result.examples]
    assert kept == [*range(MAX_PROBLEMS), BATCH * 2 + 10]  # the rare kind is still shown
    meta = result.as_dict()
    assert len(meta["problems"]) == MAX_PROBLEMS + 1 and meta["problem_count"] == BATCH * 2 + 11
    assert meta["problem_counts"] == {INVALID_GEOMETRY: 1, OUT_OF_RANGE: BATCH * 2 + 10}


def test_invalid_polygons_keep_their_index_across_batches(tmp_path: Path) -> None:
    features = [_feature(POINT)] * (BATCH - 1) + [_feature(BOW_TIE)] * 2 + [_feature(POINT)]
    result = scan(_write(tmp_path, _collection(features)))
    assert [p.feature for p in result.examples] == [BATCH - 1, BATCH]


def test_a_bare_geometry_with_problems(tmp_path: Path) -> None:
    result = scan(_write(tmp_path, json.dumps(dict(BOW_TIE, crs=CRS_2154))))
    assert sorted(result.problems) == [
        "geometry: invalid geometry: Self-intersection[1 1]",
        'geometry: legacy "crs" member (urn:ogc:def:crs:EPSG::2154): RFC 7946 removed it; '
        "positions are read as WGS 84 longitude/latitude whatever it says, so other data must "
        "be reprojected"]


# -- syntax errors ---------------------------------------------------------------------
def test_truncated_file_gives_the_byte_offset_in_one_line(samples: Path, tmp_path: Path) -> None:
    data = (samples / "medium.geojson").read_bytes()
    cut = len(data) // 2
    with pytest.raises(InvalidGeoJSON) as caught:
        scan(_write(tmp_path, data[:cut]))
    assert caught.value.description == f"not valid JSON at byte {cut}: unexpected end of file"


@pytest.mark.parametrize("where", [300, 150_000])  # in the first chunk read, and chunks later
@pytest.mark.parametrize(
    ("bad", "words"),
    [("NaN", "unexpected character 'N'"), ("1,,", "invalid object key (must be a string)"),
     ("tru ", "invalid literal (expected true, false or null)")],
)
def test_syntax_error_gives_the_byte_where_the_parser_stopped(
    tmp_path: Path, where: int, bad: str, words: str
) -> None:
    head = _collection([_feature(POINT, id=i) for i in range(where // 80 + 1)])[:-2] + b","
    body = b'{"type":"Feature","geometry":null,"properties":{"a":'
    text = head + body + bad.encode() + b"}}]}"
    offset = len(head) + len(body) + {"NaN": 0, "1,,": 2, "tru ": 3}[bad]
    with pytest.raises(InvalidGeoJSON) as caught:
        scan(_write(tmp_path, text))
    assert caught.value.description == f"not valid JSON at byte {offset}: {words}"


def test_trailing_data_is_located(tmp_path: Path) -> None:
    text = _collection([_feature(POINT)]) + b"\n]"
    with pytest.raises(InvalidGeoJSON) as caught:
        scan(_write(tmp_path, text))
    assert caught.value.description == (
        f"not valid JSON at byte {len(text) - 1}: unexpected data after the end of the document")


def test_invalid_utf8_is_one_line(tmp_path: Path) -> None:
    text = b'{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"a":"\xff"'
    with pytest.raises(InvalidGeoJSON) as caught:
        scan(_write(tmp_path, text + b"}}]}"))
    offset = text.index(b"\xff")
    assert caught.value.description == (
        f"not valid JSON at byte {offset}: a string is not valid UTF-8")


def test_the_listing_shows_the_same_texts(client: FlaskClient, data_dir: Path) -> None:
    good = _collection([_feature(POINT), _feature(BOW_TIE)])
    (data_dir / "bowtie.geojson").write_bytes(good)
    (data_dir / "cut.geojson").write_bytes(good[:-3])
    listing = {d["name"]: d for d in client.get("/api/datasets").json["datasets"]}  # type: ignore[index]
    assert listing["cut"]["error"] == (
        f"dataset 'cut' cannot be published: not valid JSON at byte {len(good) - 3}: "
        "unexpected end of file")
    assert listing["bowtie"]["problems"] == ["feature 1: invalid geometry: Self-intersection[1 1]"]
    assert listing["bowtie"]["problem_count"] == 1


def test_plural() -> None:
    assert [plural(n, "feature") for n in (0, 1, 2)] == ["0 features", "1 feature", "2 features"]
    assert plural(1, "property", "properties") == "1 property"
    assert plural(3, "property", "properties") == "3 properties"


def test_a_number_the_parser_cannot_hold_is_named(tmp_path: Path) -> None:
    text = b'{"type":"FeatureCollection","features":[{"type":"Feature","id":' + b"9" * 30
    with pytest.raises(InvalidGeoJSON) as caught:
        scan(_write(tmp_path, text + b',"geometry":null,"properties":null}]}'))
    assert caught.value.description == (
        f"not valid JSON at byte {len(text)}: an integer too large for the parser (beyond 64 bits)")
