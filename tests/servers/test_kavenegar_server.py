"""Tests of the fake Kavenegar server itself, driven with httpx."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.kavenegar_server import KavenegarServerHandle

OK = {"status": 200, "message": "تایید شد"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as client:
        yield client


def send(
    http: httpx.Client, server: KavenegarServerHandle, **params: str
) -> tuple[int, dict[str, Any]]:
    params.setdefault("receptor", "09121234567")
    params.setdefault("message", "تخفیف ویژه")
    response = http.post(server.url("sms/send"), data=params)
    return response.status_code, response.json()


def test_send_envelope_and_cost(
    http: httpx.Client, kavenegar_server: KavenegarServerHandle
) -> None:
    credit = kavenegar_server.credit()
    status, body = send(
        http, kavenegar_server, receptor="09121234567, 09121234568", message="ب" * 71, sender="3000"
    )
    assert status == 200
    assert body["return"] == OK
    first, second = body["entries"]
    assert set(first) == {
        "messageid", "message", "status", "statustext", "sender", "receptor", "date", "cost"
    }  # fmt: skip
    assert (first["status"], first["statustext"]) == (1, "در صف ارسال")
    assert (first["receptor"], second["receptor"]) == ("09121234567", "09121234568")
    assert first["sender"] == "3000"
    assert first["cost"] == 2
    assert second["messageid"] == first["messageid"] + 1
    assert isinstance(first["date"], int)

    response = http.get(
        kavenegar_server.url("sms/send"), params={"receptor": "09120000000", "message": "x"}
    )
    assert response.status_code == 200
    assert response.json()["entries"][0]["sender"] == "10004346"

    info = http.get(kavenegar_server.url("account/info")).json()
    assert info["return"] == OK
    assert info["entries"]["remaincredit"] == credit - 5
    assert info["entries"]["type"] == "Master"
    assert [m["receptor"] for m in kavenegar_server.sent()] == [
        "09121234567",
        "09121234568",
        "09120000000",
    ]


def test_wrong_api_key_is_403(http: httpx.Client, kavenegar_server: KavenegarServerHandle) -> None:
    response = http.post(
        f"{kavenegar_server.base_url}/v1/wrong-key/sms/send.json",
        data={"receptor": "09121234567", "message": "x"},
    )
    assert response.status_code == 403
    assert response.json()["return"]["status"] == 403
    assert response.json()["entries"] is None
    assert kavenegar_server.sent() == []
    assert kavenegar_server.requests()[-1]["path"] == "/v1/wrong-key/sms/send.json"


def test_localid_deduplication(http: httpx.Client, kavenegar_server: KavenegarServerHandle) -> None:
    _, first = send(http, kavenegar_server, localid="campaign-7-42")
    credit = kavenegar_server.credit()
    _, again = send(http, kavenegar_server, localid="campaign-7-42")
    assert again["entries"][0]["messageid"] == first["entries"][0]["messageid"]
    assert len(kavenegar_server.sent()) == 1
    assert kavenegar_server.credit() == credit


@pytest.mark.parametrize("code", [409, 451, 401])
def test_fail_next(http: httpx.Client, kavenegar_server: KavenegarServerHandle, code: int) -> None:
    kavenegar_server.fail_next(code, count=2)
    for _ in range(2):
        status, body = send(http, kavenegar_server)
        assert status == code
        assert body["return"]["status"] == code
        assert body["entries"] is None
    assert send(http, kavenegar_server)[0] == 200
    assert len(kavenegar_server.sent()) == 1


def test_accept_then_hang(http: httpx.Client, kavenegar_server: KavenegarServerHandle) -> None:
    kavenegar_server.accept_then_hang(1.0)
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            kavenegar_server.url("sms/send"),
            data={"receptor": "09121234567", "message": "x", "localid": "L-1"},
            timeout=0.2,
        )
    [recorded] = kavenegar_server.sent()
    assert recorded["localid"] == "L-1"
    status, body = send(http, kavenegar_server, message="x", localid="L-1")  # the retry
    assert status == 200
    assert body["entries"][0]["messageid"] == recorded["messageid"]
    assert len(kavenegar_server.sent()) == 1


def test_status_and_statuslocalmessageid(
    http: httpx.Client, kavenegar_server: KavenegarServerHandle
) -> None:
    _, body = send(http, kavenegar_server, receptor="09121234567,09121234568", localid="a,b")
    delivered, blocked = (e["messageid"] for e in body["entries"])
    kavenegar_server.set_status(delivered, 10)
    kavenegar_server.set_status(blocked, 14)

    by_localid = http.post(
        kavenegar_server.url("sms/statuslocalmessageid"), data={"localid": "a,b,nope"}
    ).json()
    assert by_localid["return"] == OK
    assert [(e["messageid"], e["localid"], e["status"]) for e in by_localid["entries"]] == [
        (delivered, "a", 10),
        (blocked, "b", 14),
        (0, "nope", 100),
    ]
    assert by_localid["entries"][0]["statustext"] == "رسیده به گیرنده"
    assert by_localid["entries"][2]["statustext"] == "شناسه پیامک نامعتبر است"

    ids = f"{delivered},{blocked},999"
    entries = http.get(kavenegar_server.url("sms/status"), params={"messageid": ids}).json()[
        "entries"
    ]
    assert [(e["messageid"], e["status"]) for e in entries] == [
        (delivered, 10),
        (blocked, 14),
        (999, 100),
    ]


def test_sendarray(http: httpx.Client, kavenegar_server: KavenegarServerHandle) -> None:
    data = {
        "receptor": json.dumps(["09121234567", "09121234568"]),
        "sender": json.dumps(["3000", "3001"]),
        "message": json.dumps(["یک", "two"], ensure_ascii=False),
        "localmessageids": json.dumps(["x1", "x2"]),
    }
    body = http.post(kavenegar_server.url("sms/sendarray"), data=data).json()
    assert body["return"] == OK
    assert [(e["receptor"], e["sender"], e["message"]) for e in body["entries"]] == [
        ("09121234567", "3000", "یک"),
        ("09121234568", "3001", "two"),
    ]
    assert [m["localid"] for m in kavenegar_server.sent()] == ["x1", "x2"]

    again = http.post(kavenegar_server.url("sms/sendarray"), data=data).json()
    assert [e["messageid"] for e in again["entries"]] == [e["messageid"] for e in body["entries"]]

    data["sender"] = json.dumps(["3000"])
    response = http.post(kavenegar_server.url("sms/sendarray"), data=data)
    assert response.status_code == 419
    assert response.json()["return"]["status"] == 419


def test_receive(http: httpx.Client, kavenegar_server: KavenegarServerHandle) -> None:
    messageid = kavenegar_server.add_inbox("09121234567", "لغو")
    kavenegar_server.add_inbox("09121234568", "other line", line="3000999")
    params = {"linenumber": "10004346", "isread": "0"}
    body = http.get(kavenegar_server.url("sms/receive"), params=params).json()
    assert body["return"] == OK
    [entry] = body["entries"]
    assert entry["messageid"] == messageid
    assert (entry["sender"], entry["receptor"], entry["message"]) == (
        "09121234567",
        "10004346",
        "لغو",
    )
    assert isinstance(entry["date"], int)
    assert http.get(kavenegar_server.url("sms/receive"), params=params).json()["entries"] == []
    params["isread"] = "1"
    assert len(http.get(kavenegar_server.url("sms/receive"), params=params).json()["entries"]) == 1


def test_invalid_receptor_and_credit(
    http: httpx.Client, kavenegar_server: KavenegarServerHandle
) -> None:
    kavenegar_server.invalid_receptor("09129999999")
    assert send(http, kavenegar_server, receptor="09129999999")[0] == 411
    assert send(http, kavenegar_server, receptor="not-a-number")[0] == 411
    assert send(http, kavenegar_server, message="bad\x00char")[0] == 422
    kavenegar_server.set_credit(0)
    status, body = send(http, kavenegar_server)
    assert (status, body["return"]["status"]) == (418, 418)
    assert kavenegar_server.sent() == []


def test_state_file_survives_restart(
    http: httpx.Client,
    kavenegar_server_factory: Callable[..., KavenegarServerHandle],
    tmp_path: Path,
) -> None:
    state = tmp_path / "kavenegar-state.json"
    server = kavenegar_server_factory(api_key="k1", state_file=state)
    _, first = send(http, server, localid="persisted")
    server.stop()
    server = kavenegar_server_factory(api_key="k1", state_file=state)
    _, again = send(http, server, localid="persisted")
    assert again["entries"][0]["messageid"] == first["entries"][0]["messageid"]
    assert len(server.sent()) == 1
