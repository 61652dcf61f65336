"""Nothing personal at rest in plaintext, and nothing of an erased subject's key left at all.

Raw bytes of every file under the var dir (SQLite files with their -wal and -shm, the KEK file)
and, on PostgreSQL, every row of every table in the test's schemas (as JSON text, bytea as hex)
are scanned for marker display names and for key material; and, for accounts, for usernames,
emails (teacher, student, parent), secret words, section names and, once their subjects are
erased, the blind-index tokens of those values.

Not scanned: PostgreSQL's own files. A deleted key row stays in its heap page until VACUUM and
in the WAL (and in backups); what makes it useless there is the KEK rotation (see test_keys).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import psycopg

from api.services import Services
from ledger.application import ErasedPerson
from ledger.identity import PARENT_EMAIL, STUDENT_EMAIL, TEACHER_EMAIL, USERNAME
from ledger.people import Person, Student, Teacher
from ledger.settings import Settings


@dataclass(frozen=True)
class Haystack:
    """Everything the ledger has at rest for one settings."""

    files: dict[str, bytes]
    rows: list[str]  # PostgreSQL rows as JSON text

    def find(self, needles: dict[str, bytes]) -> list[str]:
        """Where any needle occurs, in any of its forms: raw, hex, base64."""
        found = []
        for label, needle in needles.items():
            forms = {needle, needle.hex().encode(), base64.b64encode(needle)}
            for name, raw in self.files.items():
                found += [f"{label} in {name}" for form in forms if form in raw]
            text_forms = {form.decode("ascii", "replace") for form in forms}
            if needle.isascii():
                text_forms.add(needle.decode())
            for row in self.rows:
                found += [f"{label} in row {row[:80]}" for form in text_forms if form in row]
        return found


def haystack(settings: Settings) -> Haystack:
    files = {
        str(path.relative_to(settings.var_dir)): path.read_bytes()
        for path in Path(settings.var_dir).rglob("*") if path.is_file()
    }
    rows: list[str] = []
    if settings.backend == "postgres":
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE'",
                ([settings.schema, settings.keystore_schema],),
            ).fetchall()
            assert len(tables) >= 6  # events, snapshots, keys, tombstones, read models
            for schema, table in tables:
                rows += [r[0] for r in conn.execute(
                    f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t'  # type: ignore[arg-type]
                )]
    return Haystack(files, rows)


def _key_material(services: Services, subject: UUID) -> dict[str, bytes]:
    keys = services.ledger.keys
    stored = keys.store.load(subject)
    assert stored is not None
    data_key = keys.keyring.unwrap(stored.wrapped, subject, stored.key_id, stored.kek_version)
    return {f"DEK of {subject}": data_key, f"wrapped DEK of {subject}": stored.wrapped}


def test_no_marker_at_rest_and_nothing_of_an_erased_key_left(services: Services) -> None:
    ledger = services.ledger
    names: dict[UUID, list[str]] = {}
    for i in range(4):
        name = f"Marker-{uuid4().hex}"
        person_id = (ledger.register_teacher(name) if i == 3
                     else ledger.register_student(name, "12"))
        names[person_id] = [name]
    for person_id in list(names)[:2]:
        renamed = f"Marker-{uuid4().hex}"
        ledger.rename(person_id, renamed)
        names[person_id].append(renamed)
    services.catch_up()
    services.directory.rebuild()
    for person_id in names:
        ledger.take_snapshot(person_id)
    victim = next(iter(names))
    markers = {f"marker {m}": m.encode() for ms in names.values() for m in ms}
    victim_markers = {f"marker {m}": m.encode() for m in names[victim]}
    keys = {label: secret for pid in names
            for label, secret in _key_material(services, pid).items()}
    victim_key = _key_material(services, victim)
    data_keys = {label: secret for label, secret in keys.items() if label.startswith("DEK")}

    before = haystack(services.settings)
    # The scan can see: ids rest in plaintext (as they may), wrapped keys in the key store.
    assert before.find({"victim id": victim.hex.encode()}) or before.find(
        {"victim id": str(victim).encode()})
    assert before.find({"wrapped": victim_key[f"wrapped DEK of {victim}"]})
    assert before.find(markers) == []
    assert before.find(data_keys) == []

    ledger.erase_subject(victim, "user_request")
    services.catch_up()

    after = haystack(services.settings)
    assert after.find(victim_markers) == []
    assert after.find(victim_key) == []
    assert after.find(markers) == []
    assert after.find(data_keys) == []
    assert isinstance(ledger.person(victim), ErasedPerson)
    assert services.directory_reader.entry(victim) is None
    for person_id, history in names.items():
        if person_id == victim:
            continue
        person = ledger.person(person_id)
        assert isinstance(person, Person) and person.display_name == history[-1]
        entry = services.directory_reader.entry(person_id)
        assert entry is not None and entry.display_name == history[-1]


def _tokens_of(services: Services, values: dict[str, tuple[str, str]]) -> dict[str, bytes]:
    """The blind-index tokens of (purpose, value) pairs: what identity_index keeps."""
    return {label: services.ledger.identity.token(purpose, value)
            for label, (purpose, value) in values.items()}


def test_no_account_value_at_rest_and_no_index_row_of_the_erased_left(
        services: Services) -> None:
    """Usernames, emails (teacher, student, parent), secret words and section names: never in
    the clear at rest; after the teacher and a student are erased, not even their index tokens
    are left, in any file (events, keys, read models with identity_index, with their -wal) or
    row, and their keys are gone."""
    ledger, accounts, sections = services.ledger, services.accounts, services.sections
    tag = uuid4().hex[:12]
    teacher_email = f"teacher.{tag}@school.example"
    student_email = f"student.{tag}@example.org"
    parent_email = f"parent.{tag}@home.example"
    kept_email = f"kept.{tag}@school.example"
    password = f"Pw-{uuid4().hex}"
    teacher = accounts.sign_up_teacher(f"Teach{tag}", teacher_email, password)
    kept_teacher = accounts.sign_up_teacher(f"Keep{tag}", kept_email, password)
    accounts.attest_parental_consent(teacher)
    section_name = f"Section-{uuid4().hex}"
    kept_section_name = f"Section-{uuid4().hex}"
    section = sections.create(teacher, section_name, "csf", "2", "word")
    kept_section = sections.create(kept_teacher, kept_section_name, "csf", "2", "word")
    young = sections.create_student(teacher, section, f"Young{tag}", "7")
    student = accounts.sign_up_student(f"Older{tag}", "12", student_email, password,
                                       parent_email=parent_email)
    sections.join(student, sections.section(section).join_code)
    sections.add_student(kept_teacher, kept_section, student)
    secret = str(ledger.live(young, Student).secret)
    assert " " in secret  # two words: a needle too long to occur by chance
    usernames = {who: ledger.live(who, Person).username for who in (teacher, young, student)}
    sign_in = services.sign_in
    sign_in.with_password(teacher_email, password, region="US-WA")
    sign_in.with_password(usernames[student], password, region="US")
    sign_in.with_secret(sections.section(section).join_code, usernames[young], secret)
    services.catch_up()

    values = {
        "teacher email": teacher_email.encode(), "student email": student_email.encode(),
        "parent email": parent_email.encode(), "kept teacher email": kept_email.encode(),
        "secret words": secret.encode(), "section name": section_name.encode(),
        "kept section name": kept_section_name.encode(), "password": password.encode(),
        **{f"username {u}": u.encode() for u in usernames.values()},
        **{f"display name {n}": n.encode() for n in (f"Teach{tag}", f"Young{tag}",
                                                     f"Older{tag}")},
    }
    tokens = _tokens_of(services, {
        "teacher email token": (TEACHER_EMAIL, teacher_email),
        "student email token": (STUDENT_EMAIL, student_email),
        "parent link token": (PARENT_EMAIL, parent_email),
        **{f"username token {usernames[who]}": (USERNAME, usernames[who])
           for who in (teacher, student)},
    })
    erased = (teacher, student)
    victims_keys = {label: secret_bytes for who in erased
                    for label, secret_bytes in _key_material(services, who).items()}

    before = haystack(services.settings)
    assert before.find(values) == []
    assert set(tokens) == {label.split(" in ")[0] for label in before.find(tokens)}  # the index

    for who in erased:
        ledger.erase_subject(who, "school_request")
    services.catch_up()

    after = haystack(services.settings)
    assert after.find(values) == []
    assert after.find(tokens) == []
    assert after.find(victims_keys) == []
    # Everyone else is whole: the other teacher's section with its (erased) student's id, the
    # young student, who keeps signing in with the secret while the section is gone.
    kept = sections.section(kept_section, kept_teacher)
    assert kept.name == kept_section_name and kept.students == [student]
    assert ledger.live(young, Student).secret == secret
    assert ledger.live(kept_teacher, Teacher).email == kept_email
    for who in erased:
        assert isinstance(ledger.person(who), ErasedPerson)
