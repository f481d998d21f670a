"""The group send of Kavenegar SMS, against the real Kavenegar-speaking server in its own
process: many threads at once, one call, each thread its own answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dispatcher.delivery.throttle import LocalAdaptiveRateLimiter
from dispatcher.errors import ConfigurationError, DeliveryError
from dispatcher.runtime import build_sms_transport
from dispatcher.settings import Settings
from dispatcher.sms.batch import KavenegarBatcher
from dispatcher.sms.kavenegar import (
    KavenegarClient,
    KavenegarNetworkError,
    KavenegarReceptorError,
    KavenegarTransientError,
    KavenegarTransport,
    receptor_for,
)
from dispatcher.sms.transport import SmsResult
from tests.eventually import eventually
from tests.servers.kavenegar_server import KavenegarServerHandle

SECRET = "B4tchSECRETapikey0123456789abcdef"
SENDER = "10004346"


class Gate:
    """The pace of a batcher: counts the rate slots taken, and holds the sender thread
    at its first slot until the test has every thread waiting."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.slots: list[str] = []  # the thread that took each slot

    def __call__(self) -> None:
        self.slots.append(threading.current_thread().name)
        assert self.opened.wait(10), "the gate was never opened"

    @property
    def calls_slots(self) -> int:
        """Slots the sender thread took (one per call it made)."""
        return self.slots.count("dispatcher-sms")


@pytest.fixture
def server(kavenegar_server_factory: Callable[..., KavenegarServerHandle]) -> KavenegarServerHandle:
    return kavenegar_server_factory(api_key=SECRET)


@pytest.fixture
def make_batcher(
    server: KavenegarServerHandle,
) -> Iterator[Callable[..., tuple[KavenegarBatcher, Gate]]]:
    made: list[KavenegarBatcher] = []

    def make(max_batch: int = 100, timeout: float = 2.0) -> tuple[KavenegarBatcher, Gate]:
        client = KavenegarClient(SECRET, base_url=server.base_url, timeout=timeout)
        gate = Gate()
        batcher = KavenegarBatcher(
            KavenegarTransport(client, sender=SENDER), pace=gate, max_batch=max_batch
        )
        made.append(batcher)
        return batcher, gate

    yield make
    for batcher in made:
        batcher.close()


def mobile(i: int) -> str:
    return f"+9891212345{i:02d}"


def send_together(
    batcher: KavenegarBatcher,
    gate: Gate,
    localids: list[int],
    *,
    campaign: Callable[[int], str] = lambda localid: "yalda",
    receptor: Callable[[int], str] = mobile,
) -> dict[int, SmsResult | BaseException]:
    """Each localid sent from a thread of its own, all waiting at once before the
    sender thread takes any; what each thread got (a result or what it raised)."""
    got: dict[int, SmsResult | BaseException] = {}

    def one(localid: int) -> None:
        try:
            got[localid] = batcher.send(
                receptor=receptor(localid),
                message=f"حراج یلدا {localid}",
                localid=localid,
                campaign=campaign(localid),
            )
        except BaseException as exc:
            got[localid] = exc

    threads = [threading.Thread(target=one, args=(localid,)) for localid in localids]
    for thread in threads:
        thread.start()
    eventually(lambda: batcher.waiting() == len(localids), what="every thread waiting")
    gate.opened.set()
    for thread in threads:
        thread.join(15)
    assert len(got) == len(localids)
    return got


def calls(server: KavenegarServerHandle) -> list[tuple[str, dict[str, Any]]]:
    """The API calls made: (method, params), in order."""
    return [
        (r["path"].rsplit("/", 1)[1].removesuffix(".json"), r["params"]) for r in server.requests()
    ]


