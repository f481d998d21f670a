"""The Kavenegar client and transport, against a real HTTP server speaking its API."""

from __future__ import annotations

import copy
import logging
import pickle
import socket
import traceback
from collections.abc import Callable, Iterator

import pytest
from requests.adapters import HTTPAdapter

from dispatcher.errors import PermanentDeliveryError, TransientDeliveryError
from dispatcher.runtime import build_sms_transport
from dispatcher.settings import Settings
from dispatcher.sms.kavenegar import (
    KavenegarAccountError,
    KavenegarClient,
    KavenegarError,
    KavenegarNetworkError,
    KavenegarReceptorError,
    KavenegarRejectedError,
    KavenegarTransientError,
    KavenegarTransport,
    receptor_for,
)
from dispatcher.sms.outbox import SmsOutbox
from dispatcher.sms.transport import SmsResult
from tests.servers.kavenegar_server import KavenegarServerHandle

SECRET = "K7f3a9cSECRETapikey0123456789abcdef"
SENDER = "10004346"


@pytest.fixture
def server(kavenegar_server_factory: Callable[..., KavenegarServerHandle]) -> KavenegarServerHandle:
    """A server of our own whose API key is easy to spot in any output."""
    return kavenegar_server_factory(api_key=SECRET)


@pytest.fixture
def client(server: KavenegarServerHandle) -> Iterator[KavenegarClient]:
    c = KavenegarClient(SECRET, base_url=server.base_url, timeout=2)
    yield c
    c.close()


@pytest.fixture
def transport(client: KavenegarClient) -> KavenegarTransport:
    return KavenegarTransport(client, sender=SENDER)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_send_passes_localid_and_returns_messageid_cost_and_status(
    transport: KavenegarTransport, server: KavenegarServerHandle
) -> None:
    result = transport.send(
        receptor="+989121234567", message="حراج یلدا\nلغو11", localid=42, campaign="yalda"
    )
    [sent] = server.sent()
    assert result == SmsResult(messageid=sent["messageid"], cost=1, status=1)
    assert sent["receptor"] == "09121234567"  # Kavenegar's national form
    assert (sent["sender"], sent["localid"], sent["message"]) == (SENDER, "42", "حراج یلدا\nلغو11")
    assert server.requests()[-1]["method"] == "POST"


def test_a_repeated_localid_is_dropped_by_kavenegar(
    transport: KavenegarTransport, server: KavenegarServerHandle
) -> None:
    first = transport.send(receptor="+989121234567", message="x", localid=7, campaign="c")
    again = transport.send(receptor="+989121234567", message="x", localid=7, campaign="c")
    assert again.messageid == first.messageid
    assert len(server.sent()) == 1


def test_status_by_localid_knows_only_what_was_accepted(transport: KavenegarTransport) -> None:
    assert transport.status_by_localid(99) is None
    sent = transport.send(receptor="+989121234567", message="x", localid=99, campaign="c")
    found = transport.status_by_localid(99)
    assert found is not None and found.messageid == sent.messageid and found.status == 1


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        (409, KavenegarTransientError, True),
        (451, KavenegarTransientError, True),
        (418, KavenegarAccountError, False),
        (401, KavenegarAccountError, False),
        (411, KavenegarReceptorError, False),
        (402, KavenegarRejectedError, False),
    ],
)
def test_an_error_answer_carries_kavenegars_code_and_says_what_to_do(
    transport: KavenegarTransport,
    server: KavenegarServerHandle,
    code: int,
    kind: type[KavenegarError],
    transient: bool,
) -> None:
    server.fail_next(code)
    with pytest.raises(kind) as caught:
        transport.send(receptor="+989121234567", message="x", localid=1, campaign="c")
    error = caught.value
    assert error.code == code and error.method == "sms/send"
    assert str(code) in str(error) and error.message  # Kavenegar's own message
    assert isinstance(error, TransientDeliveryError) is transient
    assert isinstance(error, PermanentDeliveryError) is (code in (411, 402))


def test_an_invalid_receptor_is_411(
    transport: KavenegarTransport, server: KavenegarServerHandle
) -> None:
    server.invalid_receptor("09120000000")
    with pytest.raises(KavenegarReceptorError):
        transport.send(receptor="+989120000000", message="x", localid=1, campaign="c")


def test_no_credit_is_418(transport: KavenegarTransport, server: KavenegarServerHandle) -> None:
    server.set_credit(0)
    with pytest.raises(KavenegarAccountError) as caught:
        transport.send(receptor="+989121234567", message="x", localid=1, campaign="c")
    assert caught.value.code == 418 and "credit" in caught.value.problem


def test_a_wrong_key_is_403_from_a_non_2xx_answer(server: KavenegarServerHandle) -> None:
    client = KavenegarClient("not-the-key", base_url=server.base_url, timeout=2)
    with pytest.raises(KavenegarAccountError) as caught:
        client.account_info()
    assert caught.value.code == 403
    client.close()


def test_a_timeout_is_a_network_error_and_kavenegar_may_have_the_message(
    server: KavenegarServerHandle,
) -> None:
    client = KavenegarClient(SECRET, base_url=server.base_url, timeout=1.0)
    transport = KavenegarTransport(client, sender=SENDER)
    server.accept_then_hang(seconds=3.0)
    with pytest.raises(KavenegarNetworkError) as caught:
        transport.send(receptor="+989121234567", message="x", localid=5, campaign="c")
    assert isinstance(caught.value, TransientDeliveryError) and caught.value.code is None
    assert "1s" in str(caught.value)
    assert len(server.sent()) == 1  # accepted before the answer was lost
    assert transport.status_by_localid(5) is not None
    client.close()


