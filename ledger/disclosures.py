"""The FERPA audit trail's disclosure records (AUD-2, AUD-4).

A disclosure outside the school-official path (to another school, an auditor, a court, in a
health or safety emergency...) appends a record: to whom (the recipient party: an organisation
or a person), on which date, under which paragraph of 34 CFR 99.31 (from a fixed list: never
free text), the legitimate interest, the parties allowed to re-disclose, what was disclosed
(resource or field names) and, for a health or safety emergency (99.31(a)(10), 99.36), the
threat described. Disclosures to school officials (99.31(a)(1)) are not disclosures outside the
path: their reads are access records (ledger/audit.py).

Like an access record, each disclosure is a stream of its own, sealed under the student's key
(`sealed_for_owner`): it goes with the student's erasure (AUD-4). The recipient's name is
personal data too (it may be a person), so the audit index keeps only a keyed blind token of
the normalised name (`party_token`): "every disclosure to party P" computes P's token and looks
it up, and no name rests in the clear.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from crypto.blind_index import BlindIndex
from ledger import bounds
from ledger.application import Ledger
from ledger.people import InvalidRecord, short_text

# 34 CFR 99.31(a): the conditions under which a disclosure needs no prior consent, each with a
# short label. (a)(1), school officials with a legitimate educational interest, is left out on
# purpose: it is the school-official path itself, recorded as access records.
LEGAL_BASES: dict[str, str] = {
    "99.31(a)(2)": "officials of a school where the student seeks or intends to enrol",
    "99.31(a)(3)": "authorised representatives (Comptroller General, Attorney General,"
                   " the Secretary, state or local educational authorities)",
    "99.31(a)(4)": "financial aid the student applied for or received",
    "99.31(a)(5)": "state or local officials under a state statute (juvenile justice)",
    "99.31(a)(6)": "organisations conducting studies for the school",
    "99.31(a)(7)": "accrediting organisations",
    "99.31(a)(8)": "parents of a dependent student",
    "99.31(a)(9)": "a judicial order or lawfully issued subpoena",
    "99.31(a)(10)": "a health or safety emergency (99.36)",
    "99.31(a)(11)": "directory information (99.37)",
    "99.31(a)(12)": "the parent or the eligible student",
    "99.31(a)(13)": "a victim of a crime of violence: the final results of a disciplinary"
                    " proceeding",
    "99.31(a)(14)": "the final results of a disciplinary proceeding (violent crime or"
                    " sex offence)",
    "99.31(a)(15)": "parents of a student under 21: alcohol or drug violations",
    "99.31(a)(16)": "registered sex offender information",
}
HEALTH_OR_SAFETY = "99.31(a)(10)"
PARTY_PURPOSE = "disclosure_party"  # the blind index's purpose for recipient names

MAX_PARTY = 200
MAX_INTEREST = 500
MAX_THREAT = 1000
MAX_REDISCLOSURE_PARTIES = 20
MAX_DISCLOSED = 50
_DISCLOSED_ITEM = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # a field or resource name, as in AUD-1


def normalise_party(name: str) -> str:
    """The form whose token is indexed: case, spacing and Unicode composition do not matter
    ("Hill  County Court" and "hill county court" are one party)."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


@dataclass(frozen=True)
class Disclosure:
    """One disclosure outside the school-official path, as the caller describes it."""

    student_id: UUID
    recipient: str
    disclosed_on: date
    legal_basis: str
    legitimate_interest: str
    disclosed: Sequence[str]  # the resources or fields disclosed, e.g. "progress", "transcript"
    redisclosure_parties: Sequence[str] = field(default_factory=tuple)
    threat: str | None = None  # required for a health or safety emergency, refused otherwise


@dataclass(frozen=True)
class Discloser:
    """Who records the disclosure (an opaque principal and its role), and for which request."""

    actor_id: UUID
    actor_role: str
    request_id: str
    on_behalf_of: UUID | None = None  # AUD-5: a support session acting as this user


class ContestedStatement(Protocol):
    """RGT-2: the subject's statement on a field whose amendment was refused (the rights
    ledger's `Statement`); it goes out with the field in every disclosure of it (99.21(c))."""

    @property
    def id(self) -> UUID: ...

    @property
    def field(self) -> str: ...

    @property
    def text(self) -> str: ...


