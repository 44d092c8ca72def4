"""The webhook notifier against real HTTP receivers on ephemeral ports: bodies, retries with backoff, a receiver
that is down, the bound on the queue, and settings that name a bad entry."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobprov.embedded.tansu import free_port
from jobprov.errors import ConfigError
from jobprov.query.notify import Notifier, Webhook, parse_webhook, summary
from jobprov.settings import load_alert_settings

ALERT: dict[str, Any] = {
    "alert_id": "0123456789abcdef",
    "metric": "AM1",
    "bucket": "b1",
    "label": {"dataset": "hsc", "band": "r", "config.hash": ""},
    "unit": "mas",
    "direction": "regression",
    "before": 10.0,
    "size": 1.5,
    "relative_size": 0.15,
    "last_good_job": "nightly-11",
    "first_bad_job": "nightly-12",
    "changes": ["software.numpy: 1.26.4 → 2.0.1"],
    "state": "untriaged",
}


class Receiver:
    """An HTTP server on 127.0.0.1 and a free port that records each POST (with its arrival time) and answers
    ``fail_first`` of them with 503."""

    def __init__(self, fail_first: int = 0, status: int = 503) -> None:
        self.bodies: list[Any] = []
        self.times: list[float] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.attempts += 1
                receiver.times.append(time.monotonic())
                if receiver.attempts <= fail_first:
                    self.send_response(status)
                    self.end_headers()
                    return
                receiver.bodies.append((self.headers.get("Content-Type"), json.loads(data)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def test_generic_and_slack_bodies_reach_their_receivers(receivers: list[Receiver]) -> None:
    generic, slack = Receiver(), Receiver()
    receivers += [generic, slack]
    notifier = Notifier([Webhook(generic.url), parse_webhook(f"slack={slack.url}", "test")])
    notifier.notify(ALERT)
    assert notifier.idle(10)
    notifier.close()
    assert generic.bodies == [("application/json", {"alert": ALERT})]
    ((kind, body),) = slack.bodies
    assert kind == "application/json" and list(body) == ["text"]
    assert body["text"] == summary(ALERT)
    assert "Regression in AM1 [band=r, dataset=hsc]: 10 → 11.5 mas (+15.0%) from job nightly-12" in body["text"]
    assert "software.numpy: 1.26.4 → 2.0.1" in body["text"] and "0123456789abcdef" in body["text"]
    assert (notifier.delivered, notifier.failed, notifier.dropped) == (2, 0, 0)


def test_a_receiver_failing_twice_gets_the_alert_on_the_third_try_after_backing_off(
    receivers: list[Receiver],
) -> None:
    flaky = Receiver(fail_first=2)
    receivers.append(flaky)
    notifier = Notifier([Webhook(flaky.url)], attempts=4, backoff_s=0.2)
    started = time.monotonic()
    notifier.notify(ALERT)
    assert time.monotonic() - started < 0.1, "notify never waits for the receiver"
    assert notifier.idle(10)
    notifier.close()
    assert flaky.attempts == 3 and flaky.bodies == [("application/json", {"alert": ALERT})]
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38, f"backoff 0.2s then 0.4s, got {gaps}"
    assert (notifier.delivered, notifier.failed) == (1, 0)


def test_a_receiver_that_is_down_costs_the_others_nothing_and_is_given_up_on(
    receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    up = Receiver()
    receivers.append(up)
    down = Webhook(f"http://127.0.0.1:{free_port()}/hooks/secret-path")  # nothing listens there
    notifier = Notifier([down, Webhook(up.url)], attempts=3, backoff_s=0.05, timeout_s=1.0)
    with caplog.at_level("INFO", logger="jobprov.notify"):
        notifier.notify(ALERT)
        assert notifier.idle(10)
    notifier.close()
    assert len(up.bodies) == 1
    assert (notifier.delivered, notifier.failed) == (1, 1)
    assert "failed after 3 attempts" in caplog.text
    assert "secret-path" not in caplog.text, "logs name the receiver's origin, never its path"


def test_a_refusal_is_not_retried_and_the_queue_is_bounded(receivers: list[Receiver]) -> None:
    refusing = Receiver(fail_first=100, status=400)
    receivers.append(refusing)
    notifier = Notifier([Webhook(refusing.url)], attempts=4, backoff_s=0.05)
    notifier.notify(ALERT)
    assert notifier.idle(10)
    assert refusing.attempts == 1 and notifier.failed == 1
    notifier.close()

    slow = Notifier([Webhook(refusing.url)], max_queue=2, backoff_s=60)
    slow.close()  # nothing delivers now: whatever is queued stays queued
    for _ in range(5):
        slow.notify(ALERT)
    assert slow.dropped == 3, "past the bound new deliveries are dropped, never blocking"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("slak=https://hooks.example/x", "alerts.webhooks[1]: unknown template 'slak': expected generic or slack"),
        ("ftp://hooks.example/x", "alerts.webhooks[1]: expected http(s)://host/path"),
        ("slack=hooks.example/x", "alerts.webhooks[1]: expected http(s)://host/path"),
    ],
)
def test_bad_webhook_settings_name_the_entry(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_alert_settings(env={"JOBPROV_ALERTS_WEBHOOKS": f"https://ok.example/a,{entry}"})
    with pytest.raises(ConfigError, match=r"alerts\.webhook_attempts: must be >= 1"):
        load_alert_settings({"webhook_attempts": 0}, env={})
    good = load_alert_settings(env={"JOBPROV_ALERTS_WEBHOOKS": "https://a.example/x?k=v,slack=https://b.example/y"})
    assert [parse_webhook(e, "t").template for e in good.webhooks] == ["generic", "slack"]
    assert "a.example" not in repr(good), "webhook URLs are never printed"
