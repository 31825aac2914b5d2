"""The study's users as Locust code. Runs against any base URL.

    locust -f src/geojson_api/lab/files/locustfile.py --host http://127.0.0.1:8000 StudyUser
    locust -f src/geojson_api/lab/files/locustfile.py --headless -u 50 -r 25 -t 1m \\
        --host http://127.0.0.1:8000 StudyUser --mix large

(in a checkout; an installed package has it at ``geojson_api/lab/files/locustfile.py``,
which ``geojson_api.lab.targets.lab_file("locustfile.py")`` returns). ``geojson-api
bench`` runs it the same way, one Locust process per scenario (see
docs/benchmarks.md, "Load-test lab"). It is package data, not a module of the
package: importing Locust patches the standard library with gevent, so nothing
imports this file but Locust itself.

Users
-----
``StudyUser``
    The study's dashboard user: one whole dataset per request, ``small``,
    ``medium`` and ``large`` with weights 10 : 3 : 1 (``--mix mixed``, the
    default) or a single size (``--mix small|medium|large``), waiting 1-3 s
    between requests. Statistics are named by size.
``DatasetApiUser``
    A dashboard's catalog panel: the dataset listing (``/api/datasets``), then
    the metadata of one of the datasets it lists (``/api/datasets/<name>``),
    1 : 3, waiting 1-3 s.

``FeatureQueryUser``
    A map over a big layer through OGC API - Features: the first 100 features
    of a map-sized box (2-20 % of the collection's extent, ``--collection``,
    default ``large``), and 1 time in 4 one feature of that page by id,
    waiting 1-3 s.

Adding a user: subclass ``LabUser``, use
``self.fetch(path, name)`` (or ``self.client`` for small JSON answers), and
give it a profile in ``geojson_api/lab/matrix.py`` (``PROFILES``) so that
``geojson-api bench`` can run it. Its stats names are what the report shows.

Timing
------
Bodies are read in 1 MiB chunks and thrown away (a client holding 300 copies
of a 50 MB file would need 15 GB), and each request is timed to its last byte:
Locust's own stream mode stops the clock at the headers. A body shorter than its
Content-Length, or cut by an error, counts as a failure. A request still in
flight when the run stops is reported as request type ``UNFINISHED`` with the
time it had run so far, so a report can tell "slow" from "never finished".

By default the client sends ``Accept-Encoding: identity``, so every server sends
the same bytes (``--accept-encoding "br, gzip"`` behaves like a browser; our app
then sends its precompressed variants).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gevent import GreenletExit
from locust import FastHttpUser, between, events, task

CHUNK = 1 << 20
SIZES = ("small", "medium", "large")
MIXES = {"mixed": (10, 3, 1), "small": (1, 0, 0), "medium": (0, 1, 0), "large": (0, 0, 1)}
UNFINISHED = "UNFINISHED"
T = TypeVar("T")


# Locust's EventHook.add_listener has no annotations.
@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def add_options(parser: Any) -> None:
    parser.add_argument("--mix", choices=sorted(MIXES), default="mixed",
                        help="StudyUser: which datasets, mixed = small:medium:large 10:3:1")
    parser.add_argument("--datasets", default=",".join(SIZES),
                        help="StudyUser: names of the small, medium and large datasets")
    parser.add_argument("--collection", default="large",
                        help="FeatureQueryUser: the collection (dataset) to query")
    parser.add_argument("--accept-encoding", default="identity",
                        help="Accept-Encoding header of every request (default identity)")
    parser.add_argument("--window-file", default="",
                        help="write the measured window (statistics reset, stop; epoch "
                             "seconds) to this JSON file when the test stops")


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def write_window(environment: Any, **_kwargs: Any) -> None:
    """The statistics cover [reset, stop]: Locust's JSON has no such totals."""
    path = getattr(environment.parsed_options, "window_file", "")
    if path:
        window = {"reset": environment.stats.start_time, "stop": time.time()}
        Path(path).write_text(json.dumps(window))


def option(user: FastHttpUser, name: str, default: str) -> str:
    """A command line option, or its default when Locust runs as a library."""
    return str(getattr(user.environment.parsed_options, name, default))


@dataclass
class Received:
    bytes: int = 0


class LabUser(FastHttpUser):
    """What every user of the lab shares: the study's think time and timed downloads."""

    abstract = True
    wait_time = between(1, 3)
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.headers = {"Accept-Encoding": option(self, "accept_encoding", "identity")}

    def fetch(self, path: str, name: str) -> None:
        """GET ``path``, timed to the last byte of the body, as one statistic ``name``."""
        started = time.perf_counter()
        received = Received()
        try:
            with self.client.get(path, name=name, headers=self.headers, stream=True,
                                 catch_response=True) as response:
                if response.request_meta["exception"] is None:
                    read_body(response, received)
                response.request_meta["response_time"] = (time.perf_counter() - started) * 1000
                response.request_meta["response_length"] = received.bytes
        except GreenletExit:  # the run stops while this request is in flight
            self.environment.events.request.fire(
                request_type=UNFINISHED, name=name, context={}, exception=None,
                response_time=(time.perf_counter() - started) * 1000,
                response_length=received.bytes)
            raise

    def get_one(self, choices: Sequence[str], prefix: str, name: str) -> None:
        """GET ``prefix`` + one of ``choices`` as statistic ``name``; nothing without any."""
        if choices:
            self.client.get(prefix + random.choice(choices), name=name, headers=self.headers)

    def read(self, path: str, name: str, parse: Callable[[Any], T]) -> T | None:
        """GET a small JSON answer as statistic ``name``: ``parse``'s result (it marks a
        bad answer failed), or None when the request itself failed."""
        with self.client.get(path, name=name, headers=self.headers,
                             catch_response=True) as response:
            if response.request_meta["exception"] is None:
                return parse(response)
        return None


