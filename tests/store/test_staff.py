"""Console accounts: argon2 hashes only, the lockout and its end, sessions' idle expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dispatcher.errors import InputError
from dispatcher.store.models import Staff, StaffRole, StaffSession, utcnow
from dispatcher.store.staff import (
    add_staff,
    current_session,
    end_session,
    remove_staff,
    sign_in,
    start_session,
    use_hasher,
)

PASSWORD = "a long enough password"


@pytest.fixture(autouse=True)
def cheap_hashes() -> Iterator[None]:
    previous = use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    use_hasher(previous)


def test_only_an_argon2_hash_is_stored(engine: Engine) -> None:
    add_staff(engine, "sara", StaffRole.MARKETER, PASSWORD)
    with engine.connect() as conn:
        stored = conn.execute(select(Staff.password_hash)).scalar_one()  # type: ignore[call-overload]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_a_bad_name_or_short_password_is_refused(engine: Engine) -> None:
    with pytest.raises(InputError, match="at least 10"):
        add_staff(engine, "sara", StaffRole.VIEWER, "short")
    with pytest.raises(InputError, match="letters, digits"):
        add_staff(engine, "sa ra", StaffRole.VIEWER, PASSWORD)


def test_the_lock_ends_after_15_minutes(engine: Engine) -> None:
    add_staff(engine, "sara", StaffRole.VIEWER, PASSWORD)
    now = utcnow()
    results = [sign_in(engine, "sara", "wrong password!", now=now) for _ in range(5)]
    assert [r.locked for r in results] == [False, False, False, False, True]
    assert sign_in(engine, "sara", PASSWORD, now=now + timedelta(minutes=14)).locked
    later = sign_in(engine, "sara", PASSWORD, now=now + timedelta(minutes=15, seconds=1))
    assert later.staff is not None and later.staff.name == "sara"


def test_a_right_password_clears_the_failures(engine: Engine) -> None:
    add_staff(engine, "sara", StaffRole.VIEWER, PASSWORD)
    for _ in range(4):
        sign_in(engine, "sara", "wrong password!")
    assert sign_in(engine, "sara", PASSWORD).staff is not None
    assert not sign_in(engine, "sara", "wrong password!").locked


def test_a_session_ends_after_8_idle_hours_or_at_logout(engine: Engine) -> None:
    staff = add_staff(engine, "sara", StaffRole.ADMIN, PASSWORD)
    token = start_session(engine, staff)
    found = current_session(engine, token, now=utcnow() + timedelta(hours=7))
    assert found is not None and found.staff.role is StaffRole.ADMIN
    assert (
        current_session(engine, token, now=utcnow() + timedelta(hours=14, minutes=59)) is not None
    )
    assert current_session(engine, token, now=utcnow() + timedelta(hours=24)) is None
    second = start_session(engine, staff)
    end_session(engine, second)
    assert current_session(engine, second) is None
    with engine.connect() as conn:
        assert conn.execute(select(StaffSession)).all() == []


def test_removing_staff_ends_their_sessions(engine: Engine) -> None:
    staff = add_staff(engine, "sara", StaffRole.ADMIN, PASSWORD)
    token = start_session(engine, staff)
    remove_staff(engine, "sara")
    assert current_session(engine, token) is None
