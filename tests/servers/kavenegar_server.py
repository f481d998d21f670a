"""A fake Kavenegar REST API server for tests, run in its own process.

Run it with::

    python -m tests.servers.kavenegar_server --port 8765 --api-key KEY [--credit N] [--state FILE]

``--port 0`` picks a free port.  Once listening, the server prints one JSON line on stdout,
``{"port": P}``.  It serves the API under ``/v1/{API_KEY}/`` (GET query or POST form):
``sms/send``, ``sms/sendarray``, ``sms/status``, ``sms/statuslocalmessageid``, ``sms/receive``
and ``account/info`` (all ``.json``).  Every answer is the Kavenegar envelope
``{"return": {"status": S, "message": M}, "entries": ...}``; errors use the numeric code as the
HTTP status (codes outside 400-599 are sent as HTTP 400) and ``"entries": null``.

Model: every receptor of a send costs 1 credit per started 70 characters; a send with a
``localid`` already seen returns the original entry (same ``messageid``) and costs nothing.
A receptor marked invalid (or not 8-15 digits) gives 411, missing credit 418, more than 200
receptors 414, control characters in the message 422, array length mismatch (sendarray) 419.

Control channel (JSON over HTTP, outside ``/v1``; ``KavenegarServerHandle`` wraps it):
``GET /_control/health|sent|requests|state`` and ``POST /_control/<name>`` with a JSON body:
``reset {}``, ``fail {"code", "count", "methods": ["send", "sendarray"]}`` (answer the next
``count`` calls of those methods with that error), ``hang {"seconds", "count"}`` (the next
``count`` sends are recorded, then the reply waits), ``truncate {"entries", "count"}``
(the next ``count`` sendarray answers keep only their first ``entries`` entries; every
message is accepted), ``credit {"credit"}``, ``status
{"messageid", "status"}`` (``messageid: null`` sets the default, initially 1), ``inbox
{"sender", "message", "line"}`` and ``invalid {"receptor"}``.

``--state FILE`` keeps credit, sent messages (hence localid de-duplication), statuses, invalid
receptors and the inbox in a JSON file, loaded at start and rewritten after each change, so
that a restarted server remembers them.

This module also holds the small process helpers shared with ``smtp_server``.
"""

import argparse
import contextlib
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SENDER = "10004346"
DEFAULT_CREDIT = 1_000_000
SEND_METHODS = ("sms/send", "sms/sendarray")
RECEPTOR_RE = re.compile(r"\+?\d{8,15}")
CONTROL_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_RECEPTORS = 200

RETURN_MESSAGES = {
    200: "تایید شد",
    400: "پارامترها ناقص هستند",
    401: "حساب کاربری غیرفعال شده است",
    402: "عملیات ناموفق بود",
    403: "کد شناسائی API-Key معتبر نمی‌باشد",
    404: "متدی با این نام پیدا نشده است",
    405: "متد Get/Post اشتباه است",
    406: "پارامترهای اجباری خالی ارسال شده اند",
    407: "دسترسی به اطلاعات مورد نظر برای شما امکان پذیر نیست",
    409: "سرور قادر به پاسخگوئی نیست بعدا تلاش کنید",
    411: "دریافت کننده نامعتبر است",
    412: "ارسال کننده نامعتبر است",
    413: "پیام خالی است و یا طول پیام بیش از حد مجاز می‌باشد",
    414: "حجم درخواست بیشتر از حد مجاز است",
    418: "اعتبار حساب شما کافی نیست",
    419: "طول آرایه متن و گیرنده و فرستنده هم اندازه نیست",
    422: "داده ها به دلیل وجود کاراکتر نامناسب قابل پردازش نیست",
    451: "فراخوانی تکراری یا بیش از حد مجاز در یک بازه زمانی",
}
STATUS_TEXTS = {
    1: "در صف ارسال",
    2: "زمان بندی شده",
    4: "ارسال شده به مخابرات",
    5: "ارسال شده به مخابرات",
    6: "خطا در ارسال پیام",
    10: "رسیده به گیرنده",
    11: "نرسیده به گیرنده",
    13: "ارسال پیام لغو شده است",
    14: "بلاک شده است، عدم تمایل گیرنده به دریافت پیامک از خطوط تبلیغاتی",
    100: "شناسه پیامک نامعتبر است",
}
ENTRY_KEYS = ("messageid", "message", "status", "statustext", "sender", "receptor", "date", "cost")