def test_threads_waiting_together_go_in_one_sendarray_call_each_with_its_own_messageid(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher()
    localids = list(range(101, 111))
    got = send_together(batcher, gate, localids)

    [(method, params)] = calls(server)
    assert method == "sendarray"
    carried = json.loads(params["localmessageids"])
    assert sorted(carried) == [str(i) for i in localids]
    receptors = json.loads(params["receptor"])
    assert receptors == [receptor_for(mobile(int(i))) for i in carried]  # by position
    assert json.loads(params["message"]) == [f"حراج یلدا {i}" for i in carried]
    by_localid = {int(m["localid"]): m for m in server.sent()}
    for localid, result in got.items():
        assert isinstance(result, SmsResult)
        assert result.messageid == by_localid[localid]["messageid"]
        assert (result.cost, result.status) == (1, 1)
    assert len({r.messageid for r in got.values() if isinstance(r, SmsResult)}) == 10
    assert gate.slots == ["dispatcher-sms"]  # one rate slot, for the one call
    assert (batcher.calls, batcher.messages) == (1, 10)


def test_a_lone_message_goes_through_sms_send_as_without_a_batch(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher()
    gate.opened.set()
    result = batcher.send(receptor="+989121234567", message="سلام", localid=42, campaign="c")

    [(method, params)] = calls(server)
    assert method == "send"
    assert (params["receptor"], params["localid"], params["sender"]) == (
        "09121234567",
        "42",
        SENDER,
    )
    [sent] = server.sent()
    assert result == SmsResult(messageid=sent["messageid"], cost=1, status=1)
    assert len(gate.slots) == 1


def test_a_411_in_a_batch_sends_each_alone_and_only_the_invalid_one_fails(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher()
    server.invalid_receptor("09121234503")
    got = send_together(batcher, gate, [1, 2, 3, 4, 5])

    assert isinstance(got[3], KavenegarReceptorError) and got[3].code == 411
    assert all(isinstance(got[i], SmsResult) for i in (1, 2, 4, 5))
    methods = [method for method, _ in calls(server)]
    assert methods == ["sendarray"] + ["send"] * 5  # refused as a whole, then one by one
    sent = sorted(int(m["localid"]) for m in server.sent())
    assert sent == [1, 2, 4, 5]  # each once
    by_localid = {int(m["localid"]): m["messageid"] for m in server.sent()}
    for i in (1, 2, 4, 5):
        result = got[i]
        assert isinstance(result, SmsResult) and result.messageid == by_localid[i]
    assert gate.calls_slots == 1 and len(gate.slots) == 6  # each alone took its own slot


def test_a_transient_error_of_the_call_is_raised_in_every_thread_as_its_own_instance(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher()
    server.fail_next(409, methods=["sendarray"])
    campaigns = {1: "a", 2: "a", 3: "b", 4: "a", 5: "b"}
    got = send_together(batcher, gate, list(campaigns), campaign=campaigns.__getitem__)

    errors = list(got.values())
    assert all(isinstance(e, KavenegarTransientError) and e.code == 409 for e in errors)
    assert len({id(e) for e in errors}) == 5  # never one instance raised in two threads
    assert all("409" in str(e) and e.__traceback__ is not None for e in errors)
    # The error storm counts the call once per campaign it carried.
    counted = sorted(campaigns[i] for i, e in got.items() if not getattr(e, "repeated", True))
    assert counted == ["a", "b"]
    assert server.sent() == [] and [m for m, _ in calls(server)] == ["sendarray"]


def test_a_timeout_is_transient_in_each_thread_and_the_retry_finds_each_by_localid(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher(timeout=1.0)
    server.accept_then_hang(seconds=3.0)  # accepted, then the answer is lost
    got = send_together(batcher, gate, [11, 12, 13, 14])

    errors = list(got.values())
    assert all(isinstance(e, KavenegarNetworkError) for e in errors)
    assert len({id(e) for e in errors}) == 4
    accepted = {int(m["localid"]): m["messageid"] for m in server.sent()}
    assert sorted(accepted) == [11, 12, 13, 14]
    for localid, messageid in accepted.items():  # what a retry asks first
        found = batcher.status_by_localid(localid)
        assert found is not None and found.messageid == messageid
    assert len(server.sent()) == 4  # sent exactly once


def test_a_message_without_an_entry_in_the_answer_gets_a_transient_error(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher()
    server.answer_short(entries=1)
    got = send_together(batcher, gate, [21, 22, 23])

    [(_, params)] = calls(server)
    first, *others = (int(i) for i in json.loads(params["localmessageids"]))
    result = got[first]
    assert isinstance(result, SmsResult) and result.messageid is not None
    for localid in others:
        error = got[localid]
        assert isinstance(error, KavenegarTransientError) and "without an entry" in str(error)
        found = batcher.status_by_localid(localid)  # its retry finds it: not sent again
        assert found is not None
    assert len(server.sent()) == 3


def test_kavenegar_batch_caps_the_messages_of_a_call(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher(max_batch=3)
    got = send_together(batcher, gate, list(range(31, 38)))

    assert all(isinstance(r, SmsResult) for r in got.values())
    sizes = [len(json.loads(p["receptor"])) if m == "sendarray" else 1 for m, p in calls(server)]
    assert sizes == [3, 3, 1]
    assert [m for m, _ in calls(server)] == ["sendarray", "sendarray", "send"]
    assert gate.calls_slots == 3  # a slot per call, not per message
    assert len(server.sent()) == 7


def test_the_shared_rate_counts_calls_not_messages(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    """With a real limiter at 2 calls/s, 20 messages waiting together go in one call,
    at once: a slot per message would take ten seconds."""
    limiter = LocalAdaptiveRateLimiter(ceiling=2.0)
    batcher, gate = make_batcher()
    gate.opened.set()
    batcher.pace = limiter.acquire
    limiter.acquire()  # the slot now: the next is half a second away
    got: list[SmsResult] = []
    threads = [
        threading.Thread(
            target=lambda i=i: got.append(
                batcher.send(receptor=mobile(i), message="x", localid=i, campaign="c")
            )
        )
        for i in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(got) == 20
    assert batcher.calls <= 3  # the first alone, perhaps; the rest gathered meanwhile
    assert len(server.sent()) == 20


def test_close_sends_what_waits_and_then_refuses_as_a_transient_error(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, gate = make_batcher()
    gate.opened.set()
    batcher.send(receptor=mobile(1), message="x", localid=1, campaign="c")
    batcher.close()
    with pytest.raises(KavenegarTransientError):
        batcher.send(receptor=mobile(2), message="x", localid=2, campaign="c")
    assert len(server.sent()) == 1


def test_an_error_of_the_pace_fails_the_calls_messages_as_transient(
    make_batcher: Callable[..., tuple[KavenegarBatcher, Gate]], server: KavenegarServerHandle
) -> None:
    batcher, _ = make_batcher()

    def broken() -> None:
        raise RuntimeError("boom with a secret inside")

    batcher.pace = broken
    with pytest.raises(DeliveryError) as caught:
        batcher.send(receptor=mobile(1), message="x", localid=1, campaign="c")
    assert "RuntimeError" in str(caught.value) and "secret" not in str(caught.value)
    assert server.requests() == []


def test_the_runtime_batches_kavenegar_with_kavenegar_batch_and_no_secret_in_its_repr(
    make_settings: Callable[..., Settings], server: KavenegarServerHandle
) -> None:
    settings = make_settings(
        kavenegar_api_key=SECRET,
        kavenegar_sender=SENDER,
        kavenegar_base_url=server.base_url,
        kavenegar_batch=7,
    )
    batcher = build_sms_transport(settings, pace=lambda: None)
    assert isinstance(batcher, KavenegarBatcher) and batcher.max_batch == 7
    assert batcher.paces_calls
    assert SECRET not in repr(batcher) and SENDER in repr(batcher)
    batcher.close()
    assert not build_sms_transport(make_settings(), pace=lambda: None).paces_calls  # outbox
    with pytest.raises(ConfigurationError, match="KAVENEGAR_BATCH"):
        make_settings(kavenegar_api_key=SECRET, kavenegar_sender=SENDER, kavenegar_batch=201)