class DisclosureRecord(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID

    class Recorded(Aggregate.Created, Event):
        actor_id: UUID
        actor_role: str
        on_behalf_of: UUID | None
        recipient: str
        party_token: str  # hex of the blind token of the normalised recipient (the index key)
        disclosed_on: date
        legal_basis: str
        legitimate_interest: str
        redisclosure_parties: list[str]
        disclosed: list[str]
        threat: str | None
        statements: list[dict[str, str]]  # RGT-2: {"id", "field", "text"} sent with the fields
        request_id: str
        recorded_at: datetime

    @event(Recorded)
    def __init__(self, owner_id: UUID, actor_id: UUID, actor_role: str,
                 on_behalf_of: UUID | None, recipient: str, party_token: str,
                 disclosed_on: date, legal_basis: str, legitimate_interest: str,
                 redisclosure_parties: list[str], disclosed: list[str], threat: str | None,
                 statements: list[dict[str, str]], request_id: str,
                 recorded_at: datetime) -> None:
        self.owner_id = owner_id
        self.actor_id = actor_id
        self.actor_role = actor_role
        self.on_behalf_of = on_behalf_of
        self.recipient = recipient
        self.party_token = party_token
        self.disclosed_on = disclosed_on
        self.legal_basis = legal_basis
        self.legitimate_interest = legitimate_interest
        self.redisclosure_parties = redisclosure_parties
        self.disclosed = disclosed
        self.threat = threat
        self.statements = statements
        self.request_id = request_id
        self.recorded_at = recorded_at

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return uuid4()

    @property
    def student_id(self) -> UUID:
        return self.owner_id


def validated(disclosure: Disclosure, today: date) -> Disclosure:
    """The disclosure with its texts normalised, or `InvalidRecord` naming the field and the
    rule (never the value). Nothing is saved before this passes."""
    if disclosure.legal_basis not in LEGAL_BASES:
        raise InvalidRecord("legal_basis", "must be one of " + ", ".join(LEGAL_BASES))
    recipient = short_text("recipient", disclosure.recipient, MAX_PARTY)
    interest = short_text("legitimate_interest", disclosure.legitimate_interest, MAX_INTEREST)
    if disclosure.disclosed_on > today:
        raise InvalidRecord("disclosed_on", "must not be in the future")
    bounds.day_happened("disclosed_on", disclosure.disclosed_on, today)
    if len(disclosure.redisclosure_parties) > MAX_REDISCLOSURE_PARTIES:
        raise InvalidRecord("redisclosure_parties",
                            f"must name at most {MAX_REDISCLOSURE_PARTIES} parties")
    parties = [short_text("redisclosure_parties", p, MAX_PARTY)
               for p in disclosure.redisclosure_parties]
    if not 1 <= len(disclosure.disclosed) <= MAX_DISCLOSED or not all(
            _DISCLOSED_ITEM.match(item) for item in disclosure.disclosed):
        raise InvalidRecord("disclosed", f"must be 1-{MAX_DISCLOSED} field or resource names"
                                         " (lower-case letters, digits and '_')")
    if disclosure.legal_basis == HEALTH_OR_SAFETY:
        if disclosure.threat is None:
            raise InvalidRecord("threat", f"is required for a health or safety emergency"
                                          f" ({HEALTH_OR_SAFETY})")
        threat: str | None = short_text("threat", disclosure.threat, MAX_THREAT)
    elif disclosure.threat is not None:
        raise InvalidRecord("threat", f"is only for a health or safety emergency"
                                      f" ({HEALTH_OR_SAFETY})")
    else:
        threat = None
    return Disclosure(disclosure.student_id, recipient, disclosure.disclosed_on,
                      disclosure.legal_basis, interest, sorted(set(disclosure.disclosed)),
                      parties, threat)


class Disclosures:
    def __init__(self, ledger: Ledger, blind: BlindIndex, clock: Callable[[], datetime],
                 statements_of: Callable[[UUID], Iterable[ContestedStatement]] | None = None
                 ) -> None:
        """`statements_of`: the subject's statements on contested fields (RGT-2, the rights
        ledger's); each disclosure of such a field records the statement that went with it."""
        self.ledger = ledger
        self.blind = blind
        self.clock = clock
        self.statements_of = statements_of

    def record(self, disclosure: Disclosure, by: Discloser) -> UUID:
        """Validate and save the record (durably: committed before this returns)."""
        now = self.clock()
        checked = validated(disclosure, now.date())
        record = DisclosureRecord(
            owner_id=checked.student_id, actor_id=by.actor_id, actor_role=by.actor_role,
            on_behalf_of=by.on_behalf_of, recipient=checked.recipient,
            party_token=self.party_tokens(checked.recipient)[0],
            disclosed_on=checked.disclosed_on, legal_basis=checked.legal_basis,
            legitimate_interest=checked.legitimate_interest,
            redisclosure_parties=list(checked.redisclosure_parties),
            disclosed=list(checked.disclosed), threat=checked.threat,
            statements=self._statements(checked), request_id=by.request_id, recorded_at=now)
        self.ledger.save(record)
        return record.id

    def _statements(self, disclosure: Disclosure) -> list[dict[str, str]]:
        if self.statements_of is None:
            return []
        return [{"id": str(s.id), "field": s.field, "text": s.text}
                for s in self.statements_of(disclosure.student_id)
                if s.field in disclosure.disclosed]

    def party_tokens(self, name: str) -> list[str]:
        """The index keys of a party's name: one per live blind-index secret, newest first
        (a record made before a rotation is found under its older token)."""
        return [token.hex() for token in
                self.blind.lookup_tokens(PARTY_PURPOSE, normalise_party(name))]

    def record_of(self, record_id: UUID) -> DisclosureRecord | None:
        """A record's details, opened with the student's key (None once they are erased)."""
        found: DisclosureRecord | None = self.ledger.aggregate(record_id, DisclosureRecord)
        return found
