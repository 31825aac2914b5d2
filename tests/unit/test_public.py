"""Public pointers: the symlinks Nginx resolves to serve a dataset's current version."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from geojson_api import http, nginxconf, pipeline, public
from geojson_api.settings import Settings

from ..conftest import ROADS


def _catalog(data_dir: Path, **settings: object) -> pipeline.Catalog:
    """A catalog whose every version gets a pointer (the micro-cache off), unless told."""
    chosen: dict[str, object] = {"nginx_microcache": 0, **settings}
    return pipeline.open_catalog(Settings(data_dir=data_dir, settle_seconds=0.0,
                                          compress_min_bytes=1, tiles=False,
                                          **chosen),  # type: ignore[arg-type]
                                 background=False)


def test_point_names_the_version_folder(tmp_path: Path) -> None:
    (tmp_path / "versions" / "roads" / "abc").mkdir(parents=True)
    public.point(tmp_path, "roads", "abc")
    link = tmp_path / "public" / "roads"
    assert os.readlink(link) == "../versions/roads/abc"
    assert link.resolve() == (tmp_path / "versions" / "roads" / "abc").resolve()
    assert public.target(tmp_path, "roads") == "abc"


def test_point_replaces_atomically(tmp_path: Path) -> None:
    """A reader resolving the pointer in a loop while it is switched never finds nothing."""
    for version in ("one", "two"):
        (tmp_path / "versions" / "roads" / version).mkdir(parents=True)
    public.point(tmp_path, "roads", "one")
    stop, seen, missing = threading.Event(), set(), []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(os.readlink(tmp_path / "public" / "roads").rsplit("/", 1)[1])
            except FileNotFoundError:
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(2000):
        public.point(tmp_path, "roads", ("one", "two")[i % 2])
    stop.set()
    reader.join()
    assert not missing and seen <= {"one", "two"}
    assert public.names(tmp_path) == ["roads"]  # no temporary link left behind


def test_remove_and_remove_others(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        public.point(tmp_path, name, "v1")
    public.remove(tmp_path, "a")
    public.remove(tmp_path, "a")  # twice: nothing to do
    public.remove_others(tmp_path, ["b"])
    assert public.names(tmp_path) == ["b"]
    assert public.target(tmp_path, "a") is None


def test_target_ignores_foreign_links(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    os.symlink("/etc", tmp_path / "public" / "roads")
    assert public.target(tmp_path, "roads") is None


def test_publish_points_and_switches(data_dir: Path) -> None:
    catalog = _catalog(data_dir)
    first = catalog.current("roads")
    assert public.target(catalog.state_dir, "roads") == first.id
    (data_dir / "roads.geojson").write_bytes(ROADS.replace(b'"A"', b'"Z"'))
    second = catalog.current("roads")
    assert second.id != first.id and public.target(catalog.state_dir, "roads") == second.id


def test_small_files_are_left_to_the_micro_cache_while_it_is_on(data_dir: Path) -> None:
    cached = _catalog(data_dir, nginx_microcache=1, small_file_bytes=len(ROADS))
    version = cached.current("roads")
    assert public.target(cached.state_dir, "roads") is None  # Nginx asks the app, then caches
    cached.keep_public_in_step()
    assert public.names(cached.state_dir) == []
    bigger = _catalog(data_dir, nginx_microcache=1, small_file_bytes=len(ROADS) - 1)
    bigger.keep_public_in_step()  # over the small-file size: Nginx answers it directly
    assert public.target(bigger.state_dir, "roads") == version.id
    uncached = _catalog(data_dir, nginx_microcache=0, small_file_bytes=len(ROADS))
    public.remove(uncached.state_dir, "roads")
    uncached.keep_public_in_step()  # no micro-cache: the direct path beats the app
    assert public.target(uncached.state_dir, "roads") == version.id


def test_prepare_all_reconciles(data_dir: Path) -> None:
    catalog = _catalog(data_dir)
    version = catalog.current("roads")
    public.remove(catalog.state_dir, "roads")
    public.point(catalog.state_dir, "gone", "0123")  # a dataset whose file was removed
    assert catalog.prepare_all(lambda _: None) == 0
    assert public.names(catalog.state_dir) == ["roads"]
    assert public.target(catalog.state_dir, "roads") == version.id


def test_watch_round_follows_the_data_folder(data_dir: Path) -> None:
    catalog = _catalog(data_dir)
    catalog.current("roads")
    public.point(catalog.state_dir, "roads", "stale")  # say another process went wrong
    catalog.keep_public_in_step()
    assert public.target(catalog.state_dir, "roads") == catalog.current("roads").id
    (data_dir / "roads.geojson").unlink()
    catalog.keep_public_in_step()
    assert public.names(catalog.state_dir) == []


def test_lost_version_loses_its_pointer(data_dir: Path) -> None:
    catalog = _catalog(data_dir)
    version = catalog.current("roads")
    version.path.write_bytes(b"damaged")
    catalog.lost(version, "test")
    assert public.target(catalog.state_dir, "roads") is None
    catalog.current("roads")  # published again
    assert public.target(catalog.state_dir, "roads") == catalog.current("roads").id


def test_watcher_runs_until_its_owner_is_gone() -> None:
    calls = []

    class Owner:
        def keep_public_in_step(self) -> None:
            calls.append(1)

    owner = Owner()
    watcher = public.Watcher(owner.keep_public_in_step, 0.01)
    watcher.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls
    thread = watcher._thread
    del owner
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()


@pytest.mark.parametrize("value", public.COMMON_ACCEPT_ENCODINGS)
def test_nginx_codings_are_the_apps(value: str) -> None:
    """The table Nginx decides with is the app's own ranking, value for value."""
    rows = {row[0]: row[1:] for row in nginxconf._direct_encodings()}
    suffixes = [s for s in rows[value] if s]
    assert suffixes == [{"gzip": ".gz", "br": ".br"}[c] for c in http.accepted_encodings(value)]
