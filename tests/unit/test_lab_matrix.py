"""The lab's scenario matrix: what runs, for how long, in which order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from geojson_api.lab.matrix import (
    STUDY_PROFILES,
    TARGETS,
    USERS,
    Scenario,
    estimate_seconds,
    full_matrix,
    quick_matrix,
    select,
    with_measure,
)
from geojson_api.lab.runner import schedule
from geojson_api.lab.targets import Target


def test_full_matrix_is_the_studys() -> None:
    locust = [s for s in full_matrix() if s.client == "locust"]
    assert {(s.users, s.profile) for s in locust} == {
        (u, p) for u in USERS for p in STUDY_PROFILES}
    assert len(locust) == 20 and set(USERS) == {10, 50, 100, 200, 300}
    wrk = [s.name for s in full_matrix() if s.client == "wrk"]
    assert wrk == ["wrk-10c-small", "wrk-50c-medium", "wrk-100c-medium", "wrk-200c-large"]


def test_full_matrix_fits_in_15_minutes_on_four_targets() -> None:
    # 2 s per run for the client's start and stop and the cool-down (a quick run: 1.4 s),
    # two minutes for samples, start-up, checks, the report and stopping.
    runs = estimate_seconds(full_matrix(), len(TARGETS), overhead=2.0)
    assert runs + 120 < 15 * 60, runs


def test_quick_matrix_is_short_and_touches_every_user_class() -> None:
    quick = quick_matrix()
    assert {s.profile for s in quick} >= {"mixed", "api", "features"}
    assert all(s.measure <= 2 and s.ramp <= 1 for s in quick)
    assert estimate_seconds(quick, len(TARGETS), overhead=2.5) < 90


def test_names_and_ramp() -> None:
    scenario = Scenario("locust", "large", 300, 2, 5)
    assert scenario.name == "300u-large" and scenario.run_time == 7
    # Locust starts `rate` users at once and as many every second: 100 at 0, 1 and 2 s.
    assert scenario.spawn_rate == 100
    assert Scenario("wrk", "small", 10, 0, 3).name == "wrk-10c-small"


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [(["200u-large"], ["200u-large"]),
     (["wrk"], ["wrk-10c-small", "wrk-50c-medium", "wrk-100c-medium", "wrk-200c-large"]),
     (["300u"], ["300u-small", "300u-medium", "300u-large", "300u-mixed", "300u-api",
                 "300u-features"]),
     (["api", "10u-small"], ["10u-small", "10u-api", "50u-api", "100u-api", "200u-api",
                             "300u-api"])],
)
def test_select(tokens: list[str], expected: list[str]) -> None:
    assert [s.name for s in select(tokens, quick=False)] == expected


def test_select_rejects_unknown_words_and_quick_shortens() -> None:
    with pytest.raises(ValueError, match="unknown scenario 400u"):
        select(["large", "400u"], quick=False)
    (quick,) = select(["300u-large"], quick=True)
    assert (quick.ramp, quick.measure) == (1, 2)
    assert {s.measure for s in with_measure(full_matrix(), 9)} == {9}


@dataclass
class Idle:
    name: str = "idle"


def test_schedule_rotates_targets_and_skips_the_api_where_there_is_none() -> None:
    targets = [Target("devserver", 1, Idle()), Target("gunicorn", 2, Idle(), has_api=True),
               Target("nginx", 3, Idle())]
    scenarios = [Scenario("locust", "small", 10, 1, 2), Scenario("locust", "medium", 10, 1, 2),
                 Scenario("locust", "api", 10, 1, 2)]
    order = [(s.name, t.name) for s, t in schedule(scenarios, targets)]
    assert order == [("10u-small", "devserver"), ("10u-small", "gunicorn"),
                     ("10u-small", "nginx"), ("10u-medium", "gunicorn"),
                     ("10u-medium", "nginx"), ("10u-medium", "devserver"),
                     ("10u-api", "gunicorn")]
