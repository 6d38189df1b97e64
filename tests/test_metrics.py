"""The /metrics endpoint over real HTTP: what Prometheus scrapes is what the counters say."""

from __future__ import annotations

import logging
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maild.metrics import Metrics, MetricsServer, QueueDepths, parse_listen

DEPTHS = QueueDepths(
    spool=4,
    spool_oldest_seconds=12.5,
    outbox=2,
    outbox_oldest_seconds=300.0,
    outbox_failed=1,
)


def scrape(server):
    host, port = server.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def serve():
    started = []

    def start(metrics):
        server = MetricsServer(metrics, "127.0.0.1:0")
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_counters_and_histogram_reach_the_scrape(serve):
    metrics = Metrics(role="worker", version="1.2.3")
    metrics.messages_received.labels(source="smtp").inc(3)
    metrics.decisions.labels(action="new_ticket", reason="no_thread_match").inc()
    metrics.pipeline_seconds.observe(0.02)
    metrics.deliveries.labels(result="sent").inc(2)
    metrics.sla_breaches.labels(kind="first_response").inc()
    metrics.imap_reconnects.labels(mailbox="INBOX").inc()

    samples = scrape(serve(metrics))

    assert samples["maild_messages_received_total", (("source", "smtp"),)] == 3
    key = ("action", "new_ticket"), ("reason", "no_thread_match")
    assert samples["maild_decisions_total", key] == 1
    assert samples["maild_pipeline_seconds_count", ()] == 1
    assert samples["maild_pipeline_seconds_sum", ()] == pytest.approx(0.02)
    assert samples["maild_pipeline_seconds_bucket", (("le", "0.01"),)] == 0
    assert samples["maild_pipeline_seconds_bucket", (("le", "0.025"),)] == 1
    assert samples["maild_pipeline_seconds_bucket", (("le", "+Inf"),)] == 1
    assert samples["maild_deliveries_total", (("result", "sent"),)] == 2
    assert samples["maild_sla_breaches_total", (("kind", "first_response"),)] == 1
    assert samples["maild_imap_reconnects_total", (("mailbox", "INBOX"),)] == 1
    assert samples["maild_build_info", (("role", "worker"), ("version", "1.2.3"))] == 1
    # Without a depths callback the queue gauges are absent, not zero.
    names = {name for name, _ in samples}
    assert "maild_spool_depth" not in names
    assert "maild_queue_depths_up" not in names


def test_histogram_buckets_are_the_documented_ones():
    metrics = Metrics(role="worker", version="1")
    metrics.pipeline_seconds.observe(1)
    families = text_string_to_metric_families(metrics.render().decode())
    (family,) = [f for f in families if f.name == "maild_pipeline_seconds"]
    bounds = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
    expected = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0"]
    assert bounds == [*expected, "10.0", "30.0", "+Inf"]


def test_queue_depths_are_read_at_scrape_time(serve):
    calls = []

    def depths():
        calls.append(1)
        return DEPTHS

    metrics = Metrics(role="worker", version="1", depths=depths)
    assert calls == []  # building the metrics does not touch the database
    server = serve(metrics)

    samples = scrape(server)

    assert samples["maild_queue_depths_up", ()] == 1
    assert samples["maild_spool_depth", ()] == 4
    assert samples["maild_spool_oldest_seconds", ()] == 12.5
    assert samples["maild_outbox_depth", ()] == 2
    assert samples["maild_outbox_oldest_seconds", ()] == 300.0
    assert samples["maild_outbox_failed", ()] == 1
    assert len(calls) == 1
    scrape(server)
    assert len(calls) == 2


def test_a_failing_depths_source_does_not_fail_the_scrape(serve, caplog):
    state = {"down": True}

    def depths():
        if state["down"]:
            raise ConnectionError("database at db.internal:5432 refused the connection")
        return DEPTHS

    metrics = Metrics(role="worker", version="1", depths=depths)
    metrics.messages_received.labels(source="imap").inc()
    server = serve(metrics)

    with caplog.at_level(logging.WARNING, logger="maild.metrics"):
        samples = scrape(server)

    assert samples["maild_queue_depths_up", ()] == 0
    assert "maild_spool_depth" not in {name for name, _ in samples}
    assert samples["maild_messages_received_total", (("source", "imap"),)] == 1
    warnings = [r for r in caplog.records if r.name == "maild.metrics"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "refused the connection" in warnings[0].getMessage()

    state["down"] = False
    samples = scrape(server)
    assert samples["maild_queue_depths_up", ()] == 1
    assert samples["maild_spool_depth", ()] == 4


def test_a_depths_source_returning_garbage_does_not_fail_the_scrape(serve):
    metrics = Metrics(role="worker", version="1", depths=lambda: None)
    assert scrape(serve(metrics))["maild_queue_depths_up", ()] == 0


def test_only_metrics_path_is_served(serve):
    server = serve(Metrics(role="worker", version="1"))
    host, port = server.address
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"http://{host}:{port}/", timeout=5)
    assert error.value.code == 404
    error.value.close()


def test_fresh_instances_do_not_share_counters():
    first = Metrics(role="worker", version="1")
    first.messages_received.labels(source="smtp").inc(5)
    second = Metrics(role="worker", version="1")
    assert b'maild_messages_received_total{source="smtp"}' not in second.render()
    assert b'maild_messages_received_total{source="smtp"} 5.0' in first.render()


def test_stop_is_idempotent_and_closes_the_port():
    server = MetricsServer(Metrics(role="worker", version="1"), "127.0.0.1:0")
    server.stop()  # before start: nothing to do
    server.start()
    host, port = server.address
    assert host == "127.0.0.1"
    assert port > 0
    with socket.create_connection((host, port), timeout=5):
        pass

    server.stop()
    server.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5)


def test_ipv6_listen():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    server = MetricsServer(Metrics(role="worker", version="1"), "[::1]:0")
    try:
        server.start()
    except OSError as error:
        pytest.skip(f"cannot bind ::1 here: {error}")
    try:
        host, port = server.address
        assert host == "::1"
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as response:
            assert b"maild_build_info" in response.read()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "listen",
    [
        "",
        "9464",
        ":9464",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:http",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        "127.0.0.1:65536",
        "127.0.0.1:٩٤٦٤",
        "::1:9464",
        "[::1]9464",
        "[::1]",
        "[127.0.0.1]:9464",
        "[not-an-ip]:9464",
        "host name:9464",
        "http://127.0.0.1:9464",
    ],
)
def test_bad_listen_raises(listen):
    with pytest.raises(ValueError, match="listen address") as error:
        MetricsServer(Metrics(role="worker", version="1"), listen)
    assert repr(listen) in str(error.value)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),  # noqa: S104 - a listen string, nothing binds
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:65535", ("::", 65535)),
        ("localhost:9464", ("localhost", 9464)),
    ],
)
def test_good_listen_parses(listen, expected):
    host, port, _family = parse_listen(listen)
    assert (host, port) == expected
