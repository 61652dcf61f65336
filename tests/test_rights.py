"""The rights request ledger (RGT-2, RGT-3, RGT-4) through the services, on both backends, with
an injected clock: due dates 30 days after receipt, extensions (bounded at 45 days, before the
due date, with notice), the overdue report, rectification granted and refused with a statement,
restriction granted and lifted, and erasure taking it all.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from api.services import Services
from crypto import KeyErased
from ledger.application import PersonNotFound
from ledger.password_reset import Outbox
from ledger.people import InvalidRecord, Student
from ledger.rights import (
    RequestNotFound,
    RequestStateConflict,
    RightsFile,
    SubjectRestricted,
    rights_file_id,
)
from ledger.settings import Settings
from tests.conftest import Clock

PARENT = "rights.parent@home.example"


class NoticeOutbox(Outbox):
    """A mailer that can also send extension notices (the default outbox cannot)."""

    def __init__(self) -> None:
        super().__init__()
        self.extensions: list[tuple[str, UUID, date, str]] = []

    def send_rights_extension(self, address: str, request_id: UUID, due: date,
                              reason: str) -> None:
        self.extensions.append((address, request_id, due, reason))


@pytest.fixture
def outbox() -> NoticeOutbox:
    return NoticeOutbox()


@pytest.fixture
def svc(settings: Settings, clock: Clock, outbox: NoticeOutbox) -> Iterator[Services]:
    services = Services.open(settings, mailer=outbox, clock=clock)
    try:
        yield services
    finally:
        services.close()


def _student(svc: Services, name: str = "Rhea", age: str = "15") -> UUID:
    student = svc.ledger.register_student(name, age)
    svc.accounts.link_parent_email(student, PARENT)
    return student


def test_RGT_4_a_request_is_due_30_days_after_receipt(svc: Services, clock: Clock) -> None:
    student = _student(svc)
    request_id = svc.rights.file(student, "access", "subject", "p-1")
    request = svc.rights.request(student, request_id)
    assert request.received_at == clock.now
    assert request.due_at == clock.now + timedelta(days=30)
    assert request.status == "open" and request.open
    assert not request.overdue(clock.now + timedelta(days=30))
    assert request.overdue(clock.now + timedelta(days=30, seconds=1))


def test_RGT_4_the_overdue_report_lists_late_open_requests_oldest_first(
        svc: Services, clock: Clock) -> None:
    first, second, third = _student(svc, "A"), _student(svc, "B"), _student(svc, "C")
    oldest = svc.rights.file(second, "export", "subject", "p")
    clock.advance(1)
    middle = svc.rights.file(first, "erase", "parent", "p")
    clock.advance(1)
    answered = svc.rights.file(third, "access", "subject", "p")
    svc.rights.fulfil(third, answered, "custodian-1")
    clock.advance(1)
    recent = svc.rights.file(first, "object", "subject", "p")
    svc.rights_view.catch_up()
    start = clock.now - timedelta(days=3)

    reader = svc.rights_reader
    assert reader.overdue(start + timedelta(days=30)) == []
    late = reader.overdue(start + timedelta(days=31, hours=12))
    assert [e.request_id for e in late] == [oldest, middle]
    assert [e.subject_id for e in late] == [second, first]
    assert all(e.status == "open" for e in late)
    everything = reader.overdue(start + timedelta(days=60))
    assert [e.request_id for e in everything] == [oldest, middle, recent]  # not the answered


def test_RGT_4_an_extension_moves_the_due_date_with_notice_and_is_bounded(
        svc: Services, clock: Clock, outbox: NoticeOutbox) -> None:
    student = _student(svc)
    received = clock.now
    by_parent = svc.rights.file(student, "export", "parent", "p-parent")
    by_student = svc.rights.file(student, "access", "subject", "p-student")

    with pytest.raises(InvalidRecord, match="at most 45 days"):
        svc.rights.extend(student, by_parent, received + timedelta(days=45, seconds=1),
                          "the archive is offline", "custodian")
    with pytest.raises(InvalidRecord, match="later than"):
        svc.rights.extend(student, by_parent, received + timedelta(days=29), "earlier",
                          "custodian")
    with pytest.raises(InvalidRecord, match="reason"):
        svc.rights.extend(student, by_parent, received + timedelta(days=40), " ", "custodian")
    assert svc.rights.request(student, by_parent).extensions == ()  # refusals changed nothing

    clock.advance(20)
    extension = svc.rights.extend(student, by_parent, received + timedelta(days=40),
                                  "the archive is offline", "custodian")
    assert extension.notice == "mailed"
    assert outbox.extensions == [(PARENT, by_parent, (received + timedelta(days=40)).date(),
                                  "the archive is offline")]
    request = svc.rights.request(student, by_parent)
    assert request.due_at == received + timedelta(days=40)
    assert request.extensions == (extension,)
    # once more, to the limit; the student (no address on file) gets the event as notice
    assert svc.rights.extend(student, by_parent, received + timedelta(days=45), "still",
                             "custodian").notice == "mailed"
    assert svc.rights.extend(student, by_student, received + timedelta(days=31), "busy",
                             "custodian").notice == "recorded"
    assert len(outbox.extensions) == 2

    svc.rights_view.catch_up()
    assert [e.request_id for e in svc.rights_reader.overdue(received + timedelta(days=32))] == [
        by_student]
    # past its due date it can no longer be extended: it is overdue, and the report says so
    clock.advance(12)
    with pytest.raises(InvalidRecord, match="before the request falls due"):
        svc.rights.extend(student, by_student, received + timedelta(days=44), "late",
                          "custodian")


@given(days=st.floats(min_value=-5, max_value=60, allow_nan=False),
       now=st.floats(min_value=0, max_value=50, allow_nan=False))
@hsettings(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_RGT_4_an_extension_is_accepted_exactly_inside_its_bounds(
        svc: Services, clock: Clock, days: float, now: float) -> None:
    student = _student(svc)
    received = clock.now
    request_id = svc.rights.file(student, "access", "subject", "p")
    current_due = received + timedelta(days=30)
    clock.advance(now)
    wanted = received + timedelta(days=days)
    allowed = clock.now <= current_due < wanted <= received + timedelta(days=45)
    try:
        svc.rights.extend(student, request_id, wanted, "reason", "custodian")
        extended = True
    except InvalidRecord:
        extended = False
    finally:
        clock.now = received
    assert extended == allowed
    assert svc.rights.request(student, request_id).due_at == (wanted if allowed
                                                              else current_due)


def test_RGT_4_closed_requests_stay_closed(svc: Services) -> None:
    student = _student(svc)
    request_id = svc.rights.file(student, "access", "subject", "p")
    svc.rights.withdraw(student, request_id, "p")
    for act in (lambda: svc.rights.fulfil(student, request_id, "c"),
                lambda: svc.rights.refuse(student, request_id, "no", "c"),
                lambda: svc.rights.withdraw(student, request_id, "p")):
        with pytest.raises(RequestStateConflict):
            act()
    assert svc.rights.request(student, request_id).status == "withdrawn"
    with pytest.raises(RequestNotFound):
        svc.rights.request(student, uuid4())
    with pytest.raises(RequestNotFound):  # another subject's request is not found via this one
        svc.rights.fulfil(_student(svc, "Other"), request_id, "c")


def test_RGT_4_bad_requests_are_refused_and_file_nothing(svc: Services) -> None:
    student = _student(svc)
    for kind, field, value in [("complain", None, None), ("rectify", "username", "x"),
                               ("rectify", "age", "birthday"), ("rectify", "display_name", None),
                               ("rectify", "email", "a@b.example"),  # a student's: MIN-1
                               ("access", "age", "12")]:
        with pytest.raises(InvalidRecord):
            svc.rights.file(student, kind, "subject", "p", field, value)
    assert svc.ledger.aggregate(rights_file_id(student), RightsFile) is None
    with pytest.raises(PersonNotFound):
        svc.rights.file(uuid4(), "access", "subject", "p")


def test_RGT_2_a_granted_rectification_changes_the_record(svc: Services) -> None:
    student = _student(svc, "Rhea Wrongname")
    request_id = svc.rights.file(student, "rectify", "parent", "p", "display_name",
                                 "Rhea Rightname")
    assert svc.ledger.live(student).display_name == "Rhea Wrongname"  # filing changes nothing
    svc.rights.fulfil(student, request_id, "custodian")
    assert svc.ledger.live(student).display_name == "Rhea Rightname"
    assert svc.rights.request(student, request_id).status == "fulfilled"
    age = svc.rights.file(student, "rectify", "subject", "p", "age", "16")
    svc.rights.fulfil(student, age, "custodian")
    assert svc.ledger.live(student, Student).age == "16"


def test_RGT_2_a_grant_the_record_refuses_leaves_the_request_open(svc: Services) -> None:
    """A race for a student who is (by then) under 13 breaks AGE-2: nothing changes."""
    student = _student(svc, age="14")
    race = svc.rights.file(student, "rectify", "subject", "p", "race", "asian")
    svc.accounts.give_age(student, "12")
    with pytest.raises(InvalidRecord):
        svc.rights.fulfil(student, race, "custodian")
    assert svc.ledger.live(student, Student).race is None
    assert svc.rights.request(student, race).open


def test_RGT_2_after_a_refusal_a_statement_is_kept_with_the_field(svc: Services) -> None:
    student = _student(svc)
    request_id = svc.rights.file(student, "rectify", "parent", "p", "display_name", "Ray")
    with pytest.raises(RequestStateConflict):  # not refused (yet)
        svc.rights.attach_statement(student, request_id, "I disagree.", "parent")
    svc.rights.refuse(student, request_id, "the name on the roster is right", "custodian")
    assert svc.rights.request(student, request_id).outcome == "the name on the roster is right"
    with pytest.raises(InvalidRecord):
        svc.rights.attach_statement(student, request_id, "x" * 2_001, "parent")
    with pytest.raises(InvalidRecord):
        svc.rights.attach_statement(student, request_id, "from staff", "custodian")
    statement_id = svc.rights.attach_statement(student, request_id,
                                               "My name is Ray.\nPlease correct it.", "parent")
    (statement,) = svc.rights.statements_of(student)
    assert statement.id == statement_id and statement.field == "display_name"
    assert statement.text == "My name is Ray.\nPlease correct it."
    assert statement.request_id == request_id and statement.by == "parent"
    other = _student(svc, "Other")
    assert svc.rights.statements_of(other) == []


def test_RGT_3_a_granted_restriction_holds_until_lifted(svc: Services) -> None:
    student, bystander = _student(svc), _student(svc, "Bystander")
    restrict = svc.rights.file(student, "restrict", "subject", "p")
    assert not svc.rights.is_restricted(student)  # filed is not granted
    svc.rights.fulfil(student, restrict, "custodian")
    objection = svc.rights.file(student, "object", "parent", "p")
    svc.rights.fulfil(student, objection, "custodian")
    assert svc.rights.is_restricted(student) and not svc.rights.is_restricted(bystander)
    restriction = svc.rights.restriction(student)
    assert restriction is not None and restriction.requests == (restrict, objection)
    with pytest.raises(SubjectRestricted):
        svc.rights.refuse_if_restricted(student)
    svc.rights_view.catch_up()
    assert svc.rights_reader.restricted_subjects() == {student}
    assert svc.rights_reader.is_restricted(student)

    assert svc.rights.lift_restriction(student, "the objection was resolved", "custodian")
    assert not svc.rights.lift_restriction(student, "again", "custodian")
    assert not svc.rights.is_restricted(student)
    svc.rights.refuse_if_restricted(student)
    svc.rights_view.catch_up()
    assert svc.rights_reader.restricted_subjects() == set()


def test_RGT_erasure_takes_the_requests_statements_and_rows(svc: Services) -> None:
    student, bystander = _student(svc), _student(svc, "Bystander")
    request_id = svc.rights.file(student, "rectify", "parent", "p", "display_name", "Ray")
    svc.rights.refuse(student, request_id, "no", "custodian")
    svc.rights.attach_statement(student, request_id, "I disagree.", "parent")
    svc.rights.fulfil(student, svc.rights.file(student, "restrict", "subject", "p"), "c")
    kept = svc.rights.file(bystander, "access", "subject", "p")
    svc.rights_view.catch_up()

    receipt = svc.lifecycle.erase_now(student, "operator", "user_request")
    svc.catch_up()
    assert receipt.receipt.destroyed["read_model_rights"] == 3  # two requests, one restriction
    assert svc.rights.requests_of(student) == [] and svc.rights.statements_of(student) == []
    assert svc.rights_reader.of_subject(student) == []
    assert svc.rights_reader.restricted_subjects() == set()
    assert [e.request_id for e in svc.rights_reader.of_subject(bystander)] == [kept]
    with pytest.raises(KeyErased):
        svc.rights.file(student, "access", "subject", "p")
    # a rebuild from the log brings none of it back
    svc.rights_view.rebuild()
    assert svc.rights_reader.of_subject(student) == []
    assert [e.request_id for e in svc.rights_reader.of_subject(bystander)] == [kept]


def test_RGT_4_the_view_follows_extensions_and_closings(svc: Services, clock: Clock) -> None:
    student = _student(svc)
    received: datetime = clock.now
    a = svc.rights.file(student, "access", "subject", "p")
    b = svc.rights.file(student, "export", "subject", "p")
    svc.rights.extend(student, a, received + timedelta(days=40), "why", "c")
    svc.rights.refuse(student, b, "no", "c")
    svc.rights_view.catch_up()
    entries = {e.request_id: e for e in svc.rights_reader.of_subject(student)}
    assert entries[a].due_at == received + timedelta(days=40) and entries[a].status == "open"
    assert entries[b].status == "refused" and entries[b].kind == "export"
    assert svc.rights_reader.subject_of(b) == student


def test_RGT_3_no_residue_is_taken_of_a_restricted_subject(svc: Services) -> None:
    """DEL-10's de-identified residue is kept for analytics only: not of someone restricted."""
    residues = svc.lifecycle.residues
    assert residues is not None
    restricted, free = _student(svc, "Restricted"), _student(svc, "Free")
    svc.rights.fulfil(restricted, svc.rights.file(restricted, "object", "subject", "p"), "c")
    svc.lifecycle.erase_now(restricted, "operator", "user_request")
    assert residues.all() == []
    svc.lifecycle.erase_now(free, "operator", "user_request")
    assert len(residues.all()) == 1
