"""The geojson-api command (in process, except where the claim is about exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import geojson_api
from geojson_api.cli import ProgressBar, main

from ..conftest import ROADS, require
from ..integration.servers import GunicornServer


def test_check_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "roads.geojson"
    path.write_bytes(ROADS)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 features" in out and "valid GeoJSON" in out


def test_check_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "roads.geojson"
    path.write_bytes(ROADS)
    assert main(["check", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["features"] == 3


def test_check_invalid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.geojson"
    path.write_bytes(ROADS[:40])
    assert main(["check", str(path)]) == 1
    assert "invalid: not valid JSON" in capsys.readouterr().err


def test_check_feature_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ring.geojson"
    path.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","geometry":'
                    '{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,2]]]},'
                    '"properties":{}}]}')
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "feature 0: Polygon: linear ring is not closed" in err
    assert "1 problem in 1 feature" in err


def test_check_missing_file(tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "none.geojson")]) == 2


def test_check_progress_bar(samples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--progress", str(samples / "medium.geojson")]) == 0
    err = capsys.readouterr().err
    assert "medium.geojson [" in err and "100.0%" in err


def test_progress_bar_rendering() -> None:
    import io

    stream = io.StringIO()
    bar = ProgressBar(200, "x", stream)
    bar(100)
    bar.close()
    text = stream.getvalue()
    assert "50.0%" in text and text.endswith("100.0%      0.0/0.0 MB\n")


def test_sample_only_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(tmp_path), "--only", "small"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["small.geojson"]
    assert "small.geojson" in capsys.readouterr().out


def test_settings_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    assert "`GEOJSON_API_DATA_DIR`" in capsys.readouterr().out


def test_prepare(data_dir: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOJSON_API_COMPRESS_MIN_BYTES", "1")
    (data_dir / "broken.geojson").write_text("{")
    assert main(["prepare", "--data", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert "roads: version" in out and "broken: not published" in out
    version_dir = next((data_dir / ".state/versions/roads").iterdir())
    assert (version_dir / "data.geojson.gz").exists() and (version_dir / "data.geojson.br").exists()


def test_bad_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEOJSON_API_WORKERS", "lots")
    assert main(["settings"]) == 2
    assert "GEOJSON_API_WORKERS" in capsys.readouterr().err


def test_serve_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "geojson_api", "serve", "--data", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_help_lists_settings() -> None:
    result = subprocess.run([sys.executable, "-m", "geojson_api", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "GEOJSON_API_DATA_DIR" in result.stdout


# -- errors a new user can act on: one line, exit 2, no traceback ------------------

def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any GEOJSON_API_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOJSON_API_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "geojson_api", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env if env is not None else clean_env())


def assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 and a single stderr line holding every one of ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def unprivileged() -> tuple[str, ...]:
    """Run as root without the capabilities that ignore file modes (CI runs as root)."""
    return (require("setpriv"), "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search", "--")


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"geojson-api {geojson_api.__version__}\n"


FOLDER_COMMANDS = [["prepare"], ["serve"], ["stack", "up"]]


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=" ".join)
def test_a_missing_data_folder_is_one_line(command: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "none"
    result = run_cli(*command, "--data", str(missing), cwd=tmp_path)
    assert_one_line(result, f"data folder {missing} does not exist", "--data DIR")
    assert not missing.exists() and not (tmp_path / "var").exists()


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=" ".join)
def test_a_file_given_as_data_folder_is_one_line(command: list[str], tmp_path: Path) -> None:
    path = tmp_path / "roads.geojson"
    path.write_bytes(ROADS)
    assert_one_line(run_cli(*command, "--data", str(path), cwd=tmp_path),
                    f"data folder {path} is not a folder")


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=" ".join)
def test_an_unreadable_data_folder_is_one_line(command: list[str], data_dir: Path,
                                               tmp_path: Path) -> None:
    data_dir.chmod(0)
    try:
        result = run_cli(*command, "--data", str(data_dir), cwd=tmp_path, prefix=unprivileged())
    finally:
        data_dir.chmod(0o755)
    assert_one_line(result, f"cannot read data folder {data_dir}: Permission denied")


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=" ".join)
def test_a_bad_setting_is_one_line(command: list[str], data_dir: Path, tmp_path: Path) -> None:
    result = run_cli(*command, "--data", str(data_dir), cwd=tmp_path,
                     env=clean_env(GEOJSON_API_GZIP_LEVEL="12"))
    assert_one_line(result, "GEOJSON_API_GZIP_LEVEL must be between 1 and 9 (got 12)")
    assert not (data_dir / ".state").exists()


def test_prepare_on_an_empty_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a dataset")
    assert_one_line(run_cli("prepare", "--data", str(tmp_path)), f"no datasets in {tmp_path}")


def test_prepare_with_an_unwritable_state_folder_is_one_line(data_dir: Path) -> None:
    state = data_dir / "state"
    state.mkdir(mode=0o555)
    result = run_cli("prepare", "--data", str(data_dir), prefix=unprivileged(),
                     env=clean_env(GEOJSON_API_STATE_DIR=str(state)))
    assert_one_line(result, f"geojson-api prepare: cannot write {state}: Permission denied")


def test_check_a_folder_is_one_line(tmp_path: Path) -> None:
    assert_one_line(run_cli("check", str(tmp_path)), "is a folder, not a file")


def test_check_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "roads.geojson"
    path.write_bytes(ROADS)
    path.chmod(0)
    assert_one_line(run_cli("check", str(path), prefix=unprivileged()),
                    f"{path}: cannot read: Permission denied")


@pytest.mark.integration
def test_serve_on_an_empty_folder_warns_once_and_serves(tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    server = GunicornServer(empty, tmp_path / "serve.log", workers=1,
                            env={"GEOJSON_API_WORKRES": "3"}).start()
    try:
        collections = requests.get(server.url + "/collections", timeout=10)
    finally:
        server.stop()
    assert collections.status_code == 200 and collections.json()["collections"] == []
    log = server.log().splitlines()
    assert [line for line in log if "no datasets in" in line] == [
        f"geojson-api serve: warning: no datasets in {empty} (a dataset is a file NAME.geojson "
        "or NAME.json); files added later are published on their first request"]
    unknown = [line for line in log if "GEOJSON_API_WORKRES" in line]
    assert len(unknown) == 1 and "did you mean GEOJSON_API_WORKERS?" in unknown[0]


def test_settings_shows_the_values_in_force(tmp_path: Path) -> None:
    result = run_cli("settings", env=clean_env(GEOJSON_API_DATA_DIR=str(tmp_path)))
    assert result.returncode == 0 and result.stderr == ""
    rows = {line.split()[0]: line.split(maxsplit=2)[1:] for line in result.stdout.splitlines()}
    assert rows["GEOJSON_API_STATE_DIR"] == [str(tmp_path / ".state"),
                                             "derived: GEOJSON_API_DATA_DIR/.state"]
    assert rows["GEOJSON_API_DATA_DIR"] == [str(tmp_path), "environment"]
    assert "None" not in result.stdout


def test_an_unknown_variable_is_a_warning_naming_the_closest(tmp_path: Path) -> None:
    result = run_cli("settings", env=clean_env(GEOJSON_API_LOGLEVEL="debug"))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "geojson-api: warning: unknown setting GEOJSON_API_LOGLEVEL is ignored (did you mean "
        "GEOJSON_API_LOG_LEVEL?)"]
# -- check: what it says about data (issue 10) -------------------------------------------
def _collection(*geometries: object, **top: object) -> bytes:
    features = [{"type": "Feature", "geometry": g, "properties": {}} for g in geometries]
    return json.dumps({"type": "FeatureCollection", **top, "features": features}).encode()


BOW_TIE = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_collection(BOW_TIE), "feature 0: invalid geometry: Self-intersection[1 1]"),
        (_collection({"type": "Point", "coordinates": [400, 95]}),
         "feature 0: coordinates outside longitude/latitude range (x 400, y 95)"),
        (_collection({"type": "Point", "coordinates": [500000, 5000000]}),
         "projected coordinates"),
        (_collection({"type": "Point", "coordinates": [1, 2]},
                     crs={"type": "name", "properties": {"name": "EPSG:2154"}}),
         'top level: legacy "crs" member (EPSG:2154)'),
        (_collection({"type": "Circle", "coordinates": [1, 2], "radius": 3}),
         "feature 0: unknown geometry type 'Circle'"),
    ],
    ids=["bow-tie", "out-of-range", "projected", "crs", "circle"],
)
def test_check_reports_data_problems_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, expected: str
) -> None:
    path = tmp_path / "x.geojson"
    path.write_bytes(data)
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert f"{path}: FeatureCollection, 1 feature, " in captured.out
    assert expected in captured.err and "1 problem" in captured.err
    assert "valid GeoJSON" not in captured.out


def test_check_counts_in_plural_and_by_kind(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.geojson"
    far = {"type": "Point", "coordinates": [500000, 5000000]}
    path.write_bytes(_collection(BOW_TIE, far, far))
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert "3 features" in captured.out
    assert (f"{path}: 3 problems in 3 features (1 invalid-geometry, 2 out-of-range; 3 shown, "
            "features numbered from 0)") in captured.err
    assert main(["check", "--json", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["problem_count"] == 3
    assert report["problem_counts"] == {"invalid-geometry": 1, "out-of-range": 2}
    assert report["problems"][0].startswith("feature 0: invalid geometry")


def test_check_truncated_file_names_the_byte(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cut.geojson"
    data = _collection(*[{"type": "Point", "coordinates": [1, 2]}] * 3)
    path.write_bytes(data[:-5])
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    cut = len(data) - 5
    assert err == f"{path}: invalid: not valid JSON at byte {cut}: unexpected end of file\n"
    assert main(["check", "--json", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["error"] == f"not valid JSON at byte {len(data) - 5}: unexpected end of file"


def test_check_clean_file_says_1_feature(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.geojson"
    path.write_bytes(_collection({"type": "Point", "coordinates": [4.8, 45.7]}))
    assert main(["check", str(path)]) == 0
    captured = capsys.readouterr()
    assert ", 1 feature, " in captured.out and "valid GeoJSON" in captured.out
    assert captured.err == ""
