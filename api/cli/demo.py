"""`ledger demo`: a narrated run of crypto-shredding, in a throwaway directory."""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from api.services import Services
from ledger.application import ErasedPerson
from ledger.settings import Settings

STUDENTS = (("Ada", "12"), ("Grace", "14"), ("Alan", "16"))


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="a narrated run: seal, erase one student, show it")
    demo.set_defaults(func=run)


def say(text: str = "") -> None:
    print(text)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ledger-demo-") as var_dir:
        services = Services.open(Settings.build(var_dir=var_dir))
        try:
            narrate(services)
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
    destroyed = ledger.erase_subject(grace, "user_request")
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
