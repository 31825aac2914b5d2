"""Browser fixtures: Debian's Chromium driven by Playwright against a real Gunicorn.

- ``chromium``: /usr/bin/chromium (never Playwright's own download). Missing, the
  tests skip; under CI=true they fail.
- ``serve_samples(*names)``: ``geojson-api serve`` on a free loopback port over
  a copy of those sample datasets, one server per set of names for the session.
- ``watched``: a fresh page whose every request to a host other than 127.0.0.1
  is aborted and recorded, and which records console errors, page errors,
  failed requests and HTTP errors. At teardown it fails the test if any of
  those lists is not empty (a test that provokes problems on purpose sets
  ``watched.expect_problems = True`` and checks the lists itself).
- ``artifact_dir``: a folder for this test's screenshots
  (``$GEOJSON_API_TEST_ARTIFACTS`` or ``var/test-artifacts``, one subfolder per test).

Chromium runs headless without a sandbox (containers), with WebGL on
SwiftShader, the CPU renderer, so MapLibre draws without a GPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ..conftest import IN_CI, copy_prepared, require_module
from ..integration.servers import GunicornServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader"]
LOOPBACK = "127.0.0.1"
VIEWPORT = {"width": 1280, "height": 900}
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)


def _missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI installs it: scripts/system-deps, make assets)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session (a Playwright ``Browser``)."""
    require_module("playwright")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def serve_samples(prepared: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[..., GunicornServer]]:
    """``serve_samples("small", "medium")``: a started Gunicorn over those samples."""
    started: dict[tuple[str, ...], GunicornServer] = {}

    def serve(*names: str) -> GunicornServer:
        key = tuple(sorted(names))
        if key not in started:
            data = copy_prepared(prepared, tmp_path_factory.mktemp("web-data"), *key)
            log = tmp_path_factory.mktemp("web-logs") / "gunicorn.log"
            started[key] = GunicornServer(data, log, workers=2).start()
        return started[key]

    yield serve
    for server in started.values():
        server.stop()
        tracebacks = [line for line in server.log().splitlines() if "Traceback" in line]
        assert not tracebacks, server.log()


@pytest.fixture
def server(serve_samples: Callable[..., GunicornServer]) -> GunicornServer:
    """The default server of the page tests: the small and medium samples."""
    return serve_samples("small", "medium")


@dataclass
class Watched:
    """A page and everything that went wrong on it."""

    page: Any  # playwright.sync_api.Page
    offsite: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    expect_problems: bool = False

    def problems(self) -> dict[str, list[str]]:
        found = {"offsite requests": self.offsite, "console errors": self.console_errors,
                 "page errors": self.page_errors, "failed requests": self.failed_requests,
                 "HTTP errors": self.http_errors}
        return {kind: items for kind, items in found.items() if items}

    def assert_clean(self) -> None:
        assert not self.problems(), self.problems()


def _route(watched: Watched) -> Callable[[Any], None]:
    def handle(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname != LOOPBACK:
            watched.offsite.append(url)
            route.abort("blockedbyclient")
        else:
            route.continue_()
    return handle


def watch(context: Any) -> Watched:
    """A new page of ``context`` (a Playwright BrowserContext), confined to 127.0.0.1 and
    with its problems recorded."""
    page = context.new_page()
    watched = Watched(page)
    context.route(re.compile(r".*"), _route(watched))
    page.on("console", lambda msg: watched.console_errors.append(msg.text)
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: watched.page_errors.append(str(exc)))
    page.on("requestfailed", lambda req: watched.failed_requests.append(
        f"{req.method} {req.url}: {req.failure}"))
    page.on("response", lambda resp: watched.http_errors.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 else None)
    return watched


@pytest.fixture
def watched(chromium: Any) -> Iterator[Watched]:
    """A fresh page (own context) that may reach 127.0.0.1 only, with its problems listed."""
    context = chromium.new_context(viewport=VIEWPORT)
    watched = watch(context)
    try:
        yield watched
    finally:
        context.close()
    if not watched.expect_problems:
        watched.assert_clean()


@pytest.fixture
def artifact_dir(request: pytest.FixtureRequest) -> Path:
    base = Path(os.environ.get("GEOJSON_API_TEST_ARTIFACTS") or ROOT / "var" / "test-artifacts")
    folder = base / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script (web/node_modules, from the lockfile's devDependencies)."""
    if not AXE.is_file():
        _missing(f"{AXE} is missing: run make assets (npm ci in web/)")
    return AXE.read_text()


@pytest.fixture
def axe_context(chromium: Any) -> Iterator[Any]:
    """A browser context that lets axe-core in: ``add_script_tag`` inserts an inline
    script, which the pages' CSP would refuse."""
    context = chromium.new_context(bypass_csp=True, viewport=VIEWPORT)
    try:
        yield context
    finally:
        context.close()


def serious_violations(page: Any, axe_source: str) -> list[tuple[str, str, list[Any]]]:
    """axe-core's serious and critical findings on ``page`` (id, impact, the elements)."""
    page.add_script_tag(content=axe_source)
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def screenshot(page: Any, path: Path) -> None:
    """A full-page screenshot, checked to hold an image (not an empty page)."""
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000