class ApiError(Exception):
    """A Kavenegar error answer: ``code`` goes to ``return.status`` and the HTTP status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def message_cost(message: str) -> int:
    """Credit units for one receptor: one per started 70 UCS-2 characters."""
    ucs2_units = len(message.encode("utf-16-le")) // 2
    return max(1, math.ceil(ucs2_units / 70))


class State:
    """Everything the fake remembers.  Callers hold ``lock``."""

    def __init__(self, api_key: str, credit: int, state_file: Path | None) -> None:
        self.lock = threading.Lock()
        self.api_key = api_key
        self.initial_credit = credit
        self.state_file = state_file
        self.next_id = 100_000_001
        self.requests: list[dict[str, Any]] = []
        self.reset()
        if state_file is not None and state_file.exists():
            self._load(json.loads(state_file.read_text("utf-8")))

    def reset(self) -> None:
        self.credit = self.initial_credit
        self.sent: list[dict[str, Any]] = []
        self.by_id: dict[int, dict[str, Any]] = {}
        self.by_localid: dict[str, dict[str, Any]] = {}
        self.statuses: dict[int, int] = {}
        self.default_status = 1
        self.invalid: set[str] = set()
        self.inbox: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []  # {"code", "remaining", "methods"}
        self.hangs: list[dict[str, Any]] = []  # {"seconds", "remaining"}
        self.truncations: list[dict[str, Any]] = []  # {"entries", "remaining", "methods"}
        self.requests.clear()

    def _load(self, data: dict[str, Any]) -> None:
        self.credit = data["credit"]
        self.next_id = data["next_id"]
        self.default_status = data["default_status"]
        self.statuses = {int(k): v for k, v in data["statuses"].items()}
        self.invalid = set(data["invalid"])
        self.inbox = data["inbox"]
        for record in data["sent"]:
            self._remember(record)

    def save(self) -> None:
        if self.state_file is None:
            return
        data = {
            "credit": self.credit,
            "next_id": self.next_id,
            "default_status": self.default_status,
            "statuses": self.statuses,
            "invalid": sorted(self.invalid),
            "inbox": self.inbox,
            "sent": self.sent,
        }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
        os.replace(tmp, self.state_file)

    def _remember(self, record: dict[str, Any]) -> None:
        self.sent.append(record)
        self.by_id[record["messageid"]] = record
        if record["localid"]:
            self.by_localid[record["localid"]] = record

    def take(self, queue: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
        for item in queue:
            if method in item.get("methods", SEND_METHODS):
                item["remaining"] -= 1
                if item["remaining"] <= 0:
                    queue.remove(item)
                return item
        return None

    def send(
        self, items: list[tuple[str, str, str, str | None]], method: str
    ) -> tuple[list, float]:
        """Accept (receptor, sender, message, localid) items; return entries and hang seconds."""
        if len(items) > MAX_RECEPTORS:
            raise ApiError(414)
        cost, this_call = 0, set()  # localids earlier in this call: charged once
        for receptor, _sender, message, localid in items:
            if receptor in self.invalid or not RECEPTOR_RE.fullmatch(receptor):
                raise ApiError(411)
            if not message:
                raise ApiError(413)
            if CONTROL_CHARS_RE.search(message):
                raise ApiError(422)
            if localid is None or (localid not in self.by_localid and localid not in this_call):
                cost += message_cost(message)
            if localid is not None:
                this_call.add(localid)
        if cost > self.credit:
            raise ApiError(418)
        self.credit -= cost
        entries = []
        for receptor, sender, message, localid in items:
            record = self.by_localid.get(localid) if localid is not None else None
            if record is None:
                record = self._new_record(receptor, sender, message, localid, method)
            entries.append({key: record[key] for key in ENTRY_KEYS})
        hang = self.take(self.hangs, method)
        cut = self.take(self.truncations, method)
        if cut is not None:
            entries = entries[: cut["entries"]]
        self.save()
        return entries, hang["seconds"] if hang else 0.0

    def _new_record(
        self, receptor: str, sender: str, message: str, localid: str | None, method: str
    ) -> dict[str, Any]:
        record = {
            "messageid": self.next_id,
            "message": message,
            "status": 1,
            "statustext": STATUS_TEXTS[1],
            "sender": sender,
            "receptor": receptor,
            "date": int(time.time()),
            "cost": message_cost(message),
            "localid": localid,
            "method": method,
        }
        self.next_id += 1
        self._remember(record)
        return record

    def status_of(self, messageid: int) -> int:
        return self.statuses.get(messageid, self.default_status)


# --- API endpoints: (state, params) -> (entries, seconds to hang before replying) ---------


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _json_list(params: dict[str, str], name: str) -> list[str] | None:
    if not params.get(name):
        return None
    try:
        value = json.loads(params[name])
    except ValueError:
        raise ApiError(400) from None
    if not isinstance(value, list):
        raise ApiError(400)
    return [str(item) for item in value]


def api_send(state: State, params: dict[str, str]) -> tuple[Any, float]:
    receptors, localids = _split(params.get("receptor")), _split(params.get("localid"))
    if not receptors or not params.get("message"):
        raise ApiError(400)
    if localids and len(localids) != len(receptors):
        raise ApiError(400)
    sender = params.get("sender") or DEFAULT_SENDER
    items = [
        (r, sender, params["message"], localids[i] if localids else None)
        for i, r in enumerate(receptors)
    ]
    return state.send(items, "sms/send")


def api_sendarray(state: State, params: dict[str, str]) -> tuple[Any, float]:
    receptors, senders = _json_list(params, "receptor"), _json_list(params, "sender")
    messages, localids = _json_list(params, "message"), _json_list(params, "localmessageids")
    if not receptors or senders is None or messages is None:
        raise ApiError(400)
    if not len(receptors) == len(senders) == len(messages) == len(localids or receptors):
        raise ApiError(419)
    ids: Sequence[str | None] = localids or [None] * len(receptors)
    return state.send(list(zip(receptors, senders, messages, ids, strict=True)), "sms/sendarray")


def api_status(state: State, params: dict[str, str]) -> tuple[Any, float]:
    ids = _split(params.get("messageid"))
    if not ids:
        raise ApiError(400)
    entries = []
    for raw in ids:
        messageid = int(raw) if raw.isdigit() else 0
        status = state.status_of(messageid) if messageid in state.by_id else 100
        entries.append({"messageid": messageid, "status": status, "statustext": _text(status)})
    return entries, 0.0


def api_statuslocalmessageid(state: State, params: dict[str, str]) -> tuple[Any, float]:
    localids = _split(params.get("localid"))
    if not localids:
        raise ApiError(400)
    entries = []
    for localid in localids:
        record = state.by_localid.get(localid)
        messageid = record["messageid"] if record else 0
        status = state.status_of(messageid) if record else 100
        entries.append(
            {
                "messageid": messageid,
                "localid": localid,
                "status": status,
                "statustext": _text(status),
            }
        )
    return entries, 0.0


def api_receive(state: State, params: dict[str, str]) -> tuple[Any, float]:
    line = params.get("linenumber")
    if not line:
        raise ApiError(400)
    want_read = params.get("isread", "0").lower() in ("1", "true")
    unread_or_read = [m for m in state.inbox if m["read"] == want_read]
    matching = [m for m in unread_or_read if m["line"] in (None, line)][:100]
    for m in matching:
        m["read"] = True
    state.save()
    keys = ("messageid", "message", "sender", "date")
    return [{**{k: m[k] for k in keys}, "receptor": line} for m in matching], 0.0


def api_account_info(state: State, params: dict[str, str]) -> tuple[Any, float]:
    expires = int(time.time()) + 365 * 24 * 3600
    return {"remaincredit": state.credit, "expiredate": expires, "type": "Master"}, 0.0


def _text(status: int) -> str:
    return STATUS_TEXTS.get(status, "")


API: dict[str, Callable[[State, dict[str, str]], tuple[Any, float]]] = {
    "sms/send": api_send,
    "sms/sendarray": api_sendarray,
    "sms/status": api_status,
    "sms/statuslocalmessageid": api_statuslocalmessageid,
    "sms/receive": api_receive,
    "account/info": api_account_info,
}
API_PATH_RE = re.compile(r"/v1/([^/]+)/(\w+/\w+)\.json")


# --- control endpoints: (state, JSON body) -> JSON answer --------------------------------


def _control(state: State, name: str, body: dict[str, Any]) -> Any:
    if name == "health":
        return {"ok": True}
    if name == "sent":
        return list(state.sent)
    if name == "requests":
        return list(state.requests)
    if name == "state":
        return {"credit": state.credit, "default_status": state.default_status}
    if name == "reset":
        state.reset()
    elif name == "fail":
        methods = [f"sms/{m}" if "/" not in m else m for m in body.get("methods", ["send"])]
        state.faults.append({"code": body["code"], "remaining": body["count"], "methods": methods})
    elif name == "hang":
        state.hangs.append({"seconds": body["seconds"], "remaining": body["count"]})
    elif name == "truncate":
        state.truncations.append(
            {"entries": body["entries"], "remaining": body["count"], "methods": ["sms/sendarray"]}
        )
    elif name == "credit":
        state.credit = body["credit"]
    elif name == "status":
        if body.get("messageid") is None:
            state.default_status = body["status"]
        else:
            state.statuses[int(body["messageid"])] = body["status"]
    elif name == "inbox":
        entry = {
            "messageid": state.next_id,
            "message": body["message"],
            "sender": body["sender"],
            "line": body.get("line"),
            "date": int(body.get("date") or time.time()),
            "read": False,
        }
        state.next_id += 1
        state.inbox.append(entry)
        state.save()
        return {"ok": True, "messageid": entry["messageid"]}
    elif name == "invalid":
        state.invalid.add(body["receptor"])
    else:
        raise KeyError(name)
    state.save()
    return {"ok": True}


class Handler(BaseHTTPRequestHandler):
    """Serves the API and the control endpoints from the shared ``State``."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as a real front end sets it: the headers and the body go out as two
    # writes, and with Nagle the second waited for the client's delayed ACK (40 ms a
    # reply on Linux), which made the stand-in, not the client, set the pace.
    disable_nagle_algorithm = True
    server: "KavenegarHTTPServer"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        if url.path.startswith("/_control/"):
            try:
                with state.lock:
                    answer = _control(state, url.path[10:], json.loads(body or "{}"))
            except (KeyError, ValueError, TypeError) as exc:
                return self._reply(400, {"error": repr(exc)})
            return self._reply(200, answer)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if self.headers.get_content_type() == "application/x-www-form-urlencoded":
            params.update({k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()})
        hang = 0.0
        with state.lock:
            state.requests.append(
                {"method": self.command, "path": self.path, "params": params, "time": time.time()}
            )
            try:
                match = API_PATH_RE.fullmatch(url.path)
                if match is None or match.group(2).lower() not in API:
                    raise ApiError(404)
                if match.group(1) != state.api_key:
                    raise ApiError(403)
                method = match.group(2).lower()
                fault = state.take(state.faults, method)
                if fault is not None:
                    raise ApiError(fault["code"])
                entries, hang = API[method](state, params)
                code = 200
            except ApiError as exc:
                code, entries = exc.code, None
        if hang:
            time.sleep(hang)
        envelope = {"return": {"status": code, "message": RETURN_MESSAGES.get(code, "")}}
        http_status = code if code == 200 or 400 <= code <= 599 else 400
        self._reply(http_status, {**envelope, "entries": entries})

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (e.g. timed out during a hang)
            self.close_connection = True


class KavenegarHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, Handler)
        self.state = state


# --- process helpers (also used by smtp_server) -------------------------------------------


def watch_stdin() -> None:
    """Exit as soon as stdin closes, i.e. when the parent test process goes away."""

    def wait() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=wait, daemon=True).start()


def spawn_server(
    module: str, args: list[str], log_path: Path, timeout: float = 10.0
) -> tuple["subprocess.Popen[bytes]", dict[str, Any]]:
    """Start ``python -m module args`` from the repo root; return it and its JSON ready line."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--watch-stdin"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not line:
        stop_process(proc)
        tail = log_path.read_text("utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{module} did not start within {timeout}s:\n{tail}")
    return proc, json.loads(line)


def stop_process(proc: "subprocess.Popen[bytes]") -> None:
    """Terminate (then kill) the server and close its pipes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


# --- client side ---------------------------------------------------------------------------


class KavenegarServerHandle:
    """Test-side handle of a running fake Kavenegar server."""

    def __init__(self, proc: "subprocess.Popen[bytes]", host: str, port: int, api_key: str) -> None:
        self.proc, self.host, self.port, self.api_key = proc, host, port, api_key
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, method: str) -> str:
        """Full API URL, e.g. ``url("sms/send")`` -> ``http://.../v1/KEY/sms/send.json``."""
        return f"{self.base_url}/v1/{self.api_key}/{method}.json"

    def _control(self, name: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"{self.base_url}/_control/{name}",
            data=data,
            headers={"Content-Type": "application/json"},
            method="GET" if data is None else "POST",
        )
        with self._opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def sent(self) -> list[dict[str, Any]]:
        """Accepted messages: messageid, receptor, message, sender, localid, cost, date, method."""
        return self._control("sent")

    def requests(self) -> list[dict[str, Any]]:
        """Every API request: method, raw path (with the key), merged params, time."""
        return self._control("requests")

    def credit(self) -> int:
        return self._control("state")["credit"]

    def fail_next(
        self, code: int, count: int = 1, methods: Sequence[str] = ("send", "sendarray")
    ) -> None:
        """Answer the next ``count`` calls of ``methods`` with error ``code``."""
        self._control("fail", {"code": code, "count": count, "methods": list(methods)})

    def accept_then_hang(self, seconds: float, count: int = 1) -> None:
        """Record the next ``count`` sends, then sleep ``seconds`` before answering."""
        self._control("hang", {"seconds": seconds, "count": count})

    def answer_short(self, entries: int, count: int = 1) -> None:
        """The next ``count`` sendarray answers carry only their first ``entries`` entries
        (every message of the call is accepted)."""
        self._control("truncate", {"entries": entries, "count": count})

    def set_credit(self, credit: int) -> None:
        self._control("credit", {"credit": credit})

    def set_status(self, messageid: int, status: int) -> None:
        """Delivery status reported by status.json (e.g. 10 delivered, 14 blocked)."""
        self._control("status", {"messageid": messageid, "status": status})

    def set_default_status(self, status: int) -> None:
        """Status of every message without its own ``set_status`` (initially 1, queued)."""
        self._control("status", {"messageid": None, "status": status})

    def add_inbox(self, sender: str, message: str, line: str | None = None) -> int:
        """Queue an incoming SMS for receive.json (``line=None``: any line); return its id."""
        return self._control("inbox", {"sender": sender, "message": message, "line": line})[
            "messageid"
        ]

    def invalid_receptor(self, number: str) -> None:
        """Sends to ``number`` fail with 411."""
        self._control("invalid", {"receptor": number})

    def reset(self) -> None:
        """Forget messages, requests, injections and inbox; restore the initial credit."""
        self._control("reset", {})

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "KavenegarServerHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_kavenegar_server(
    api_key: str = "test-key",
    *,
    credit: int = DEFAULT_CREDIT,
    state_file: Path | None = None,
    log_path: Path | None = None,
    host: str = "127.0.0.1",
) -> KavenegarServerHandle:
    """Start the server in a subprocess on a free port and wait until it answers."""
    args = ["--host", host, "--port", "0", "--api-key", api_key, "--credit", str(credit)]
    if state_file is not None:
        args += ["--state", str(state_file)]
    log = log_path or Path(os.devnull)
    proc, ready = spawn_server("tests.servers.kavenegar_server", args, log)
    handle = KavenegarServerHandle(proc, host, ready["port"], api_key)
    try:
        handle._control("health")
    except Exception:
        handle.stop()
        raise
    return handle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--credit", type=int, default=DEFAULT_CREDIT)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = parser.parse_args(argv)
    server = KavenegarHTTPServer(
        (args.host, args.port), State(args.api_key, args.credit, args.state)
    )
    if args.watch_stdin:
        watch_stdin()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.1)
    server.server_close()


if __name__ == "__main__":
    main()
