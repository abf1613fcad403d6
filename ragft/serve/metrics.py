"""`GET /metrics` in Prometheus' text format: requests, latencies, tokens and feedback counted
by this server since it started, and the drift statistics of the pipeline's store (`ragft
monitor`'s, recomputed from the store when scraped).

Each app has its own registry, so two servers in one process (tests) count apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from ragft.drift import KINDS

if TYPE_CHECKING:
    from ragft.monitor import Monitoring

log = logging.getLogger("ragft.serve")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class ServerMetrics:
    """The counters a server updates as it answers, and the registry `/metrics` renders."""

    def __init__(self, pipeline: str, monitoring: Callable[[], Monitoring | None]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ragft_requests", "HTTP requests answered, by route and status", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "ragft_request_seconds",
            "Seconds to answer a request, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.answers = Counter("ragft_answers", "Chat completions answered, by model id", ["model"], registry=r)
        self.tokens = Counter("ragft_tokens", "Tokens of answered requests, by kind", ["kind"], registry=r)
        self.ratings = Counter("ragft_ratings", "Ratings received, by rating", ["rating"], registry=r)
        self.corrections = Counter("ragft_corrections", "Corrected answers received", registry=r)
        r.register(_DriftCollector(pipeline, monitoring))


class _DriftCollector:
    """The latest complete window's statistics and each kind's last test, from `ragft monitor`."""

    def __init__(self, pipeline: str, monitoring: Callable[[], Monitoring | None]):
        self.pipeline = pipeline
        self.monitoring = monitoring

    def describe(self) -> list[Any]:
        return []  # computed on scrape only: registering must not read the store

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("ragft_monitor_up", "1 when the drift statistics below could be computed")
        try:
            m = self.monitoring()
        except Exception as e:  # the counters still go out; the reason goes to the server's log
            log.warning("ragft: the drift statistics could not be computed: %s", e)
            m = None
        up.add_metric([], float(m is not None))
        yield up
        if m is None:
            return
        complete = [w for w in m.windows if w.complete]
        window = GaugeMetricFamily(
            "ragft_window", "The latest complete window of the served pipeline's exchanges", labels=["statistic"]
        )
        if complete:
            w = complete[-1]
            values = {
                "index": w.index,
                "exchanges": w.exchanges,
                "question_novelty": w.novelty,
                "question_novelty_seen": w.novelty_seen,
                "down_share": w.down_share,
                "top_score_median": w.top_score,
                "latency_p50_seconds": w.latency_p50,
                "latency_p95_seconds": w.latency_p95,
            }
            for name, value in values.items():
                if value is not None:
                    window.add_metric([name], float(value))
        yield window
        yield GaugeMetricFamily(
            "ragft_reference_novelty",
            "Mean held-out novelty of the training questions (what a window's question novelty is tested against)",
            value=m.reference["held_out_novelty"],
        )
        p_value = GaugeMetricFamily("ragft_drift_p_value", "p-value of each kind's last drift test", labels=["kind"])
        level = GaugeMetricFamily("ragft_drift_level", "Level each kind's last test was held to", labels=["kind"])
        alert = GaugeMetricFamily("ragft_drift_alert", "1 where each kind's last test alerted", labels=["kind"])
        alerts = GaugeMetricFamily("ragft_drift_alerts", "Windows that alerted so far, by kind", labels=["kind"])
        for kind in KINDS:
            last = next((w.tests[kind] for w in reversed(complete) if "p" in w.tests.get(kind, {})), None)
            if last is not None:
                p_value.add_metric([kind], last["p"])
                level.add_metric([kind], last["level"])
                alert.add_metric([kind], float(last["p"] <= last["level"]))
            alerts.add_metric([kind], float(sum(a.kind == kind for a in m.alerts)))
        yield from (p_value, level, alert, alerts)
        yield GaugeMetricFamily(
            "ragft_corrected_or_down",
            "Answers corrected or rated down in the store (the retrain signal counts them)",
            value=m.feedback["corrected_or_down"],
        )
        yield GaugeMetricFamily(
            "ragft_retrain_signal", "1 when `ragft monitor` signals retraining", value=float(m.retrain is not None)
        )
