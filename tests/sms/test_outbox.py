"""SMS outbox mode: one JSON line per message, never interleaved."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from dispatcher.sms.outbox import SmsOutbox
from dispatcher.sms.transport import SmsResult


def test_each_sms_is_one_json_line_in_the_campaigns_file(tmp_path: Path) -> None:
    outbox = SmsOutbox(tmp_path / "sms")
    result = outbox.send(
        receptor="+989121234567", message="حراج یلدا\nلغو11", localid=3, campaign="yalda-1405"
    )
    assert result == SmsResult(messageid=None, cost=None, status=None)
    [line] = (tmp_path / "sms" / "yalda-1405.jsonl").read_text("utf-8").splitlines()
    record = json.loads(line)
    assert record["localid"] == 3 and record["receptor"] == "+989121234567"
    assert record["message"] == "حراج یلدا\nلغو11"  # newlines escaped: one line per SMS
    assert (record["parts"], record["encoding"]) == (1, "UCS-2")
    assert "حراج" in line  # readable, not \\u-escaped


def test_concurrent_senders_never_interleave_lines(tmp_path: Path) -> None:
    outbox = SmsOutbox(tmp_path / "sms")
    message = "ب" * 2000  # long lines, written by eight threads at once

    def send(start: int) -> None:
        for i in range(start, start + 50):
            outbox.send(receptor="+989121234567", message=message, localid=i, campaign="c")

    threads = [threading.Thread(target=send, args=(n * 1000,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = outbox.records("c")
    assert len(records) == 400
    assert all(r["message"] == message for r in records)


def test_status_by_localid_finds_what_was_written(tmp_path: Path) -> None:
    outbox = SmsOutbox(tmp_path / "sms")
    assert outbox.status_by_localid(5) is None
    outbox.send(receptor="+989121234567", message="x", localid=5, campaign="c")
    assert outbox.status_by_localid(5) is not None
