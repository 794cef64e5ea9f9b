"""Prometheus metrics: gauges read from the database at scrape time, Stripe latency in-process.

Gauges come from the database, so every API process answers the same. The Stripe histogram
lives in the process that made the calls; with `pledges serve --workers N`, set
PROMETHEUS_MULTIPROC_DIR to an empty folder and the scrape sums every process.
"""

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from billing.db import session_scope
from billing.metrics.queries import Backlog, read_backlog

STRIPE_LATENCY = Histogram(
    "pledges_stripe_call_seconds",
    "Time of each Stripe API call, by operation.",
    ["operation"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)


@contextmanager
def stripe_call(operation: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        STRIPE_LATENCY.labels(operation).observe(time.perf_counter() - started)


def _by_status(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status, number in sorted(counts.items()):
        family.add_metric([status], number)
    return family


def backlog_metrics(backlog: Backlog) -> list[Metric]:
    failed_sends = backlog.outbox_by_status.get("failed", 0)
    return [
        _by_status("pledges_inbox_events", "Stripe events in the inbox.", backlog.inbox_by_status),
        GaugeMetricFamily(
            "pledges_inbox_oldest_pending_seconds",
            "Age of the oldest event waiting to be applied (0 when none).",
            value=backlog.inbox_oldest_pending_seconds,
        ),
        _by_status("pledges_outbox_emails", "Emails in the outbox.", backlog.outbox_by_status),
        GaugeMetricFamily(
            "pledges_outbox_oldest_unsent_seconds",
            "Age of the oldest email not sent yet (0 when none).",
            value=backlog.outbox_oldest_unsent_seconds,
        ),
        GaugeMetricFamily(
            "pledges_email_sends_failed",
            "Emails that gave up (SMTP refused them for good, or every retry failed).",
            value=failed_sends,
        ),
        _by_status(
            "pledges_pledges",
            "Pledges by status: all were created; active, past_due, paused and canceled ones "
            "were confirmed; failed ones were not.",
            backlog.pledges_by_status,
        ),
    ]


class DatabaseCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        with session_scope() as session:
            backlog = read_backlog(session)
        return backlog_metrics(backlog)


def render_metrics() -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(STRIPE_LATENCY)
    return generate_latest(registry)
