"""The send guard: a provider call's failure that several messages met counts once."""

from __future__ import annotations

from dispatcher.delivery.guard import SendGuard
from dispatcher.delivery.storm import ErrorStorm
from dispatcher.delivery.throttle import LocalAdaptiveRateLimiter
from dispatcher.errors import TransientDeliveryError
from dispatcher.store.models import Campaign


def test_a_repeated_failure_is_not_counted_again_towards_the_error_storm() -> None:
    guard = SendGuard(
        transport="kavenegar",
        limiter=LocalAdaptiveRateLimiter(ceiling=None),
        storm=ErrorStorm(limit=2),
    )
    campaign = Campaign(id=7, slug="c", name="c", spec="{}")
    for i in range(3):  # one call of three messages failed: one failure
        error = TransientDeliveryError("busy", code=409)
        error.repeated = i > 0
        assert guard.count_failure(campaign, error) is None
    assert guard.count_failure(campaign, TransientDeliveryError("busy", code=409)) is None
    storm = guard.count_failure(campaign, TransientDeliveryError("busy", code=409))
    assert storm is not None and storm.startswith("3 sms sends in a row failed")
