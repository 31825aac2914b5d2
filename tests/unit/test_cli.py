"""The geojson-api command (in process, except where the claim is about exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from geojson_api.cli import ProgressBar, main

from ..conftest import ROADS


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
    assert "feature 0: Polygon: linear ring is not closed" in err and "1 problems" in err


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
