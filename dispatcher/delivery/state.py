"""A delivery as an actor sees it, and the states it moves through.

    pending -> sending -> sent | failed          pending -> skipped
    sending -> pending  (a transient failure, handed back for the retry)

Every move is a conditional update, written once, in `groupcommit.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.store.models import Campaign, Channel, Delivery, Member


@dataclass(frozen=True, slots=True)
class Loaded:
    delivery: Delivery
    member: Member
    campaign: Campaign
    # The member's address is on the suppression list for the delivery's channel.
    suppressed: bool = False

    def unreachable(self, channel: Channel) -> str | None:
        """Why the member is not to get this channel now (the send-time consent check:
        opted out, no address, suppressed address); None when reachable."""
        member = self.member
        if channel is Channel.EMAIL:
            if not member.email_opt_in:
                return "opted out"
            if not member.email:
                return "no email address"
        else:
            if not member.sms_opt_in:
                return "opted out"
            if member.mobile_invalid:
                return "mobile invalid"
            if not member.mobile:
                return "no mobile number"
        return "address suppressed" if self.suppressed else None


# What an actor writes into `error_message` when a transient failure used up the
# retries (`mark_failed(..., f"{RETRIES_EXHAUSTED}: ...")`): the only failures that
# `retry_failed` re-queues and `sms sync` looks up. A 5xx, an invalid number or a
# broken template is final.
RETRIES_EXHAUSTED = "retries exhausted"
