"""The study's scenarios and the numbers it printed, as data.

Its development-server results were measured on a 2 vCPU, 8 GB VM; its
production results are claims. Where the study gives no figure, the value is
None. Error rates are fractions (0.157 = 15.7 %).
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1e6


@dataclass(frozen=True)
class Claim:
    """One scenario of the study and what it reported for it."""

    users: int
    profile: str  # small, medium or large
    avg_ms: float
    rps: float
    error_rate: float | None
    below: bool = False  # the study wrote "< avg_ms"

    @property
    def scenario(self) -> str:
        return f"{self.users}u-{self.profile}"

    def latency_text(self) -> str:
        return f"{'< ' if self.below else ''}{self.avg_ms:,.0f}"


SIZES_MB = {"small": 0.05, "medium": 5.0, "large": 50.0}

DEV_SERVER = (
    Claim(10, "small", 12, 830, None),
    Claim(50, "medium", 485, 103, None),
    Claim(100, "medium", 1450, 69, 0.025),
    Claim(200, "large", 2600, 38, 0.157),
)

PRODUCTION = (
    Claim(10, "small", 5, 1950, None, below=True),
    Claim(50, "medium", 22, 2270, None),
    Claim(100, "medium", 25, 4000, None),
    Claim(200, "large", 115, 1740, 0.0),
)

HEADLINE_USERS = 200
HEADLINE_PROFILE = "large"
BUDGET_P95_MS = 500  # the study's performance budget for API endpoints


def implied_gb_per_s(claim: Claim) -> float:
    """The data rate a claim implies: requests/s x file size."""
    return claim.rps * SIZES_MB[claim.profile] * MB / 1e9


def offered_rps(users: int, mean_wait_s: float = 2.0) -> float:
    """What a Locust user population with 1-3 s think time requests per second in a
    steady state, even if every answer took no time: users / mean wait."""
    return users / mean_wait_s
