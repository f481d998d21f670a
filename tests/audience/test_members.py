"""Member import and the consent rules, on SQLite and PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from dispatcher.audience.consent import opt_out
from dispatcher.audience.members import ImportReport, RowError, import_members
from dispatcher.errors import InputError
from dispatcher.store.db import session_scope
from dispatcher.store.models import Channel, ConsentEvent, ConsentSource, Member, MemberTag

HEADER = "external_id,first_name,last_name,email,mobile,email_opt_in,sms_opt_in,tags\n"


def write(tmp_path: Path, content: str | bytes, name: str = "members.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def run(engine: Engine, tmp_path: Path, content: str | bytes) -> ImportReport:
    return import_members(engine, write(tmp_path, content))


def members(engine: Engine) -> dict[str, Member]:
    with Session(engine) as session:
        return {m.external_id: m for m in session.exec(select(Member)).all()}


def member(engine: Engine, external_id: str) -> Member:
    return members(engine)[external_id]


def events(engine: Engine) -> list[tuple[str, bool, str]]:
    """(channel, opted_in, source) of every consent event, in order."""
    with Session(engine) as session:
        rows = session.exec(select(ConsentEvent).order_by(col(ConsentEvent.id))).all()
        return [(e.channel, e.opted_in, e.source) for e in rows]


def tags(engine: Engine, external_id: str) -> set[str]:
    with Session(engine) as session:
        stmt = (
            select(MemberTag.tag)
            .join(Member, col(Member.id) == col(MemberTag.member_id))
            .where(Member.external_id == external_id)
        )
        return set(session.exec(stmt).all())


def where(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.line, e.field) for e in report.rejected]


def count_members(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM member")).scalar_one())


# --------------------------------------------------------------------------- import


def test_import_creates_members_with_normalised_addresses(engine: Engine, tmp_path: Path) -> None:
    report = run(
        engine,
        tmp_path,
        HEADER + "C1, علی ,رضایی, Ali@Gmail.COM ,۰۹۱۲ ۱۲۳ ۴۵۶۷,1,0,vip;buyer\n" + "C2,Sara,,,,,,\n",
    )
    assert report == ImportReport(created=2)
    assert report.ok
    ali, sara = member(engine, "C1"), member(engine, "C2")
    assert (ali.first_name, ali.last_name) == ("علی", "رضایی")
    assert ali.email == "Ali@gmail.com"
    assert ali.mobile == "+989121234567"
    assert ali.email_opt_in and not ali.sms_opt_in
    assert ali.tags == "vip;buyer"
    assert tags(engine, "C1") == {"vip", "buyer"}
    assert (sara.email, sara.mobile, sara.tags) == (None, None, "")
    assert sara.email_opt_in and sara.sms_opt_in  # empty opt-in cell means 1
    assert events(engine) == []  # a new member's initial consent is not an event


def test_only_external_id_column_is_required(engine: Engine, tmp_path: Path) -> None:
    report = run(engine, tmp_path, "external_id\nC1\nC2\n")
    assert report.created == 2
    c1 = member(engine, "C1")
    assert (c1.first_name, c1.email, c1.mobile) == ("", None, None)
    assert c1.email_opt_in and c1.sms_opt_in  # absent opt-in columns default to 1


def test_columns_may_come_in_any_order_and_any_case(engine: Engine, tmp_path: Path) -> None:
    report = run(engine, tmp_path, " Mobile ,EXTERNAL_ID\n09121234567,C1\n")
    assert report.created == 1 and report.ok
    assert member(engine, "C1").mobile == "+989121234567"


def test_utf8_bom_is_accepted(engine: Engine, tmp_path: Path) -> None:
    report = run(engine, tmp_path, "\ufeff" + HEADER + "C1,مریم,,m@example.com,,,,\n")
    assert report.created == 1 and report.ok
    assert member(engine, "C1").first_name == "مریم"


def test_windows_line_endings_and_blank_rows_are_fine(engine: Engine, tmp_path: Path) -> None:
    content = "external_id,email\r\nC1,a@example.com\r\n\r\n,\r\nC2,b@example.com\r\n"
    report = run(engine, tmp_path, content)
    assert report == ImportReport(created=2)


def test_bad_rows_are_reported_with_line_and_field_and_the_rest_imported(
    engine: Engine, tmp_path: Path
) -> None:
    content = (
        HEADER  # line 1
        + 'C1,"Ali\nReza",Rezaei,ali@example.com,09121234567,1,1,vip\n'  # lines 2-3
        + "C2,Sara,,sara@example,,,,\n"  # 4: bad email
        + "C3,Reza,,,0912,,,\n"  # 5: short mobile
        + "C4,Nima,,,02188776655,,,\n"  # 6: landline
        + "C5,Mina,,,,yes,,\n"  # 7: bad opt-in
        + ",NoId,,,,,,\n"  # 8: missing external_id
        + "C1,Again,,,,,,\n"  # 9: duplicate of line 2
        + "C6,Too,Many,,,,,,extra\n"  # 10: more fields than the header
        + 'C7,"multi\nline",,,,,,\n'  # 11-12: fine
        + "C8,Last,,,,1,2,\n"  # 13: bad sms opt-in
        + "C9,Ok,,ok@example.com,9121234568,0,1,\n"  # 14: fine
    )
    report = run(engine, tmp_path, content)
    assert where(report) == [
        (4, "email"),
        (5, "mobile"),
        (6, "mobile"),
        (7, "email_opt_in"),
        (8, "external_id"),
        (9, "external_id"),
        (10, "row"),
        (13, "sms_opt_in"),
    ]
    assert [e.external_id for e in report.rejected] == [
        "C2",
        "C3",
        "C4",
        "C5",
        None,
        "C1",
        "C6",
        "C8",
    ]
    assert report.created == 3
    assert set(members(engine)) == {"C1", "C7", "C9"}
    assert member(engine, "C1").first_name == "Ali Reza"  # the first C1 row wins
    assert "landline" in report.rejected[2].reason
    assert "line 2" in report.rejected[5].reason


def test_a_bad_record_spanning_lines_is_reported_at_its_first_line(
    engine: Engine, tmp_path: Path
) -> None:
    content = HEADER + 'C1,"two\nlines",,not-an-email,,,,\nC2,,,,,,,\n'
    report = run(engine, tmp_path, content)
    assert where(report) == [(2, "email")]
    assert report.created == 1


def test_row_with_fewer_fields_than_the_header_is_rejected(engine: Engine, tmp_path: Path) -> None:
    report = run(engine, tmp_path, HEADER + "C1,Ali,Rezaei\nC2,,,,,,,\n")
    assert where(report) == [(2, "row")]
    assert report.rejected[0].reason == "3 fields, the header has 8"
    assert set(members(engine)) == {"C2"}


def test_every_bad_field_of_a_row_is_reported(engine: Engine, tmp_path: Path) -> None:
    report = run(engine, tmp_path, HEADER + "C1,,,bad,0912,x,,\n")
    assert where(report) == [(2, "email"), (2, "mobile"), (2, "email_opt_in")]
    assert count_members(engine) == 0


def test_external_id_is_trimmed_and_too_long_one_rejected(engine: Engine, tmp_path: Path) -> None:
    report = run(engine, tmp_path, f"external_id\n  C1  \n{'x' * 65}\n")
    assert where(report) == [(3, "external_id")]
    assert set(members(engine)) == {"C1"}


def test_an_external_id_with_a_slash_is_rejected_at_its_line_the_rest_imported(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, "external_id\nC1\nshop/42\nC2\n")
    report = import_members(engine, path)
    [error] = report.rejected
    assert str(error).startswith(f"{path}:3: external_id: a '/' in the id")
    assert set(members(engine)) == {"C1", "C2"}


def test_row_error_reads_like_a_compiler_message_with_the_value_masked(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, "external_id,mobile,email\nC1,0912,\nC2,,ali.rezaei@gmail\n")
    report = import_members(engine, path)
    mobile_error, email_error = report.rejected
    assert str(mobile_error) == f"{path}:2: mobile: not a valid Iranian mobile number ('09***')"
    assert str(email_error).startswith(f"{path}:3: email: not a valid email address")
    assert str(email_error).endswith("('a***@gmail')")
    assert "ali.rezaei" not in str(email_error)


def test_row_error_without_a_file_names_the_line() -> None:
    assert str(RowError(7, "mobile", "bad", "C7")) == "line 7: mobile: bad"


def test_unknown_column_is_reported_on_line_1_and_known_columns_imported(
    engine: Engine, tmp_path: Path
) -> None:
    report = run(engine, tmp_path, "external_id,birthday,email\nC1,1370-01-01,a@example.com\n")
    assert report.rejected == [
        RowError(1, "birthday", "unknown column", None, str(tmp_path / "members.csv"))
    ]
    assert not report.ok
    assert report.created == 1
    assert member(engine, "C1").email == "a@example.com"


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (PNG, "binary"),
        ("external_id,first_name\nC1,رضا\n".encode("cp1256"), "not UTF-8"),
        (b"", "empty"),
        (b"\xef\xbb\xbf", "empty"),
        (b"\n\n  \n", "empty"),
        ("external_id,first_name\nC1,Ali\n".encode("utf-16"), "UTF-16"),
        ("first_name,email\nAli,a@example.com\n", "no external_id column"),
        ("C1,Ali,Rezaei,a@example.com\n", "no external_id column"),  # no header row
        ("external_id;email\nC1;a@example.com\n", "separated by something other"),
        ('{"members": [{"external_id": "C1"}]}\n', "no external_id column"),
        ("external_id,email,Email\nC1,a@example.com,b@example.com\n", "'email' twice"),
        ('external_id,first_name\nC1,"' + "x" * 200_000 + '"\n', "not valid CSV"),
    ],
)
def test_a_file_that_is_not_a_member_csv_is_refused_whole_and_nothing_written(
    engine: Engine, tmp_path: Path, content: str | bytes, reason: str
) -> None:
    path = write(tmp_path, content, "upload.csv")
    with pytest.raises(InputError, match=reason) as info:
        import_members(engine, path)
    assert str(info.value).startswith(f"{path}:")
    assert count_members(engine) == 0


def test_a_missing_file_is_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        import_members(engine, tmp_path / "nope.csv")


def test_import_writes_nothing_if_the_database_fails_midway(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,first_name\nOLD,Old\n")
    with engine.begin() as conn:  # member rows go in first, then the tags fail
        conn.execute(text("DROP TABLE member_tag"))
    content = "external_id,first_name,tags\nOLD,Changed,x\nNEW,New,vip\n"
    with pytest.raises(Exception, match="member_tag"):
        run(engine, tmp_path, content)
    assert set(members(engine)) == {"OLD"}
    assert member(engine, "OLD").first_name == "Old"


def test_import_reads_and_writes_in_bulk(engine: Engine, tmp_path: Path) -> None:
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*args: Any) -> None:
        statements.append(args[2])

    rows = "".join(
        f"C{i},Name {i},,user{i}@example.com,0912{i:07d},1,{i % 2},t{i % 3}\n" for i in range(2000)
    )
    first = run(engine, tmp_path, HEADER + rows)
    statements_first = len(statements)
    changed = rows.replace(",1,", ",0,")
    second = run(engine, tmp_path, HEADER + changed)
    assert (first.created, second.updated) == (2000, 2000)
    assert statements_first < 40
    assert len(statements) - statements_first < 40
    assert len(events(engine)) == 2000


# ---------------------------------------------------------------------------- upsert


def test_reimport_updates_changed_members_and_counts_the_rest(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, tmp_path, HEADER + "C1,Ali,,,,,,\nC2,Sara,,,,,,\n")
    report = run(engine, tmp_path, HEADER + "C1,Ali,,,,,,\nC2,Sarah,,,,,,\nC3,New,,,,,,\n")
    assert report == ImportReport(created=1, updated=1, unchanged=1)
    assert member(engine, "C2").first_name == "Sarah"


def test_changed_email_replaces_the_old_one(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,email\nC1,old@example.com\n")
    report = run(engine, tmp_path, "external_id,email\nC1,new@example.com\n")
    assert report.updated == 1
    assert member(engine, "C1").email == "new@example.com"


def test_empty_address_cell_clears_the_address(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,email,mobile\nC1,a@example.com,09121234567\n")
    run(engine, tmp_path, "external_id,email,mobile\nC1,,\n")
    c1 = member(engine, "C1")
    assert (c1.email, c1.mobile) == (None, None)


def test_absent_columns_leave_existing_values_alone(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, HEADER + "C1,Ali,Rezaei,a@example.com,09121234567,0,0,vip\n")
    report = run(engine, tmp_path, "external_id,last_name\nC1,Rezaee\n")
    assert report.updated == 1
    c1 = member(engine, "C1")
    assert (c1.first_name, c1.last_name, c1.email) == ("Ali", "Rezaee", "a@example.com")
    assert not c1.email_opt_in and not c1.sms_opt_in  # absent opt-in columns: unchanged
    assert c1.tags == "vip" and tags(engine, "C1") == {"vip"}


def test_changed_mobile_clears_mobile_invalid(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,mobile\nC1,09121234567\nC2,09121234568\n")
    with engine.begin() as conn:
        conn.execute(text("UPDATE member SET mobile_invalid = :t"), {"t": True})
    run(engine, tmp_path, "external_id,mobile\nC1,09351234567\nC2,+989121234568\n")
    assert member(engine, "C1").mobile == "+989351234567"
    assert member(engine, "C1").mobile_invalid is False
    assert member(engine, "C2").mobile_invalid is True  # same number: still invalid


def test_tags_are_replaced(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,tags\nC1,vip;buyer\nC2,vip\n")
    report = run(engine, tmp_path, "external_id,tags\nC1, buyer ;;new\nC2,\n")
    assert report.updated == 2
    assert tags(engine, "C1") == {"buyer", "new"}
    assert member(engine, "C1").tags == "buyer;new"
    assert tags(engine, "C2") == set()
    assert member(engine, "C2").tags == ""
    again = run(engine, tmp_path, "external_id,tags\nC1,buyer;new\nC2,\n")
    assert again.unchanged == 2


# --------------------------------------------------------------------------- consent


def test_opt_out_through_link_survives_reimport(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, HEADER + "C1,Ali,,a@example.com,09121234567,1,1,\n")
    with session_scope(engine) as session:
        assert opt_out(session, member(engine, "C1").id or 0, Channel.EMAIL, ConsentSource.LINK)
    report = run(engine, tmp_path, HEADER + "C1,Ali,,a@example.com,09121234567,1,1,\n")
    assert report == ImportReport(unchanged=1, kept_opted_out=1)
    c1 = member(engine, "C1")
    assert not c1.email_opt_in and c1.email_optout_source == "link"
    assert c1.sms_opt_in
    assert events(engine) == [("email", False, "link")]


def test_sms_keyword_opt_out_survives_an_empty_opt_in_cell(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,sms_opt_in\nC1,1\n")
    with session_scope(engine) as session:
        opt_out(session, member(engine, "C1").id or 0, Channel.SMS, ConsentSource.SMS_KEYWORD)
    report = run(engine, tmp_path, "external_id,first_name,sms_opt_in\nC1,Ali,\n")
    assert (report.updated, report.kept_opted_out) == (1, 1)
    assert not member(engine, "C1").sms_opt_in


def test_import_0_opts_out_and_a_later_import_1_opts_back_in(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, tmp_path, "external_id,email_opt_in,sms_opt_in\nC1,1,1\n")
    out = run(engine, tmp_path, "external_id,email_opt_in,sms_opt_in\nC1,0,1\n")
    assert out.updated == 1
    c1 = member(engine, "C1")
    assert not c1.email_opt_in and c1.email_optout_source is None  # not sticky
    back = run(engine, tmp_path, "external_id,email_opt_in,sms_opt_in\nC1,1,1\n")
    assert back == ImportReport(updated=1)
    assert member(engine, "C1").email_opt_in
    assert events(engine) == [("email", False, "import"), ("email", True, "import")]


def test_import_of_unchanged_consent_records_no_event(engine: Engine, tmp_path: Path) -> None:
    run(engine, tmp_path, "external_id,email_opt_in\nC1,0\n")
    report = run(engine, tmp_path, "external_id,email_opt_in\nC1,0\n")
    assert report.unchanged == 1
    assert events(engine) == []


# -- hostile files: digits, control characters, international addresses ----------------------


def test_persian_and_arabic_digits_in_an_external_id_are_stored_as_ascii(
    engine: Engine, tmp_path: Path
) -> None:
    report = run(engine, tmp_path, "external_id,first_name\nM۲۰۱۰,Ali\n\u200fM٢٠١١,Sara\n")
    assert report.ok and report.created == 2
    assert set(members(engine)) == {"M2010", "M2011"}
    again = run(engine, tmp_path, "external_id,first_name\nM2010,Ali Reza\n")
    assert again.created == 0 and again.updated == 1  # the same member, not a new one


def test_control_characters_in_names_and_tags_are_removed_and_reported_by_line(
    engine: Engine, tmp_path: Path
) -> None:
    content = (
        "external_id,first_name,last_name,tags\n"
        "C1,Ali\x07\x1b[31m,Rezaei,vip\n"
        "C2,Sara,Ah\x01madi,news\x1bletter\n"
        "C3,Plain,Name,\n"
    )
    report = run(engine, tmp_path, content)
    assert report.ok and report.created == 3
    assert [(w.line, w.field, w.reason) for w in report.warnings] == [
        (2, "first_name", "control characters removed"),
        (3, "last_name", "control characters removed"),
        (3, "tags", "control characters removed"),
    ]
    assert member(engine, "C1").first_name == "Ali"
    assert member(engine, "C2").last_name == "Ahmadi"
    assert tags(engine, "C2") == {"newsletter"}


def test_a_control_character_in_an_external_id_rejects_the_row(
    engine: Engine, tmp_path: Path
) -> None:
    report = run(engine, tmp_path, "external_id,first_name\nC\x071,Ali\nC2,Sara\n")
    assert where(report) == [(2, "external_id")]
    assert set(members(engine)) == {"C2"}


def test_an_address_with_a_non_ascii_local_part_is_imported_with_a_warning(
    engine: Engine, tmp_path: Path
) -> None:
    content = (
        "external_id,email\nC1,user@münchen.de\nC2,user@xn--mnchen-3ya.de\nC3,üser@example.com\n"
    )
    report = run(engine, tmp_path, content)
    assert report.ok and report.created == 3
    assert [(w.line, w.field) for w in report.warnings] == [(4, "email")]
    assert "SMTPUTF8" in report.warnings[0].reason and "üser" not in report.warnings[0].reason
    assert member(engine, "C2").email == "user@münchen.de"
