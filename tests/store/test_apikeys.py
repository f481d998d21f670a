"""API keys: made once, stored as a hash, checked the same way whatever was presented."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from dispatcher.errors import InputError, NotFoundError
from dispatcher.store.apikeys import authenticate, create_key, list_keys, revoke_key


def test_only_the_hash_of_a_key_is_stored(engine: Engine) -> None:
    key = create_key(engine, "shop-web")
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT * FROM api_key").all()
    assert key not in repr(stored)
    assert authenticate(engine, f"Bearer {key}") == "shop-web"
    assert authenticate(engine, f"bearer  {key} ") == "shop-web"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer dsp_wrong", "Basic xyz"])
def test_a_missing_or_wrong_key_names_no_one(engine: Engine, header: str | None) -> None:
    create_key(engine, "shop-web")
    assert authenticate(engine, header) is None


def test_a_revoked_key_names_no_one_and_its_name_stays_taken(engine: Engine) -> None:
    key = create_key(engine, "shop-web")
    assert revoke_key(engine, "shop-web") is True
    assert revoke_key(engine, "shop-web") is False
    assert authenticate(engine, f"Bearer {key}") is None
    [listed] = list_keys(engine)
    assert listed.name == "shop-web" and listed.revoked_at is not None
    with pytest.raises(InputError, match="exists already"):
        create_key(engine, "shop-web")
    with pytest.raises(NotFoundError):
        revoke_key(engine, "nobody")


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "-dash-first"])
def test_a_key_name_must_be_a_plain_word(engine: Engine, name: str) -> None:
    with pytest.raises(InputError, match="not a key name"):
        create_key(engine, name)
