"""The catalog: versions, atomic publishing, torn and invalid files, clean-up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from geojson_api import catalog as catalog_module
from geojson_api import jobs
from geojson_api.artifacts import Build
from geojson_api.catalog import Catalog
from geojson_api.errors import DatasetNotFound, DatasetUnavailable, NotReady, SourceChanged
from geojson_api.pipeline import open_catalog
from geojson_api.settings import Settings

from ..conftest import ROADS

OTHER = ROADS.replace(b'"A"', b'"Other"')


def make_catalog(data_dir: Path, **overrides: object) -> Catalog:
    values: dict[str, object] = {"data_dir": data_dir, "precompress": "", "settle_seconds": 0.0}
    values.update(overrides)
    return open_catalog(Settings(**values))  # type: ignore[arg-type]


def publish(path: Path, data: bytes) -> None:
    """Publish by rename, the documented way."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_version_is_the_content_digest(data_dir: Path) -> None:
    version = make_catalog(data_dir).current("roads")
    assert version.path.read_bytes() == ROADS
    assert version.meta["sha256"].startswith(version.id) and len(version.id) == 16
    assert version.meta["features"] == 3
    assert version.path.is_relative_to(data_dir / ".state")


def test_same_content_same_version_across_catalogs(data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "roads.geojson").write_bytes(ROADS)
    assert make_catalog(data_dir).current("roads").id == make_catalog(other).current("roads").id


