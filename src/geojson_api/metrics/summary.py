"""A small JSON digest of the counted metrics, for the dashboard: ``GET /api/metrics``.

The page cannot read ``/metrics`` itself: it may sit on another port, and its
text format is for Prometheus. The digest carries the totals the dashboard
turns into rates between two polls (requests by status class, response bytes,
the duration histogram's cumulative buckets, shared-cache reads, artifact
builds) and what is true now (requests in flight). Its scope is what
``/metrics`` on the same port sums: every worker of this instance under
Gunicorn, this process otherwise; other instances behind the same Nginx have
their own.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

REQUESTS = "geojson_api_http_requests_total"
BUCKETS = "geojson_api_http_request_duration_seconds_bucket"
IN_FLIGHT = "geojson_api_http_requests_in_flight"
BYTES = "geojson_api_http_response_bytes_total"
CACHE = "geojson_api_cache_requests_total"
BUILDS = "geojson_api_artifact_builds_total"


def digest(counted: Collector, scope: str) -> dict[str, Any]:
    """The dashboard's digest of ``counted``'s samples, summed over their other labels."""
    by_status: dict[str, float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    cache: dict[str, float] = defaultdict(float)
    builds: dict[str, float] = defaultdict(float)
    in_flight = sent = 0.0
    for family in counted.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == REQUESTS:
                by_status[labels.get("status", "?")] += value
            elif name == BUCKETS:
                buckets[float(labels["le"])] += value
            elif name == IN_FLIGHT:
                in_flight += value
            elif name == BYTES:
                sent += value
            elif name == CACHE:
                cache[labels.get("result", "?")] += value
            elif name == BUILDS:
                builds[labels.get("result", "?")] += value
    return {
        "scope": scope,
        "time": round(time.time(), 3),
        "requests": {"total": int(sum(by_status.values())),
                     "by_status": {k: int(v) for k, v in sorted(by_status.items())}},
        "in_flight": int(in_flight),
        "response_bytes": int(sent),
        # [upper bound in seconds (null: +Inf), requests that took at most that long]
        "duration_buckets": [[None if math.isinf(le) else le, int(count)]
                             for le, count in sorted(buckets.items())],
        "cache": {k: int(v) for k, v in sorted(cache.items())},
        "builds": {k: int(v) for k, v in sorted(builds.items())},
    }
