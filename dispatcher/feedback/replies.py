"""Replies to the sender line (`sms inbox`): «لغو», «11», «stop» opt the sender out of
SMS, recorded as a replied-stop provider event; paced by the shared Kavenegar rate.
README: "SMS".
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter

from sqlalchemy import select
from sqlmodel import Session, col

from dispatcher.audience.normalise import normalise_mobile, to_ascii_digits
from dispatcher.feedback.event import EventKind, ProviderEvent, record
from dispatcher.feedback.inbox import OptOutSpool
from dispatcher.feedback.reports import Runtime, kavenegar
from dispatcher.masking import mask_mobile, mask_text
from dispatcher.sms.kavenegar import RECEIVE_PAGE
from dispatcher.store.db import session_scope
from dispatcher.store.models import Channel, Member

log = logging.getLogger("dispatcher.sms")

MAX_INBOX_PAGES = 100

_OPT_OUT = re.compile(r"(?:لغو|11|stop)+")
_OPT_OUT_WORD = re.compile(r"لغو|11|stop")
_TATWEEL = "\u0640"


def is_opt_out_reply(text: str) -> bool:
    """True when a reply asks to stop SMS: `لغو`, `11`, `stop`, or both (`لغو 11`).

    Case, spaces, invisible marks, punctuation and the digit script do not matter;
    each word counts once (`1111` is not an opt-out).
    """
    cleaned = to_ascii_digits(unicodedata.normalize("NFKC", text)).casefold()
    kept = "".join(
        c
        for c in cleaned
        if c != _TATWEEL and not c.isspace() and unicodedata.category(c)[0] not in "PC"
    )
    if not kept or not _OPT_OUT.fullmatch(kept):
        return False
    words = _OPT_OUT_WORD.findall(kept)
    return len(words) == len(set(words))


def read_inbox(rt: Runtime) -> dict[str, int]:
    """Opt out every member who replied with an opt-out word; return counts.

    Keys: `received`, `opt_out_replies`, `opted_out` (members whose consent changed),
    `unmatched` (an opt-out from a number no member has), `ignored` (other replies),
    `replayed` (opt-outs an earlier run fetched but could not record, recorded now).
    The senders of opt-out replies go through `OptOutSpool` (the `sms_inbox_spool`
    table), so that none is lost between Kavenegar, which hands each reply out once,
    and the opt-out.
    """
    transport = kavenegar(rt)
    spool = OptOutSpool(rt.engine)
    counts: Counter[str] = Counter()
    if rt.settings.sms_inbox_spool is not None and spool.adopt_file(rt.settings.sms_inbox_spool):
        log.info("sms inbox: opt-out replies of the old spool file moved into the database")
    kept = spool.pending()
    if kept:
        with session_scope(rt.engine) as session:
            _opt_out_senders(session, [sender for _, sender in kept], counts)
            spool.remove(session, [i for i, _ in kept])
        counts["replayed"] += len(kept)
        log.info("sms inbox: %d opt-out replies kept from an earlier run recorded", len(kept))
    for _ in range(MAX_INBOX_PAGES):
        rt.guard("kavenegar").before_send()
        inbound = transport.receive()
        counts["received"] += len(inbound)
        senders = []
        for message in inbound:
            if is_opt_out_reply(message.message):
                counts["opt_out_replies"] += 1
                senders.append(message.sender)
            else:
                counts["ignored"] += 1
        ids = spool.add(senders)  # committed before the opt-outs are recorded
        with session_scope(rt.engine) as session:
            _opt_out_senders(session, senders, counts)
            spool.remove(session, ids)
        if len(inbound) < RECEIVE_PAGE:
            break
    return {
        key: counts[key]
        for key in ("received", "opt_out_replies", "opted_out", "unmatched", "ignored", "replayed")
    }


def _opt_out_senders(session: Session, senders: list[str], counts: Counter[str]) -> None:
    """Opt every member with one of these numbers out of SMS (source `sms-keyword`)."""
    for sender in senders:
        try:
            mobile = normalise_mobile(sender)
        except ValueError:
            counts["unmatched"] += 1
            log.info("sms inbox: opt-out from %s, not a mobile", mask_text(sender))
            continue
        members = list(
            session.execute(select(col(Member.id)).where(col(Member.mobile) == mobile)).scalars()
        )
        if not members:
            counts["unmatched"] += 1
            log.info("sms inbox: opt-out from %s, no such member", mask_mobile(mobile))
        for member_id in members:
            assert member_id is not None
            if record(
                session, ProviderEvent(EventKind.REPLIED_STOP, Channel.SMS, member_id=member_id)
            ):
                counts["opted_out"] += 1
                log.info("sms inbox: %s opted out of SMS", mask_mobile(mobile))