def test_digest_is_not_recomputed_while_the_file_is_unchanged(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = catalog_module._copy_and_hash
    monkeypatch.setattr(catalog_module, "_copy_and_hash",
                        lambda *a: calls.append(a) or real(*a))
    first = make_catalog(data_dir)
    for _ in range(5):
        first.current("roads")
    make_catalog(data_dir).current("roads")  # another process: reads the pointer file
    assert len(calls) == 1


def test_publishing_by_rename_switches_version(data_dir: Path) -> None:
    catalog = make_catalog(data_dir)
    old = catalog.current("roads")
    publish(data_dir / "roads.geojson", OTHER)
    new = catalog.current("roads")
    assert new.id != old.id and new.path.read_bytes() == OTHER
    assert old.path.read_bytes() == ROADS  # still there for downloads in flight


def test_in_place_rewrite_waits_until_the_file_settles(data_dir: Path) -> None:
    catalog = make_catalog(data_dir, settle_seconds=30.0)
    old = catalog.current("roads")
    with open(data_dir / "roads.geojson", "r+b") as f:  # same inode, fresh mtime
        f.write(OTHER)
    assert catalog.current("roads").id == old.id
    past = time.time() - 60
    os.utime(data_dir / "roads.geojson", (past, past))
    assert catalog.current("roads").path.read_bytes() == OTHER


def test_torn_file_keeps_the_previous_version(data_dir: Path) -> None:
    catalog = make_catalog(data_dir)
    old = catalog.current("roads")
    (data_dir / "roads.geojson").write_bytes(OTHER[: len(OTHER) // 2])
    assert catalog.current("roads").id == old.id
    pointer = catalog.pointer("roads")
    assert pointer.version == old.id and "not valid JSON" in pointer.rejected["error"]  # type: ignore[index]
    (data_dir / "roads.geojson").write_bytes(OTHER)  # the writer finishes
    assert catalog.current("roads").path.read_bytes() == OTHER


def test_invalid_first_version_is_unavailable(data_dir: Path) -> None:
    (data_dir / "broken.geojson").write_bytes(b'{"type":"FeatureCollection","features":[')
    catalog = make_catalog(data_dir)
    with pytest.raises(DatasetUnavailable) as caught:
        catalog.current("broken")
    assert "not valid JSON" in caught.value.description
    assert caught.value.status == 503


def test_file_changing_during_copy(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = make_catalog(data_dir)
    old = catalog.current("roads")
    path = data_dir / "roads.geojson"
    publish(path, OTHER)
    original = catalog_module._copy_and_hash

    def racing(source: Path, target: Path, expected: object) -> str:
        with open(source, "ab") as f:  # a writer appends while we copy
            f.write(b" ")
        return original(source, target, expected)  # type: ignore[arg-type]

    monkeypatch.setattr(catalog_module, "_copy_and_hash", racing)
    assert catalog.current("roads").id == old.id


def test_unsettled_first_version_answers_not_ready(data_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(*args: object) -> str:
        raise SourceChanged("x")

    monkeypatch.setattr(catalog_module, "_copy_and_hash", changed)
    with pytest.raises(NotReady) as caught:
        make_catalog(data_dir).current("roads")
    assert caught.value.headers["Retry-After"]


def test_old_versions_are_removed_beyond_keep_versions(data_dir: Path) -> None:
    catalog = make_catalog(data_dir, keep_versions=1)
    ids = []
    for i in range(4):
        publish(data_dir / "roads.geojson", ROADS.replace(b'"A"', f'"{i}"'.encode()))
        ids.append(catalog.current("roads").id)
    stored = sorted(p.name for p in (data_dir / ".state/versions/roads").iterdir())
    assert stored == sorted(ids[-2:])


def test_deleted_file_is_not_found(data_dir: Path) -> None:
    catalog = make_catalog(data_dir)
    catalog.current("roads")
    (data_dir / "roads.geojson").unlink()
    with pytest.raises(DatasetNotFound):
        catalog.current("roads")


def test_geojson_wins_over_json(data_dir: Path) -> None:
    (data_dir / "roads.json").write_bytes(OTHER)
    (data_dir / "parks.json").write_bytes(OTHER)
    catalog = make_catalog(data_dir)
    assert catalog.names() == ["parks", "roads"]
    assert catalog.current("roads").path.read_bytes() == ROADS
    assert catalog.current("parks").path.read_bytes() == OTHER


def test_state_folder_lost_is_rebuilt(data_dir: Path) -> None:
    import shutil

    catalog = make_catalog(data_dir)
    catalog.current("roads")
    assert jobs.wait_idle(30)  # the background index build writes into the state folder
    shutil.rmtree(data_dir / ".state")
    assert make_catalog(data_dir).current("roads").path.read_bytes() == ROADS


def test_variants_are_built_once(data_dir: Path) -> None:
    catalog = make_catalog(data_dir, precompress="gzip,br", compress_min_bytes=1)
    version = catalog.prepare("roads")
    assert version.variant("gzip") is not None and version.variant("br") is not None
    mtime = version.variant("gzip").stat().st_mtime_ns  # type: ignore[union-attr]
    catalog.artifacts.build(version, "variants")
    assert version.variant("gzip").stat().st_mtime_ns == mtime  # type: ignore[union-attr]


def test_small_files_get_no_variants(data_dir: Path) -> None:
    catalog = make_catalog(data_dir, precompress="gzip", compress_min_bytes=10_000)
    version = catalog.prepare("roads")
    assert version.variant("gzip") is None


def test_readiness(data_dir: Path, tmp_path: Path) -> None:
    assert make_catalog(data_dir).readiness() == {}
    missing = make_catalog(tmp_path / "missing", state_dir=tmp_path / "state")
    assert set(missing.readiness()) == {"data_dir"}
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert set(make_catalog(data_dir, state_dir=blocker / "state").readiness()) == {"state_dir"}


def test_leftovers_of_a_killed_build_are_removed(data_dir: Path) -> None:
    catalog = make_catalog(data_dir, precompress="gzip", compress_min_bytes=1)
    version = catalog.current("roads")
    leftover = version.directory / ".data.geojson.gz.99999.tmp"
    leftover.write_bytes(b"half")
    catalog.artifacts.build(version, "variants", wait=True)
    assert not leftover.exists() and version.variant("gzip") is not None


def test_background_job_skips_a_superseded_version(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, precompress="gzip", compress_min_bytes=1,
                        settle_seconds=0.0, precompress_on_publish_bytes=0)
    catalog = open_catalog(settings, background=False)  # the test plays the job queue
    old = catalog.current("roads")
    publish(data_dir / "roads.geojson", OTHER)
    new = catalog.current("roads")
    for artifact in ("variants", "index"):
        catalog.build(Build(artifact, "roads", old.id))
        catalog.build(Build(artifact, "roads", new.id))
    assert old.variant("gzip") is None and new.variant("gzip") is not None
    assert not (old.directory / "index.sqlite").exists()
    assert (new.directory / "index.sqlite").exists()


def test_lost_version_folder_is_ingested_again(data_dir: Path) -> None:
    import shutil

    catalog = make_catalog(data_dir)
    version = catalog.current("roads")
    assert jobs.wait_idle(30)  # the background index build writes into the folder
    shutil.rmtree(version.directory)  # the pointer survives, its version does not
    again = make_catalog(data_dir).current("roads")
    assert again.id == version.id and again.path.read_bytes() == ROADS


def test_run_blocking_is_a_plain_call_without_gevent() -> None:
    from geojson_api.gevent_support import run_blocking

    assert run_blocking(sum, [1, 2, 3]) == 6


class RecordingScheduler:
    """A scheduler that runs nothing: the test sees what publishing asked for."""

    def __init__(self) -> None:
        self.builds: list[Build] = []

    def build(self, request: Build) -> None:
        self.builds.append(request)

    def call_soon(self, key: object, job: object) -> None:
        raise AssertionError("nothing runs in the background here")


def test_small_files_get_their_variants_while_published(data_dir: Path) -> None:
    from geojson_api.pipeline import registry

    settings = Settings(data_dir=data_dir, precompress="gzip,br", compress_min_bytes=1,
                        settle_seconds=0.0, precompress_on_publish_bytes=len(ROADS))
    scheduler = RecordingScheduler()
    catalog = Catalog(settings, schedule=scheduler, artifacts=registry(settings))
    version = catalog.current("roads")
    assert version.variant("gzip") is not None and version.variant("br") is not None
    assert [b.artifact for b in scheduler.builds] == ["index", "tiles"]  # the rest are jobs

    publish(data_dir / "roads.geojson", OTHER + b" " * len(ROADS))  # above the limit
    bigger = catalog.current("roads")
    assert bigger.variant("gzip") is None
    assert [b.artifact for b in scheduler.builds[2:]] == ["variants", "index", "tiles"]
    assert {b.version for b in scheduler.builds[2:]} == {bigger.id}


def test_a_state_check_takes_no_lock_and_submits_nothing(data_dir: Path) -> None:
    from geojson_api import locks
    from geojson_api.pipeline import registry

    settings = Settings(data_dir=data_dir, settle_seconds=0.0)
    scheduler = RecordingScheduler()
    catalog = Catalog(settings, schedule=scheduler, artifacts=registry(settings))
    version = catalog.current("roads")
    asked = list(scheduler.builds)
    lock = version.directory / ".index.lock"
    assert catalog.artifacts.state(version, "index").status == "queued"
    with locks.file_lock(lock, wait=False) as mine:  # a builder elsewhere holds it
        assert mine
        assert catalog.artifacts.state(version, "index").status == "building"
        assert locks.held(lock)
    assert not locks.held(lock)
    assert catalog.artifacts.state(version, "index").status == "queued"
    assert scheduler.builds == asked


def test_gunicorn_start_leaves_tiles_to_the_workers_which_ask_for_them(data_dir: Path) -> None:
    """prepare_all(at_start=True) builds variants and index, not tiles; the first process
    that meets the version (a worker) asks for what is missing, once."""
    from geojson_api.pipeline import registry

    settings = Settings(data_dir=data_dir, settle_seconds=0.0, compress_min_bytes=1)
    master = Catalog(settings, schedule=None, artifacts=registry(settings))
    assert master.prepare_all(lambda line: None, at_start=True) == 0
    version = master.current("roads")
    states = {name: master.artifacts.state(version, name).status
              for name in ("variants", "index", "tiles")}
    assert states == {"variants": "ready", "index": "ready", "tiles": "queued"}
    scheduler = RecordingScheduler()
    worker = Catalog(settings, schedule=scheduler, artifacts=registry(settings))
    assert worker.current("roads").id == version.id
    worker.current("roads")
    assert [(b.artifact, b.version) for b in scheduler.builds] == [("tiles", version.id)]
    master.prepare_all(lambda line: None)  # `geojson-api prepare`: everything
    assert master.artifacts.state(version, "tiles").status == "ready"
