"""The webhook domain without a server: signing, the retry schedule, the URL policy, events and bodies."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random

import pytest

from controlplane.config import OPTIONS
from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Failure, Task, TaskStatus
from controlplane.errors import InvalidArgument
from controlplane.webhooks import events, signing
from controlplane.webhooks.records import WebhookRecord
from controlplane.webhooks.retry import RetrySchedule
from controlplane.webhooks.urls import blocked, parse_url


def test_signature_is_hmac_sha256_of_timestamp_dot_body_and_verifies() -> None:
    body = b'{"event":"task.completed"}'
    header = signing.signature_header("whsec_test_secret_123", body, timestamp=1_700_000_000)
    t, v1 = header.split(",")
    assert t == "t=1700000000"
    expected = hmac.new(b"whsec_test_secret_123", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert v1 == f"v1={expected}"
    assert signing.verify("whsec_test_secret_123", body, header, now=1_700_000_010)
    assert not signing.verify("another_secret_12345", body, header, now=1_700_000_010)
    assert not signing.verify("whsec_test_secret_123", body + b" ", header, now=1_700_000_010)
    assert not signing.verify("whsec_test_secret_123", body, header, now=1_700_000_000 + 301)  # replayed late
    assert not signing.verify("whsec_test_secret_123", body, "v1=abc")
    assert signing.generate_secret().startswith("whsec_") and len(signing.generate_secret()) > 40


def test_retry_schedule_grows_is_capped_and_gives_up_after_the_window() -> None:
    defaults = RetrySchedule(
        OPTIONS["webhooks.retry_initial_backoff"].default,
        OPTIONS["webhooks.retry_max_backoff"].default,
        OPTIONS["webhooks.retry_window"].default,
    )
    rng = random.Random(7)
    first = [defaults.delay(1, rng) for _ in range(50)]
    assert max(first) <= 30 and min(first) > 0  # the first retry comes within 30 s by default
    assert defaults.delay(5, rng) > max(first)
    assert defaults.delay(40, rng) <= OPTIONS["webhooks.retry_max_backoff"].default
    short = RetrySchedule(1.0, 4.0, 10.0)
    assert short.next_attempt(created=0.0, now=1.0, failed_attempts=1, rng=rng) <= 2.0
    assert short.next_attempt(created=0.0, now=9.5, failed_attempts=3, rng=rng) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_blocked(address: str) -> None:
    assert blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/x",
        "example.com/hook",
        "http:///nohost",
        "http://user:pw@example.com/",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "https://example.com/" + "a" * 2100,
    ],
)
def test_bad_urls_name_the_field(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_url(url)
    assert info.value.violations[0].field == "webhook.url"


def test_parsed_url_keeps_path_query_and_port() -> None:
    target = parse_url("https://Example.com:8443/a/b?x=1")
    assert (target.host, target.port, target.path, target.tls) == ("example.com", 8443, "/a/b?x=1", True)
    assert target.host_header == "example.com:8443"
    assert parse_url("http://example.com").path == "/"


def test_event_names_match_the_engine_events() -> None:
    assert events.event_name(Event(EventType.TASK_SUBMITTED, to_status="PENDING")) == "task.submitted"
    for status, name in [
        ("RUNNING", "task.started"),
        ("COMPLETED", "task.completed"),
        ("FAILED", "task.failed"),
        ("CANCELLED", "task.cancelled"),
        ("QUEUED", None),
    ]:
        assert events.event_name(Event(EventType.TASK_STATUS_CHANGED, to_status=status)) == name
    assert events.event_name(Event(EventType.SUBTASK_PROGRESS)) is None
    assert events.validate_events(["task.failed", "TASK.COMPLETED", "task.failed"]) == [
        "task.completed",
        "task.failed",
    ]
    assert events.validate_events(["*"]) == []
    with pytest.raises(InvalidArgument) as info:
        events.validate_events(["task.completed", "task.exploded"])
    assert info.value.violations[0].field == "webhook.events" and "task.exploded" in info.value.message


def test_who_receives_what() -> None:
    mine = WebhookRecord(id="w", owner="users/alice", url="http://x", secret="s" * 16, events=["task.failed"])
    assert events.subscribed(mine, "task.failed") and not events.subscribed(mine, "task.completed")
    assert events.may_receive(mine, "users/alice", events.OWN)
    assert not events.may_receive(mine, "users/alice", events.NONE)  # its owner was disabled or deleted
    assert not events.may_receive(mine, "users/bob", events.ALL)  # not made with task:view-all
    wide = WebhookRecord(id="w", owner="users/root", url="http://x", secret="s" * 16, view_all=True)
    assert events.may_receive(wide, "users/bob", events.ALL)
    assert not events.may_receive(wide, "users/bob", events.OWN)  # the owner lost task:view-all since


def test_task_body_is_bounded_and_keeps_its_shape() -> None:
    task = Task(
        id="t1",
        description="d" * 5000,
        owner="users/alice",
        status=TaskStatus.FAILED,
        output="x" * 200_000,
        failure=Failure("ERROR_REASON_TIMED_OUT", "too slow"),
    )
    body = events.task_payload("evt_1", "task.failed", 1_700_000_000, task, "RUNNING", 8192)
    assert len(body.encode()) <= 8192
    data = json.loads(body)
    assert data["id"] == "evt_1" and data["event"] == "task.failed" and data["created"] == 1_700_000_000
    assert data["data"]["task_id"] == "t1" and data["data"]["status"] == "FAILED"
    assert data["data"]["previous_status"] == "RUNNING" and data["data"]["output_truncated"] is True
    assert data["data"]["failure"] == {"reason": "ERROR_REASON_TIMED_OUT", "message": "too slow"}
    assert len(data["data"]["description"]) <= events.MAX_DESCRIPTION