def read_body(response: Any, received: Received) -> None:
    """Read and drop the body; a short or broken body marks the request failed."""
    try:
        for chunk in response.iter_content(CHUNK, decode_content=False):
            received.bytes += len(chunk)
    except Exception as exc:  # a reset or timeout in the middle of the body
        response.failure(f"body cut after {received.bytes} bytes: {exc!r}")
        return
    expected = response.headers.get("content-length")
    if expected is not None and int(expected) != received.bytes:
        response.failure(f"body has {received.bytes} bytes, Content-Length says {expected}")


class StudyUser(LabUser):
    """The study's dashboard user: whole datasets, small : medium : large = 10 : 3 : 1."""

    def on_start(self) -> None:
        super().on_start()
        names = option(self, "datasets", ",".join(SIZES)).split(",")
        if len(names) != len(SIZES):
            raise ValueError(f"--datasets needs {len(SIZES)} names, got {names}")
        self.paths = {size: f"/geojson/{name}" for size, name in zip(SIZES, names, strict=True)}
        self.weights = MIXES[option(self, "mix", "mixed")]

    @task
    def download(self) -> None:
        size = random.choices(SIZES, weights=self.weights)[0]
        self.fetch(self.paths[size], name=size)


class DatasetApiUser(LabUser):
    """A catalog panel: the dataset listing, then one listed dataset's metadata (1 : 3)."""

    names: tuple[str, ...] = ()

    def on_start(self) -> None:
        super().on_start()
        self.listing()

    @task(1)
    def listing(self) -> None:
        names = self.read("/api/datasets", "/api/datasets", listed_names)
        if names is not None:
            self.names = names

    @task(3)
    def metadata(self) -> None:
        self.get_one(self.names, "/api/datasets/", "/api/datasets/<name>")


def listed_names(response: Any) -> tuple[str, ...]:
    """Names of the ready datasets in a listing; a listing without any is a failure."""
    try:
        entries = response.json()["datasets"]
        names = tuple(e["name"] for e in entries if e.get("status") == "ready")
    except (ValueError, KeyError, TypeError) as exc:
        response.failure(f"not a dataset listing: {exc!r}")
        return ()
    if not names:
        response.failure("the listing has no ready dataset")
    return names


class FeatureQueryUser(LabUser):
    """A map over a big layer (OGC API - Features): the features in view, then a click.

    Each user reads the collection's extent once, then asks for the first 100
    features of a map-sized box (2-20 % of the extent's side, like the feature
    benchmark's boxes) and, 1 time in 4, one feature of the last page by id.
    """

    box_ids: tuple[str, ...] = ()

    def on_start(self) -> None:
        super().on_start()
        self.collection = option(self, "collection", "large")
        extent = self.read(f"/collections/{self.collection}", "/collections/<id>",
                           collection_extent)
        self.extent = extent or (-180.0, -90.0, 180.0, 90.0)

    @task(4)
    def in_view(self) -> None:
        bbox = ",".join(f"{v:.6f}" for v in map_box(self.extent, random.random))
        path = f"/collections/{self.collection}/items?bbox={bbox}&limit=100"
        ids = self.read(path, "items?bbox&limit=100", page_ids)
        if ids is not None:
            self.box_ids = ids

    @task(1)
    def one_feature(self) -> None:
        self.get_one(self.box_ids, f"/collections/{self.collection}/items/", "items/<id>")


def collection_extent(response: Any) -> tuple[float, float, float, float] | None:
    """The spatial extent of a collection document; a document without one is a failure."""
    try:
        box = response.json()["extent"]["spatial"]["bbox"][0]
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        response.failure(f"not a collection with an extent: {exc!r}")
        return None


def map_box(
    extent: tuple[float, float, float, float], draw: Any
) -> tuple[float, float, float, float]:
    """A box whose sides are 2-20 % of the extent's, placed inside it."""
    west, south, east, north = extent
    share = 0.02 + 0.18 * draw()
    width, height = (east - west) * share, (north - south) * share
    left = west + (east - west - width) * draw()
    bottom = south + (north - south - height) * draw()
    return (left, bottom, left + width, bottom + height)


def page_ids(response: Any) -> tuple[str, ...]:
    """Ids of the features of an items page; anything else is a failure."""
    try:
        return tuple(str(f["id"]) for f in response.json()["features"])
    except (ValueError, KeyError, TypeError) as exc:
        response.failure(f"not a page of features: {exc!r}")
        return ()
