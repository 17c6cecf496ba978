"""The lease metrics from a real lease on both engines, read back through the real `Metrics` in
the Prometheus text format: leader, epoch, lease age by the monotonic clock, and the transitions
a process counts across the daemons it runs in turn."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.daemon.leadership import Transitions, lease_reading
from scheduler.errors import LeaseLostError
from scheduler.feed.lease_reading import LeaseReading
from scheduler.feed.metrics import Metrics
from scheduler.store.engine import open_store
from scheduler.timing.clock import utcnow
from tests.daemon.test_lease import TTL, Ticks, lease_of, write

LEASE_METRICS = (
    "zenml_scheduler_leader",
    "zenml_scheduler_lease_epoch",
    "zenml_scheduler_leader_transitions_total",
    "zenml_scheduler_lease_age_seconds",
)


def scrape(metrics: Metrics) -> dict[str, float]:
    body, _ = metrics.render()
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name in LEASE_METRICS
    }
    assert f"# TYPE {LEASE_METRICS[2]} counter" in body.decode()
    return samples


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (LeaseReading(True, 4, 3, 1.5), {"leader": 1.0, "epoch": 4.0, "transitions": 3.0, "age": 1.5}),
        (LeaseReading(False, 4, 4, 12.0), {"leader": 0.0, "epoch": 4.0, "transitions": 4.0, "age": 12.0}),
        # before the lease was ever taken: no epoch and no age to show, rather than a made-up 0
        (LeaseReading(False, None, 0, None), {"leader": 0.0, "transitions": 0.0}),
    ],
)
def test_a_reading_becomes_the_four_lease_metrics(reading: LeaseReading, expected: dict[str, float]) -> None:
    metrics = Metrics(lambda: (0, 0), lease=lambda: reading, process_metrics=False)
    names = dict(zip(("leader", "epoch", "transitions", "age"), LEASE_METRICS, strict=True))
    assert scrape(metrics) == {names[key]: value for key, value in expected.items()}


def test_without_a_lease_there_are_no_lease_metrics() -> None:
    body, _ = Metrics(lambda: (0, 0), process_metrics=False).render()
    assert b"zenml_scheduler_" not in body


def test_the_metrics_follow_a_real_lease_through_renewals_lapses_and_a_takeover(db_url: str) -> None:
    store, other = open_store(db_url), open_store(db_url)
    ticks, alive, transitions = Ticks(), {1001, 1002}, Transitions()
    lease = lease_of(store, 1001, alive, ticks)
    metrics = Metrics(lambda: (0, 0), lease=lambda: lease_reading(lease, transitions), process_metrics=False)
    assert scrape(metrics) == {LEASE_METRICS[0]: 0.0, LEASE_METRICS[2]: 0.0}  # not taken yet

    ticks.value = 100.0
    lease.acquire(utcnow())
    transitions.elected()
    ticks.value = 102.5
    leader, epoch, count, age = LEASE_METRICS
    assert scrape(metrics) == {leader: 1.0, epoch: 1.0, count: 1.0, age: 2.5}

    ticks.value = 100.0 + TTL.total_seconds() * 0.7  # unrenewed for 2/3 of the TTL: it launches nothing
    assert scrape(metrics)[leader] == 0.0
    lease.heartbeat(utcnow())  # a renewal commits: it leads again, and the age starts over
    assert scrape(metrics) == {leader: 1.0, epoch: 1.0, count: 1.0, age: 0.0}

    alive.discard(1001)
    lease_of(other, 1002, alive).acquire(utcnow())  # another daemon takes over, at epoch 2
    with pytest.raises(LeaseLostError):
        write(store)
    transitions.demoted()
    ticks.value += 1.0
    assert scrape(metrics) == {leader: 0.0, epoch: 1.0, count: 2.0, age: 1.0}
