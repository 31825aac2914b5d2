"""The scenario matrix: targets, profiles, user counts, durations and selection.

A *scenario* is one load profile at one concurrency, driven by one client:

- Locust (the study's client): ``<users>u-<profile>``, e.g. ``200u-large``.
  ``users`` simulated users each wait 1-3 s between requests; they are started
  over ``ramp`` seconds, statistics are reset once all are running, and then
  ``measure`` seconds are measured.
- wrk (closed loop, no think time, the highest rate a target sustains):
  ``wrk-<connections>c-<profile>``, e.g. ``wrk-50c-large``.

The full matrix is the study's: 10, 50, 100, 200 and 300 users x small,
medium, large and the mixed 10:3:1 profile, plus wrk at the concurrency and
file size of the study's four published scenarios (its requests/s figures
are those of a closed loop). Its durations are sized so that all four targets
finish in under 15 minutes on two cores (4 x 20 Locust runs, 4 x 4 wrk runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

TARGETS = ("devserver", "gunicorn", "stack", "nginx")
USERS = (10, 50, 100, 200, 300)
STUDY_PROFILES = ("small", "medium", "large", "mixed")
# The study's published scenarios: (users, file size).
STUDY_SCENARIOS = ((10, "small"), (50, "medium"), (100, "medium"), (200, "large"))


@dataclass(frozen=True)
class Profile:
    """What the simulated users request, and how long a full run measures it."""

    name: str
    user_class: str  # in files/locustfile.py
    locust_args: tuple[str, ...]
    measure: int  # seconds measured in the full matrix
    dataset: str | None = None  # the one file wrk can request
    needs_api: bool = False  # only targets serving /api/datasets


PROFILES = {
    "small": Profile("small", "StudyUser", ("--mix", "small"), 4, "small"),
    "medium": Profile("medium", "StudyUser", ("--mix", "medium"), 4, "medium"),
    "large": Profile("large", "StudyUser", ("--mix", "large"), 5, "large"),
    "mixed": Profile("mixed", "StudyUser", ("--mix", "mixed"), 4),
    "api": Profile("api", "DatasetApiUser", (), 4, needs_api=True),
    "features": Profile("features", "FeatureQueryUser", (), 4, needs_api=True),
}


@dataclass(frozen=True)
class Scenario:
    """One profile at one concurrency, driven by one client for bounded seconds."""

    client: str  # "locust" or "wrk"
    profile: str
    users: int  # simulated users (Locust) or connections (wrk)
    ramp: int  # seconds to start every user (0 for wrk)
    measure: int  # seconds measured after the ramp

    @property
    def name(self) -> str:
        if self.client == "wrk":
            return f"wrk-{self.users}c-{self.profile}"
        return f"{self.users}u-{self.profile}"

    @property
    def spawn_rate(self) -> float:
        """Locust starts ``rate`` users at once, then as many again every second: with
        users / (ramp + 1) per second, the last ones start ``ramp`` s after the first."""
        return self.users / (self.ramp + 1)

    @property
    def run_time(self) -> int:
        return self.ramp + self.measure

    def tokens(self) -> set[str]:
        """Every word that selects this scenario with ``--scenarios``."""
        count = f"{self.users}c" if self.client == "wrk" else f"{self.users}u"
        return {self.name, self.profile, count, self.client}

    def runs_on(self, has_api: bool) -> bool:
        return has_api or not PROFILES[self.profile].needs_api


def ramp_seconds(users: int) -> int:
    """Users start over 1 s (10 users) or 2 s (more): gradual, and bounded."""
    return 1 if users <= 10 else 2


def locust_scenario(profile: str, users: int) -> Scenario:
    return Scenario("locust", profile, users, ramp_seconds(users), PROFILES[profile].measure)


def wrk_scenario(connections: int, profile: str) -> Scenario:
    """3 s, or 8 s for 50 MB files: at 200 connections one download takes seconds."""
    return Scenario("wrk", profile, connections, 0, 8 if profile == "large" else 3)


def universe() -> list[Scenario]:
    """Every scenario the lab knows, in the order they run."""
    locust = [locust_scenario(p, u) for p in PROFILES for u in USERS]
    return locust + [wrk_scenario(u, p) for u, p in STUDY_SCENARIOS]


def full_matrix() -> list[Scenario]:
    """The study's matrix plus wrk at the study's four scenarios."""
    return [s for s in universe() if s.profile in STUDY_PROFILES]


def quick_matrix() -> list[Scenario]:
    """The smoke run: 10 users of the mixed, API and feature-query profiles, one short
    wrk row."""
    return [Scenario("locust", "mixed", 10, 1, 2), Scenario("locust", "api", 10, 1, 2),
            Scenario("locust", "features", 10, 1, 2), Scenario("wrk", "small", 10, 0, 2)]


def shorten(scenario: Scenario) -> Scenario:
    """The quick-mode durations of any scenario."""
    return replace(scenario, ramp=min(scenario.ramp, 1), measure=2)


def select(tokens: Sequence[str], quick: bool) -> list[Scenario]:
    """Scenarios matching any token (a name, a profile, ``200u``, ``50c``, ``wrk``,
    ``locust``), in run order; ``quick`` shortens them."""
    chosen = [s for s in universe() if s.tokens() & set(tokens)]
    unknown = [t for t in tokens if not any(t in s.tokens() for s in universe())]
    if unknown or not chosen:
        raise ValueError(f"unknown scenario {', '.join(unknown) or '(none given)'}; use a "
                         "name (200u-large, wrk-50c-small), a profile (" + ", ".join(PROFILES)
                         + "), a count (200u, 50c) or a client (locust, wrk)")
    return [shorten(s) for s in chosen] if quick else chosen


def with_measure(scenarios: Sequence[Scenario], seconds: int) -> list[Scenario]:
    """Every scenario measured for ``seconds`` instead of its own duration."""
    return [replace(s, measure=seconds) for s in scenarios]


def estimate_seconds(scenarios: Sequence[Scenario], targets: int, overhead: float) -> float:
    """Rough wall time of the runs: their durations plus ``overhead`` per run."""
    return sum(s.run_time + overhead for s in scenarios) * targets