def test_one_session_and_one_connection_are_reused(
    client: KavenegarClient, server: KavenegarServerHandle
) -> None:
    for _ in range(5):
        client.account_info()
    adapter = client.session.get_adapter(server.base_url)
    assert isinstance(adapter, HTTPAdapter)
    pools = adapter.poolmanager.pools
    [pool] = [pools[key] for key in pools.keys()]  # noqa: SIM118 (it has no __iter__)
    assert pool.num_connections == 1 and pool.num_requests == 5


def test_array_parameters_are_json_for_sendarray_and_comma_joined_elsewhere(
    client: KavenegarClient, server: KavenegarServerHandle
) -> None:
    entries = client.sms_sendarray(
        {
            "receptor": ["09121234567", "09121234568"],
            "sender": [SENDER, SENDER],
            "message": ["سلام، مریم", "سلام، علی"],
            "localmessageids": [11, 12],
        }
    )
    assert [e["receptor"] for e in entries] == ["09121234567", "09121234568"]
    params = server.requests()[-1]["params"]
    assert params["message"] == '["سلام، مریم", "سلام، علی"]'
    assert params["localmessageids"] == '["11", "12"]'

    statuses = client.sms_status({"messageid": [e["messageid"] for e in entries]})
    assert len(statuses) == 2
    assert server.requests()[-1]["params"]["messageid"] == ",".join(
        str(e["messageid"]) for e in entries
    )


def test_statuses_and_receive(transport: KavenegarTransport, server: KavenegarServerHandle) -> None:
    a = transport.send(receptor="+989121234567", message="x", localid=1, campaign="c")
    b = transport.send(receptor="+989121234568", message="x", localid=2, campaign="c")
    assert a.messageid is not None and b.messageid is not None
    server.set_status(a.messageid, 10)
    server.set_status(b.messageid, 14)
    assert transport.statuses([a.messageid, b.messageid, 123]) == {
        a.messageid: 10,
        b.messageid: 14,
    }

    server.add_inbox("09121234567", "لغو", line=SENDER)
    server.add_inbox("09121234568", "not for us", line="30001111")
    [reply] = transport.receive()
    assert (reply.sender, reply.message) == ("09121234567", "لغو")
    assert transport.receive() == []  # read once


def test_the_key_never_shows_in_reprs_errors_or_logs(
    server: KavenegarServerHandle,
    caplog: pytest.LogCaptureFixture,
    make_settings: Callable[..., Settings],
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    up = KavenegarClient(SECRET, base_url=server.base_url, timeout=1.0)
    down = KavenegarClient(SECRET, base_url=f"http://127.0.0.1:{closed_port()}", timeout=1.0)
    server.fail_next(418)
    server.accept_then_hang(seconds=2.5)
    for call in (
        lambda: up.sms_send({"receptor": "09121234567", "message": "x"}),  # 418
        lambda: up.sms_send({"receptor": "09121234567", "message": "x"}),  # timeout
        lambda: down.sms_send({"receptor": "09121234567", "message": "x"}),  # refused
    ):
        try:
            call()
        except KavenegarError as exc:
            errors.append(exc)
            logging.getLogger("test").exception("call failed")
    up.sms_send({"receptor": "09121234567", "message": "x"})  # and a success

    assert [type(e) for e in errors] == [
        KavenegarAccountError,
        KavenegarNetworkError,
        KavenegarNetworkError,
    ]
    assert "ConnectionError" in str(errors[2])
    settings = make_settings(
        kavenegar_api_key=SECRET, kavenegar_sender=SENDER, kavenegar_base_url=server.base_url
    )
    transport = build_sms_transport(settings)
    shown = [
        repr(up),
        str(up),
        repr(transport),
        repr(settings),
        str(settings.model_dump()),
        caplog.text,
        *(r.getMessage() for r in caplog.records),
        *(str(e) for e in errors),
        *(repr(e) for e in errors),
        *("".join(traceback.format_exception(e)) for e in errors),
    ]
    assert caplog.records  # urllib3 did log the requests at DEBUG
    for text in shown:
        assert SECRET not in text
    assert any("/v1/***/sms/send.json" in r.getMessage() for r in caplog.records)
    for c in (up, down, transport):
        c.close()


def test_receptors_are_sent_in_national_form() -> None:
    assert receptor_for("+989121234567") == "09121234567"
    assert receptor_for("+447700900123") == "00447700900123"
    assert receptor_for("09121234567") == "09121234567"


def test_without_a_key_sms_go_to_the_outbox(make_settings: Callable[..., Settings]) -> None:
    assert isinstance(build_sms_transport(make_settings()), SmsOutbox)


@pytest.mark.parametrize("code", [409, 451, 418, 411, 402])
def test_a_copy_of_an_error_is_the_same_error_and_another_instance(code: int) -> None:
    """The group send raises a copy of one call's error in each thread it concerned."""
    error = KavenegarError.from_code(code, "پیام", method="sms/sendarray")
    error.repeated = True
    again = copy.copy(error)
    assert again is not error and type(again) is type(error)
    assert (again.code, again.message, again.method, str(again)) == (
        code,
        "پیام",
        "sms/sendarray",
        str(error),
    )
    assert again.repeated and pickle.loads(pickle.dumps(error)).code == code
