"""A delivery as an actor sees it, and the states it moves through.

    pending -> sending -> sent | failed          pending -> skipped
    sending -> pending  (a transient failure, handed back for the retry)

Every move is a conditional update, written once, in `groupcommit.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.store.models import Campaign, Delivery, Member


@dataclass(frozen=True, slots=True)
class Loaded:
    delivery: Delivery
    member: Member
    campaign: Campaign


# What an actor writes into `error_message` when a transient failure used up the
# retries (`mark_failed(..., f"{RETRIES_EXHAUSTED}: ...")`): the only failures that
# `retry_failed` re-queues and `sms sync` looks up. A 5xx, an invalid number or a
# broken template is final.
RETRIES_EXHAUSTED = "retries exhausted"
