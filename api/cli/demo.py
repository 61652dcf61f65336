"""`ledger demo`: a narrated run in a throwaway directory. First crypto-shredding (a student
erased by destroying her key), then the account, section and age rules of the policy at work:
a teacher signs up, the parental-consent attestation (AGE-1), generated usernames (MIN-7) and
secret words (MIN-6), a sign-in that keeps a coarse region only (MIN-5), race refused under 13
(AGE-2), a student email kept only as a keyed hash (MIN-1), what a teacher sees of her class
and another teacher does not (ACC-1, ACC-5), the consent history (AGE-5), and a teacher's
erasure taking their section with them.

Every name, address and password here is made up; the demo prints them to its own output so a
reader can follow, and writes none of them to a log.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from api.services import Services
from api.tokens import Principal, Role
from ledger.application import ErasedPerson
from ledger.enrolment import ConsentRequired, SectionNotFound
from ledger.people import InvalidRecord, Person, Student
from ledger.sealing import ErasedEvent
from ledger.settings import Settings
from ledger.signin import SignInFailed

STUDENTS = (("Ada", "12"), ("Grace", "14"), ("Alan", "16"))
TEACHER = ("Ms Rivera", "rivera@school.example", "correct horse battery")
YOUNG_CLASS = (("Mia", "8"), ("Mia", "9"), ("Léo", "8"))
OLDER_STUDENT = ("Sam", "15", "sam@home.example", "a long passphrase")
REGION = "US-WA"


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="a narrated run: seal, erase one student; then accounts, sections and the"
                     " age rules at work")
    demo.set_defaults(func=run)


def say(text: str = "") -> None:
    print(text)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ledger-demo-") as var_dir:
        services = Services.open(Settings.build(var_dir=var_dir))
        try:
            narrate(services)
            narrate_accounts(services)
        finally:
            services.close()
    return 0


def narrate(services: Services) -> None:
    ledger = services.ledger
    say("1. Three students are registered. Each gets a data key of their own.")
    ids = {name: ledger.register_student(name, age) for name, age in STUDENTS}
    for name, person_id in ids.items():
        say(f"   {name:6} -> {person_id}")

    say("\n2. What the event store holds: the envelope is plain, the state is sealed.")
    for n in ledger.recorder.select_notifications(start=None, limit=10):
        say(f"   #{n.id} {str(n.originator_id)[:8]}… v{n.originator_version} {n.topic:34}"
            f" {n.state[:20].hex()}… ({len(n.state)} bytes)")
    raw = b"".join(n.state for n in ledger.recorder.select_notifications(start=None, limit=10))
    found = any(name.encode() in raw for name in ids)
    say(f"   Does any display name appear in the stored bytes? {found}")

    services.catch_up()
    say("\n3. The student directory, a read model rebuilt from the log, opens each row with")
    say("   the student's own key:")
    for entry in services.directory_reader.entries():
        say(f"   {entry.display_name:6} age {entry.age:3} ({str(entry.id)[:8]}…)")

    grace = ids["Grace"]
    say("\n4. Grace asks to be erased. Her key is destroyed; the log is not touched.")
    destroyed = ledger.erase_subject(grace, "user_request").receipt
    say(f"   destroyed key {destroyed.key_id} (KEK v{destroyed.kek_version})"
        f" at {destroyed.erased_at:%Y-%m-%d %H:%M:%S} UTC")
    services.catch_up()

    say("\n5. Reading Grace now gives a typed 'erased' answer, not garbage, not a crash:")
    say(f"   {ledger.person(grace)!r}")
    say("   Her events are still in the log, sealed, and can never be opened again:")
    for n in ledger.recorder.select_notifications(start=None, limit=10):
        if n.originator_id == grace:
            say(f"   #{n.id} v{n.originator_version} -> {ledger.mapper.to_domain_event(n)!r}")

    say("\n6. The others are untouched:")
    for name in ("Ada", "Alan"):
        person = ledger.person(ids[name])
        assert not isinstance(person, ErasedPerson)
        say(f"   {person.display_name} is readable")
    rebuilt = services.directory.rebuild()
    say(f"\n7. The directory rebuilt from the whole log (generation {rebuilt}) has "
        f"{len(services.directory_reader.entries())} rows: Grace's never comes back.")


def _event_fields(event: Any) -> str:
    """An event's own fields (the library's envelope left out), as `name=value`."""
    skip = {"originator_id", "originator_version", "timestamp", "originator_topic"}
    return ", ".join(f"{k}={v!r}" for k, v in vars(event).items() if k not in skip)


def _bytes_on_disk(services: Services) -> bytes:
    """Every file of the demo's stores: events, read models (blind indexes among them), keys."""
    return b"".join(path.read_bytes() for path in sorted(Path(services.settings.var_dir).iterdir())
                    if path.is_file())


