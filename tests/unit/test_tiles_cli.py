"""``geojson-api tiles DATASET --out FILE``: the archive of the current version, atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from geojson_api.cli import main
from geojson_api.tiles.archive import Archive


def test_exports_the_archive(data_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "roads.pmtiles"
    out.write_bytes(b"old")
    assert main(["tiles", "roads", "--out", str(out), "--data", str(data_dir)]) == 0
    assert Archive(out).locate(0, 0, 0) is not None
    assert "every feature from zoom 0" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["roads.pmtiles"]  # no temporary left


@pytest.mark.parametrize(("dataset", "out", "message"), [
    ("nope", "x.pmtiles", "no dataset named 'nope'"),
    ("../roads", "x.pmtiles", "is not a valid dataset name"),
    ("roads", "missing/x.pmtiles", "no folder"),
    ("roads", ".", "it is a folder"),
])
def test_errors_are_one_line_and_exit_2(data_dir: Path, tmp_path: Path, dataset: str,
                                        out: str, message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tiles", dataset, "--out", str(tmp_path / out), "--data", str(data_dir)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_tiles_off_is_one_line_and_exit_2(data_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEOJSON_API_TILES", "false")
    out = tmp_path / "roads.pmtiles"
    assert main(["tiles", "roads", "--out", str(out), "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "GEOJSON_API_TILES=false" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
