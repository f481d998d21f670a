"""dispatcher/delivery/state.py: the one place that writes `delivery.status`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import dispatcher
from dispatcher.delivery import state
from dispatcher.store.models import DeliveryStatus

PACKAGE = Path(dispatcher.__file__).parent
OWNER = PACKAGE / "delivery" / "state.py"
# Raw SQL that sets a delivery's status: `UPDATE delivery SET ... status =`.
_RAW = re.compile(r"\bupdate\s+\"?delivery\"?\b[^;]*?\bset\b[^;]*?\bstatus\s*=", re.I | re.S)


def status_writes(source: str) -> list[int]:
    """Lines of `source` that write a delivery's status: `.values(status=...)` (or a
    dict with a "status" key, or `**{...}`), `x.status = ...`, `setattr(x, "status",
    ...)`, and raw SQL `UPDATE delivery SET status = ...`."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("values", "ordered_values") and _sets_status(node) and not _insert(func):
                lines.append(node.lineno)
            if name == "setattr" and len(node.args) >= 2 and _is_status(node.args[1]):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "status"
                    and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                ):
                    lines.append(node.lineno)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _RAW.search(node.value)
        ):
            lines.append(node.lineno)
    return sorted(lines)


def _is_status(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value == "status"
    if isinstance(node, ast.Attribute):  # Delivery.status, table.c.status
        return node.attr == "status"
    return False


def _insert(func: ast.expr) -> bool:
    """The statement `.values` is called on is an INSERT (a new row, of any table)."""
    node: ast.expr = func
    while isinstance(node, ast.Attribute | ast.Call):
        if isinstance(node, ast.Call):
            called = node.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            if name.startswith("insert"):
                return True
            node = called
        else:
            node = node.value
    return False


def _sets_status(call: ast.Call) -> bool:
    if any(k.arg == "status" for k in call.keywords):
        return True
    dicts = [a for a in call.args if isinstance(a, ast.Dict)]
    dicts += [k.value for k in call.keywords if k.arg is None and isinstance(k.value, ast.Dict)]
    return any(_is_status(key) for d in dicts for key in d.keys if key is not None)


def test_no_module_but_state_writes_a_delivery_status() -> None:
    found = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWNER and "migrations" not in path.parts
        if (lines := status_writes(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"delivery.status written outside delivery/state.py: {found}"


@pytest.mark.parametrize(
    "source",
    [
        "update(Delivery).where(x).values(status='sent')",
        "stmt.values({Delivery.status: 'sent'})",
        "stmt.values({'status': DeliveryStatus.SENT})",
        "stmt.values(**{'status': 'sent'})",
        "delivery.status = DeliveryStatus.SENT",
        "setattr(delivery, 'status', 'sent')",
        "conn.exec_driver_sql(\"UPDATE delivery SET error_code = 1, status = 'sent'\")",
        'text("update delivery\\n set status=:s where id=:i")',
    ],
)
def test_the_scan_finds_each_way_of_writing_a_status(source: str) -> None:
    assert status_writes(source) == [1]


def test_the_scan_leaves_other_statuses_alone() -> None:
    source = (
        "self.status = status\nBounce(status='5.1.1')\nstmt.values(provider_status=3)\n"
        "insert_or_ignore(conn, _B).values(status='5.1.1').on_conflict_do_nothing()"
    )
    assert status_writes(source) == []


def test_state_itself_writes_statuses() -> None:  # the scan would see a move moved away
    assert status_writes(OWNER.read_text(encoding="utf-8"))


def test_every_move_goes_from_one_status_to_another() -> None:
    moves = {move: (state.source(move), state.target(move)) for move in state.Move}
    assert moves == {
        state.CLAIM: (DeliveryStatus.PENDING, DeliveryStatus.SENDING),
        state.SKIP: (DeliveryStatus.PENDING, DeliveryStatus.SKIPPED),
        state.SENT: (DeliveryStatus.SENDING, DeliveryStatus.SENT),
        state.FAIL: (DeliveryStatus.SENDING, DeliveryStatus.FAILED),
        state.RELEASE: (DeliveryStatus.SENDING, DeliveryStatus.PENDING),
    }
