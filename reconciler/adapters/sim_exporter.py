"""The sim fleet's Prometheus exporter: `/metrics` in text exposition format 0.0.4, for a real Prometheus to scrape.

Owns: turning `SimFleet.health_all()` into samples. Every ready, non-silent instance gets gauges of its current
error rate and p99 latency, a request counter by status code and a request-duration histogram, labelled
`plugin`, `cluster`, `namespace`, `version`. Counters are computed from the time since the instance became
ready, at a steady rate, so `rate()` over them gives back the instance's error rate and latency.

Must not: change the fleet, or decide anything; it only reads.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

from reconciler.adapters.httpserver import TEXT, BackgroundServer, Reply
from reconciler.adapters.sim import InstanceHealth, SimFleet

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUESTS_PER_SECOND = 100.0
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # upper bounds in seconds; +Inf follows

REQUESTS = "http_requests_total"
DURATION = "http_request_duration_seconds"
_HEADERS = {
    "grayops_sim_error_rate": ("gauge", "Share of requests the sim instance fails right now."),
    "grayops_sim_latency_p99_ms": ("gauge", "99th percentile request latency of the sim instance, in milliseconds."),
    "http_requests_total": ("counter", "Requests served by the sim instance, by HTTP status code."),
    "http_request_duration_seconds": ("histogram", "Request latency of the sim instance, in seconds."),
}


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@functools.lru_cache(maxsize=1024)  # instances share a few steady p99 values
def latency_shares(p99_seconds: float) -> tuple[tuple[float, ...], float]:
    """The cumulative share of requests at or below each bound of BUCKETS, and the mean latency (for `_sum`).

    Shaped so that Prometheus' `histogram_quantile(0.99, ...)`, which interpolates linearly inside the bucket
    where the 99th percentile falls, lands on `p99_seconds`: with the p99 in bucket (lo, hi] at fraction t of
    its width, a share m of requests goes into that bucket, f = 0.99 - t*m below `lo` and the rest above `hi`,
    so interpolation gives lo + (hi - lo) * (0.99 - f) / m = p99 exactly. Two approximations: in the lowest
    bucket interpolation starts at 0, so a p99 under 0.99 * 50 ms reads as 49.5 ms; past the last finite bound
    the answer can only be 2.5 s. The mean uses bucket midpoints and is only roughly right.
    """
    cumulative = [0.0] * len(BUCKETS)
    k = next((i for i, bound in enumerate(BUCKETS) if p99_seconds <= bound), None)
    if k is None:
        cumulative[-1] = 0.98  # the 99th percentile falls in +Inf: histogram_quantile answers 2.5
    elif k == 0:
        cumulative[0] = min(1.0, 0.99 * BUCKETS[0] / p99_seconds) if p99_seconds > 0 else 1.0
    else:
        lo, hi = BUCKETS[k - 1], BUCKETS[k]
        t = (p99_seconds - lo) / (hi - lo)
        m = 0.5 if t >= 1.0 else min(0.5, 0.01 / (1.0 - t))
        cumulative[k - 1] = 0.99 - t * m
        cumulative[k] = min(1.0, 0.99 + (1.0 - t) * m)
    for i in range(1, len(cumulative)):
        # Whatever is not yet counted lands in the next bucket up (or in +Inf after the last).
        if cumulative[i] == 0.0 and cumulative[i - 1] > 0.0:
            cumulative[i] = 1.0
    mean, below, lower = 0.0, 0.0, 0.0
    for bound, share in zip(BUCKETS, cumulative, strict=True):
        mean += (share - below) * (lower + bound) / 2
        below, lower = max(below, share), bound
    mean += (1.0 - below) * max(p99_seconds, BUCKETS[-1])
    return tuple(cumulative), mean


def _number(value: float) -> str:
    return repr(float(value))


class SimExporter(BackgroundServer):
    """Serves the fleet's `/metrics` from a daemon thread; `start`/`stop`, or use it as a context manager."""

    name = "sim-exporter"

    def __init__(self, fleet: SimFleet, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.fleet = fleet
        self._lock = threading.Lock()
        # Highest value served per counter series: a counter never goes down, even if the clock steps back.
        self._served: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def route(self, path: str) -> Reply:
        if path != "/metrics":
            return 404, TEXT, b"not found: only /metrics is served\n"
        return 200, CONTENT_TYPE, self.render().encode("utf-8")

    def render(self, now: float | None = None) -> str:
        """The exposition text at `now` (default: the fleet's clock)."""
        when = self.fleet.clock.now().timestamp() if now is None else now
        samples: dict[str, list[str]] = {name: [] for name in _HEADERS}
        with self._lock:
            served: dict[str, float] = {}

            def counter(family: str, sample: str, series: str, value: float) -> None:
                key = f"{sample}{series}"
                # round() is monotonic, so rounded counters still never go down.
                served[key] = top = max(round(value, 3), self._served.get(key, 0.0))
                samples[family].append(f"{key} {_number(top)}")

            for plugin, iid, health in self.fleet.health_all(when):
                if health.silent:
                    continue
                labels = self._labels(plugin, iid, health)
                samples["grayops_sim_error_rate"].append(
                    f"grayops_sim_error_rate{{{labels}}} {_number(health.error_rate)}")
                samples["grayops_sim_latency_p99_ms"].append(
                    f"grayops_sim_latency_p99_ms{{{labels}}} {_number(health.latency_p99_ms)}")
                total = REQUESTS_PER_SECOND * max(0.0, when - health.ready_since)
                rate = health.steady_error_rate
                counter(REQUESTS, REQUESTS, f'{{{labels},code="200"}}', total * (1.0 - rate))
                counter(REQUESTS, REQUESTS, f'{{{labels},code="500"}}', total * rate)
                # A histogram's samples stay grouped per series: its buckets, then its sum and count.
                cumulative, mean = latency_shares(health.steady_latency_p99_ms / 1000.0)
                for bound, share in zip(BUCKETS, cumulative, strict=True):
                    counter(DURATION, f"{DURATION}_bucket", f'{{{labels},le="{bound!r}"}}', total * share)
                counter(DURATION, f"{DURATION}_bucket", f'{{{labels},le="+Inf"}}', total)
                counter(DURATION, f"{DURATION}_sum", f"{{{labels}}}", total * mean)
                counter(DURATION, f"{DURATION}_count", f"{{{labels}}}", total)
            self._served = served  # series of instances gone or changed version are forgotten
        return "".join(self._lines(samples))

    @staticmethod
    def _labels(plugin: str, iid: str, health: InstanceHealth) -> str:
        cluster, _, namespace = iid.partition("/")
        pairs = (("plugin", plugin), ("cluster", cluster), ("namespace", namespace), ("version", health.version))
        return ",".join(f'{key}="{escape_label(value)}"' for key, value in pairs)

    @staticmethod
    def _lines(samples: dict[str, list[str]]) -> Iterator[str]:
        for family, (kind, help_text) in _HEADERS.items():
            yield f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n"
            yield from (line + "\n" for line in samples[family])
