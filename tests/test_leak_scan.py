"""Nothing personal at rest in plaintext, and nothing of an erased subject's key left at all.

Raw bytes of every file under the var dir (SQLite files with their -wal and -shm, the KEK file)
and, on PostgreSQL, every row of every table in the test's schemas (as JSON text, bytea as hex)
are scanned for marker display names and for key material.

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
from ledger.people import Person
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