def _roster_row(services: Services, session: Principal, student_id: UUID) -> dict[str, Any]:
    """A row of the teacher's roster, as `GET /sections/{id}/students` builds it."""
    entry = services.directory_reader.entry(student_id)
    fields = services.access.student_fields(session, student_id)
    if entry is None:
        return {}
    return {field: getattr(entry, field) for field in sorted(fields)
            if hasattr(entry, field) and field not in ("id", "kind")}


def narrate_accounts(services: Services) -> None:
    ledger, accounts, sections = services.ledger, services.accounts, services.sections
    name, email, password = TEACHER
    say("\n-- Accounts, sections and the age rules --")
    say(f"\n8. {name} signs up with an email and a password. The password rests as a salted")
    say("   scrypt hash (MIN-6); her email is sealed under her own key (MIN-2).")
    teacher = accounts.sign_up_teacher(name, email, password)
    person = ledger.live(teacher)
    say(f"   teacher {teacher}, username {person.username!r} (generated from the name, MIN-7)")
    section_id = sections.create(teacher, "Room 4 Explorers", "csf", "3", "word")
    section = sections.section(section_id, teacher)
    say(f"   She creates a word section {section_id}, join code {section.join_code}; the")
    say("   section's stream holds student ids only and is sealed under her key.")

    say("\n9. She adds an 8-year-old before attesting to parental consent:")
    try:
        sections.create_student(teacher, section_id, "Mia", "8")
        say("   accepted?!")
    except ConsentRequired as refused:
        say(f"   refused: {refused}")
    accounts.attest_parental_consent(teacher)
    say("   She attests that the school holds parental consent (who, when, which policy).")

    say("\n10. Now she creates the class. Usernames are generated and unique: a clash gets a")
    say("    suffix (MIN-7). Each student gets secret words, made by the ledger (MIN-6):")
    young: list[Student] = []
    for student_name, age in YOUNG_CLASS:
        student: Student = ledger.live(
            sections.create_student(teacher, section_id, student_name, age), Student)
        young.append(student)
        say(f"    {student.display_name:4} age {age}: username {student.username!r:8}"
            f" secret words {student.secret!r}  ({student.id})")

    mia = young[0]
    assert mia.secret is not None
    say(f"\n11. {mia.display_name} signs in with the join code, her username and her secret words:")
    sign_in = services.sign_in
    try:
        sign_in.with_secret(section.join_code, mia.username, "wrong words", REGION)
    except SignInFailed as failed:
        say(f"    a wrong secret: {failed!r} (the same answer as an unknown username)")
    sign_in.with_secret(section.join_code, mia.username, mia.secret.upper(), REGION)
    signed_in = [e for e in ledger.history(mia.id) if isinstance(e, Person.SignedIn)][-1]
    say(f"    signed in; the event keeps {_event_fields(signed_in)} and its time:")
    say("    a country and state, never an address or an IP (MIN-5).")

    say(f"\n12. Someone records a race for {mia.display_name}, who is 8:")
    try:
        accounts.give_race(mia.id, "asian")
        say("    accepted?!")
    except InvalidRecord as refused:
        say(f"    refused: {refused}")
    sections.estimate_race(teacher, section_id, {"asian": 30, "white": 40, "hispanic": 30})
    say("    For a class of under-13s the teacher may give an estimate for the whole section")
    say(f"    instead: {sections.section(section_id).race_estimate}")

    older_name, older_age, older_email, older_password = OLDER_STUDENT
    say(f"\n13. {older_name}, {older_age}, signs up with an email and joins with the code:")
    sam_id = accounts.sign_up_student(older_name, older_age, older_email, older_password)
    sam: Student = ledger.live(sam_id, Student)
    joined = sections.join(sam_id, section.join_code)
    say(f"    student {sam_id}, username {sam.username!r}, joined section {joined}")
    say(f"    what the ledger keeps of the email: a keyed hash, {sam.email_hash[:16]}… (MIN-1)"
        if sam.email_hash else "    no email hash?!")
    on_disk = _bytes_on_disk(services)
    say("    Does the address appear in any file of the ledger (events, read models, keys)?"
        f" {older_email.encode() in on_disk}")
    signed = sign_in.with_password(older_email, older_password, "US")
    say(f"    He signs in with it all the same (found through the hash): {signed.id == sam_id}")
    accounts.give_race(sam_id, "prefer_not_to_say")
    say("    At 15 he may answer the race question himself (AGE-2): recorded.")
    try:
        accounts.give_study_contact(sam_id, older_email)
        say("    study contact accepted?!")
    except InvalidRecord as refused:
        say(f"    The study's contact is refused: {refused}")

    say(f"\n14. What {name} sees of her class: the roster read model, and only the fields a")
    say("    teacher may see (ACC-1): display name and sign-in details, never an email, race or")
    say("    gender (Sam's race was just recorded):")
    services.settle()
    rivera_session = Principal(uuid4(), Role.TEACHER, "demo", subject_id=teacher)
    for student_id in services.roster_reader.students_of_section(section_id):
        say(f"    {_roster_row(services, rivera_session, student_id)}")
    other = ledger.register_teacher("Mr Okafor")
    other_session = Principal(uuid4(), Role.TEACHER, "demo", subject_id=other)
    try:
        sections.section(section_id, other)
        say("    another teacher reads her section?!")
    except SectionNotFound as hidden:
        say(f"    Another teacher asking for her section: {type(hidden).__name__}, as for one"
            " that does not exist (ACC-5);")
    fields = services.access.student_fields(other_session, mia.id)
    say(f"    and of {mia.display_name} he may see {sorted(fields)}.")

    say("\n15. The consent history is a list of events, each with its before and after (AGE-5):")
    accounts.opt_in_to_email(teacher, True)
    accounts.opt_in_to_email(teacher, False)
    for change in accounts.consents(teacher):
        say(f"    {change.timestamp:%H:%M:%S} {change.consent:30} {change.before!r:6} ->"
            f" {change.after!r}")

    say(f"\n16. {name} is erased. Her section was sealed under her key, so it goes with her:")
    destroyed = ledger.erase_subject(teacher, "user_request").receipt
    say(f"    destroyed key {destroyed.key_id}; the teacher reads as {ledger.person(teacher)!r}")
    try:
        sections.section(section_id)
        say("    the section is still readable?!")
    except SectionNotFound as gone:
        say(f"    reading the section: {type(gone).__name__}: {gone}")
    placeholders = ledger.history(section_id)
    erased = sum(isinstance(e, ErasedEvent) for e in placeholders)
    say(f"    its {len(placeholders)} events are still in the log, {erased} of them"
        " ErasedEvent placeholders")
    services.settle()
    say(f"    the roster read model has dropped it: {services.roster_reader.section(section_id)}")
    try:
        sign_in.with_secret(section.join_code, mia.username, mia.secret, REGION)
        say("    the secret-word sign-in still works?!")
    except SignInFailed:
        say("    and its secret-word sign-in is gone with it; the students themselves remain:")
    for student in young:
        still: Person | ErasedPerson = ledger.person(student.id)
        say(f"    {student.id}: {type(still).__name__}")
