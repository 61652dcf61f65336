"""Request and response bodies. Requests refuse unknown fields: a birth date among them is
refused citing MIN-3, a street address or phone number citing MIN-4 (api/http/problems.py).

Only shapes here: the rules on names, ages, emails and consents are the ledger's
(`ledger.people`, `ledger.accounts`, `ledger.sections`), whose `InvalidRecord` becomes a 422
problem naming the field and the rule. Which fields of a record a caller sees is
`api.access.Access.student_fields`; `RecordOut.of` only renders those.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from crypto import passwords
from ledger import bounds
from ledger.bounds import (
    MAX_CODE_BYTES,
    MAX_CODE_WORD,
    MAX_DISPLAY_NAME,
    MAX_EMAIL,
    MAX_FREE_TEXT,
    MAX_ITEMS,
    MAX_JOIN_CODE,
    MAX_LEVEL,
    MAX_LOGIN,
    MAX_NAME,
    MAX_POLICY_VERSION,
    MAX_PROVIDER_SUBJECT,
    MAX_REASON,
    MAX_SECRET,
    MAX_TOKEN,
    MAX_USERNAME,
)
from ledger.people import Person, Student, Teacher
from ledger.progress import MAX_HINTS, MAX_SECONDS
from ledger.receipts import SignedReceipt
from ledger.schools import School
from projections.directory import DirectoryEntry
from projections.roster import SectionView


def unicode_text(value: str) -> str:
    """A lone surrogate would pass as `str` and fail only when the event is written."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _age_as_text(value: Any) -> Any:
    """Accept 12 as well as "12"; the ledger decides which ages exist."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _password_length(value: str) -> str:
    if len(value.encode("utf-8")) > passwords.MAX_PASSWORD_BYTES:
        raise ValueError(f"must be at most {passwords.MAX_PASSWORD_BYTES} bytes")
    return value


def _identifier(max_chars: int, *, spaces: bool = False) -> AfterValidator:
    """The ledger's rule for identifiers (NFKC, trimmed, nothing invisible); the field's name
    is pydantic's, the rule ours, and the value is never quoted."""
    def check(value: str) -> str:
        try:
            return bounds.identifier("value", value, max_chars, spaces=spaces)
        except bounds.InvalidRecord as refused:
            raise ValueError(refused.rule) from None
    return AfterValidator(check)


def _refusal_as_value_error(check: Any) -> AfterValidator:
    def run(value: Any) -> Any:
        try:
            return check("value", value)
        except bounds.InvalidRecord as refused:
            raise ValueError(refused.rule) from None
    return AfterValidator(run)


# A time something happened, a day it happened, a time set ahead: the ledger's ranges.
Happened = Annotated[datetime, _refusal_as_value_error(bounds.happened)]
DayHappened = Annotated[date, _refusal_as_value_error(bounds.day_happened)]
Ahead = Annotated[datetime, _refusal_as_value_error(bounds.ahead)]

# Every text field is bounded with the ledger's constants (ledger/bounds.py); the domain
# enforces the same bounds again, after normalising.
# a name of a thing: a section, a school, a district, a project
Text = Annotated[str, AfterValidator(unicode_text), Field(max_length=MAX_NAME)]
ShortText = Annotated[str, AfterValidator(unicode_text), Field(max_length=320)]
DisplayName = Annotated[str, AfterValidator(unicode_text), Field(max_length=MAX_DISPLAY_NAME)]
FreeText = Annotated[str, AfterValidator(unicode_text), Field(max_length=MAX_FREE_TEXT)]
# a value from one of the ledger's fixed lists
CodeWord = Annotated[str, AfterValidator(unicode_text), Field(max_length=MAX_CODE_WORD)]
Email = Annotated[str, Field(max_length=MAX_EMAIL), _identifier(MAX_EMAIL)]
Login = Annotated[str, Field(max_length=MAX_LOGIN), _identifier(MAX_LOGIN)]
Username = Annotated[str, Field(max_length=MAX_USERNAME), _identifier(MAX_USERNAME)]
JoinCode = Annotated[str, Field(max_length=MAX_JOIN_CODE), _identifier(MAX_JOIN_CODE)]
Secret = Annotated[str, Field(max_length=MAX_SECRET), _identifier(MAX_SECRET, spaces=True)]
ResetToken = Annotated[str, Field(max_length=MAX_TOKEN), _identifier(MAX_TOKEN)]
ProviderSubject = Annotated[str, Field(max_length=MAX_PROVIDER_SUBJECT),
                            _identifier(MAX_PROVIDER_SUBJECT)]
PolicyVersion = Annotated[str, Field(max_length=MAX_POLICY_VERSION),
                          _identifier(MAX_POLICY_VERSION)]
Password = Annotated[str, Field(max_length=passwords.MAX_PASSWORD_BYTES),
                     AfterValidator(unicode_text), AfterValidator(_password_length)]
Age = Annotated[str, BeforeValidator(_age_as_text), AfterValidator(unicode_text),
                Field(max_length=8),
                Field(description='a whole number from 4 to 20, or "21+"; never a birth date',
                      examples=["12", "21+"])]
Kind = Literal["student", "teacher"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewStudent(_Request):
    display_name: DisplayName = Field(description="free text; first names only are"
                                                  " recommended")
    age: Age
    age_given_on: DayHappened | None = Field(None, description="when the age was given"
                                                                " (default: today)")
    section_id: UUID | None = Field(
        None, description="the section to enrol the student in, at the registrar's own school"
                          " (required of a registrar; the operator may leave it out)")


class NewTeacher(_Request):
    display_name: DisplayName
    age: Age = "21+"
    age_given_on: DayHappened | None = None


class Rename(_Request):
    display_name: DisplayName


class PersonOut(BaseModel):
    id: UUID
    kind: Kind
    display_name: str
    age: str | None = Field(description="none given counts as under 13 (MIN-3)")
    age_given_on: date | None

    @classmethod
    def of(cls, person: Person) -> PersonOut:
        return cls(id=person.id, kind=person.kind,  # type: ignore[arg-type]
                   display_name=person.display_name, age=person.age,
                   age_given_on=person.age_given_on)


class ReceiptBody(BaseModel):
    """What an erasure destroyed (DEL-8): ids, codes, times and row counts; no personal data,
    never key material. Times and ids are given as the text that was signed."""

    subject_id: str
    reason: str
    requester: str
    requested_at: str | None
    erased_at: str
    key_id: str | None
    kek_version: int | None
    destroyed: dict[str, int]
    ledger_key_id: str


class ErasureOut(BaseModel):
    """The signed erasure receipt: `signature` is Ed25519 (base64) over the receipt's
    canonical form; check it with the ledger's public key (`GET /ledger/public-key`)."""

    receipt: ReceiptBody
    signature: str

    @classmethod
    def of(cls, signed: SignedReceipt) -> ErasureOut:
        return cls.model_validate(signed.to_dict())


class DirectoryItem(BaseModel):
    id: UUID
    kind: Kind
    display_name: str
    age: str | None
    registered_at: datetime

    @classmethod
    def of(cls, entry: DirectoryEntry) -> DirectoryItem:
        return cls(id=entry.id, kind=entry.kind,  # type: ignore[arg-type]
                   display_name=entry.display_name, age=entry.age,
                   registered_at=entry.registered_at)


class DirectoryPage(BaseModel):
    items: list[DirectoryItem]
    next_after: UUID | None = Field(
        description="pass as `after` for the next page; null when this page is empty")


# -- sessions and sign-up ------------------------------------------------------------------
class SignInBody(_Request):
    login: Login = Field(description="a username or an email address")
    password: Password


class ResetRequest(_Request):
    email: Email


class PasswordReset(_Request):
    token: ResetToken = Field(description="the one-time token from the reset mail")
    password: Password


class SectionSignInBody(_Request):
    """A young section's sign-in (MIN-6): the section's code, a username, the secret words or
    picture the teacher handed out."""

    join_code: JoinCode
    username: Username
    secret: Secret


class SessionOut(BaseModel):
    token: str = Field(description="a bearer token, shown once; only its hash is kept")
    expires_at: datetime
    person_id: UUID
    kind: Kind


class StudentSignUp(_Request):
    display_name: DisplayName
    age: Age
    email: Email = Field(description="kept only as a keyed hash, never returned (MIN-1)")
    password: Password
    parent_email: Email | None = Field(None, description="required under 13")
    gender: CodeWord | None = None


class TeacherSignUp(_Request):
    display_name: DisplayName
    email: Email = Field(description="kept sealed, used to write to you (MIN-2)")
    password: Password
    school_id: UUID | None = None
    email_opt_in: bool = False
    gender: CodeWord | None = None


class AccountOut(BaseModel):
    id: UUID
    kind: Kind
    username: str = Field(description="generated from the display name (MIN-7)")


# -- one's own record ----------------------------------------------------------------------
class ProfileChange(_Request):
    """Only the fields sent change; `null` clears gender or race."""

    display_name: DisplayName | None = None
    gender: CodeWord | None = None
    race: CodeWord | None = Field(None, description="students 13 or older only (AGE-2)")
    age: Age | None = None
    age_given_on: DayHappened | None = None


_CURRENT = Field(default=None, description="the account's current password (re-authentication);"
                 " not needed while the account has none")


class PasswordChange(_Request):
    password: Password
    current_password: Password | None = _CURRENT


class EmailChange(_Request):
    email: Email
    current_password: Password | None = _CURRENT


class ParentEmail(_Request):
    parent_email: Email


class ProviderLink(_Request):
    provider_subject: ProviderSubject


class OptIn(_Request):
    opted_in: bool


class StudyContact(_Request):
    contact: Email = Field(description="an email address; 18 or older only (AGE-6)")


class Attestation(_Request):
    policy_version: PolicyVersion


class SchoolChoice(_Request):
    school_id: UUID | None


class Consent(BaseModel):
    """AGE-5: one change of a consent, with its state before and after."""

    consent: str
    before: Any
    after: Any
    at: datetime


class RecordOut(BaseModel):
    """A person's record; only the fields the caller may see are present."""

    id: UUID | None = None
    kind: Kind | None = None
    display_name: str | None = None
    username: str | None = None
    login_type: str | None = None
    age: str | None = None
    age_given_on: date | None = None
    gender: str | None = None
    race: str | None = None
    email_on_file: bool | None = Field(None, description="a student's email is never shown"
                                                         " (MIN-1)")
    email: str | None = Field(None, description="a teacher's own, to themself only")
    parent_email: str | None = None
    secret_kind: str | None = None
    secret: str | None = None
    school_id: UUID | None = None
    consents: dict[str, Any] | None = None
    last_sign_in: dict[str, str | None] | None = Field(
        None, description="method and coarse region only (MIN-5)")

    @classmethod
    def of(cls, person: Person, fields: frozenset[str] | None = None) -> RecordOut:
        """`person`'s record cut to `fields` (every field of theirs when None)."""
        values: dict[str, Any] = {
            "id": person.id, "kind": person.kind, "display_name": person.display_name,
            "username": person.username, "login_type": person.login_type,
            "age": person.age, "age_given_on": person.age_given_on, "gender": person.gender,
            "consents": dict(person.consents),
        }
        if isinstance(person.last_signed_in, (list, tuple)):
            method, region = person.last_signed_in
            values["last_sign_in"] = {"method": method, "region": region}
        if isinstance(person, Student):
            values.update(race=person.race, email_on_file=person.email_hash is not None,
                          parent_email=person.consent("parent_email"),
                          secret_kind=person.secret_kind, secret=person.secret)
        if isinstance(person, Teacher):
            values.update(email=person.email, school_id=person.school_id)
        if fields is not None:
            values = {k: v for k, v in values.items() if k in fields}
        return cls(**values)

    @classmethod
    def of_entry(cls, entry: DirectoryEntry, fields: frozenset[str]) -> RecordOut:
        """A roster row from the directory (a read model: no stream replayed per student)."""
        values: dict[str, Any] = {
            "id": entry.id, "kind": entry.kind, "display_name": entry.display_name,
            "username": entry.username, "login_type": entry.login_type, "age": entry.age,
            "secret_kind": entry.secret_kind, "secret": entry.secret}
        return cls(**{k: v for k, v in values.items() if k in fields})


# -- sections ------------------------------------------------------------------------------
class NewSection(_Request):
    name: Text
    course: CodeWord
    grade: CodeWord
    login_type: CodeWord = Field(description="email, word or picture")


class SectionChange(_Request):
    name: Text | None = None
    course: CodeWord | None = None
    grade: CodeWord | None = None


class NewSectionStudent(_Request):
    display_name: DisplayName
    age: Age | None = Field(None, description="none given counts as under 13 (MIN-3)")
    age_given_on: DayHappened | None = None
    gender: CodeWord | None = None


class RaceEstimate(_Request):
    """AGE-2: a class of under-13s, as whole percents per race code; never per student."""

    distribution: dict[CodeWord, Annotated[int, Field(ge=0, le=100)]] = Field(
        max_length=MAX_ITEMS)


class JoinSection(_Request):
    join_code: JoinCode


class SectionOut(BaseModel):
    id: UUID
    teacher_id: UUID
    name: str
    course: str
    grade: str
    login_type: str | None = None
    join_code: str | None = Field(None, description="for the section's teacher only")
    student_count: int | None = None

    @classmethod
    def of(cls, view: SectionView, teacher: bool) -> SectionOut:
        return cls(id=view.id, teacher_id=view.teacher_id, name=view.name, course=view.course,
                   grade=view.grade, login_type=view.login_type if teacher else None,
                   join_code=view.join_code if teacher else None,
                   student_count=view.student_count if teacher else None)


class Joined(BaseModel):
    section_id: UUID


class SecretOut(BaseModel):
    """MIN-6: a new generated secret, for the teacher to hand to the student."""

    student_id: UUID
    secret_kind: str | None
    secret: str


class SecretUnderAttack(BaseModel):
    """A student of the section whose secret is being guessed at: the failed sign-ins to
    their account not yet forgotten. Nothing of who tried, nor from where."""

    student_id: UUID
    failed_sign_ins: int


# -- schools -------------------------------------------------------------------------------
class NewSchool(_Request):
    name: Text
    district: Text
    school_type: CodeWord


class SchoolOut(BaseModel):
    id: UUID
    name: str
    district: str
    district_id: UUID
    school_type: str

    @classmethod
    def of(cls, school: School) -> SchoolOut:
        return cls(id=school.id, name=school.name, district=school.district,
                   district_id=school.district_id, school_type=school.school_type)


class RosterMember(BaseModel):
    id: UUID
    display_name: str


class RosterSection(BaseModel):
    id: UUID
    teacher_id: UUID
    name: str
    course: str
    grade: str
    students: list[RosterMember]


class SchoolRoster(BaseModel):
    school_id: UUID
    sections: list[RosterSection]


# -- progress (PRG-1) -------------------------------------------------------------------------
Result = Literal["failed", "solved", "optimal"]


class AttemptIn(_Request):
    """One try at a level. The code and answers rest sealed under the student's key."""

    level: Annotated[str, Field(max_length=MAX_LEVEL)] = Field(
        examples=["csf-2024/unit-3/lesson-2/level-5"])
    result: Result
    attempted_at: Happened | None = Field(
        None, description="ISO 8601 with a time zone (default: now)")
    seconds: int | None = Field(None, ge=0, le=MAX_SECONDS, description="time to completion")
    hints: int = Field(0, ge=0, le=MAX_HINTS)
    code: Annotated[str, AfterValidator(unicode_text), Field(max_length=MAX_CODE_BYTES)] = ""
    answers: dict[Annotated[str, AfterValidator(unicode_text), Field(max_length=200)],
                  FreeText] = Field(default_factory=dict, max_length=MAX_ITEMS,
                                    description="assessment question -> answer")


class AttemptBatch(_Request):
    """Up to 500 attempts, recorded all together or, if one is refused, none."""

    attempts: list[AttemptIn] = Field(min_length=1, max_length=500)


class LevelOut(BaseModel):
    tries: int
    best: Result
    last_at: datetime


class StudentProgressOut(BaseModel):
    student_id: UUID
    levels: dict[str, LevelOut]

    @classmethod
    def of(cls, student_id: UUID, levels: dict[str, Any]) -> StudentProgressOut:
        return cls(student_id=student_id, levels={
            level: LevelOut(tries=p.tries, best=p.best, last_at=p.last_at)
            for level, p in levels.items()})


class GridStudent(BaseModel):
    id: UUID
    display_name: str
    levels: dict[str, LevelOut]


class SectionProgressOut(BaseModel):
    section_id: UUID
    students: list[GridStudent]


class CountsOut(BaseModel):
    levels: int
    solved: int
    optimal: int
    attempts: int


class ReportStudent(BaseModel):
    id: UUID
    display_name: str
    section_id: UUID
    teacher_id: UUID
    grade: str
    counts: CountsOut


class ReportGroup(BaseModel):
    key: str
    students: int
    counts: CountsOut


class SchoolProgressOut(BaseModel):
    school_id: UUID
    students: list[ReportStudent]
    by_section: list[ReportGroup]
    by_teacher: list[ReportGroup]
    by_grade: list[ReportGroup]
    school: CountsOut


# -- the deletion lifecycle (DEL-1..9) -------------------------------------------------------
class PersonRef(BaseModel):
    id: UUID
    display_name: str


class DeletionPreview(BaseModel):
    """DEL-5: what deleting this account does, before it is done."""

    deletes: list[PersonRef] = Field(description="accounts deleted with this one: students who"
                                                  " depend on this teacher")
    unenrols: list[PersonRef] = Field(description="students who only lose this teacher's"
                                                   " sections")
    confirmation: str | None = Field(description="send as `confirmation` to delete exactly"
                                                 " this list; null when nobody goes with you")
    recoverable_for_days: int


class DeletionOut(BaseModel):
    deleted: list[UUID]
    recoverable_until: datetime


class RecoveryOut(BaseModel):
    recovered: list[UUID]


class RemovalPreview(BaseModel):
    """DEL-5: removing this student from the section deletes their account when they depend
    on this teacher alone (no personal login, in no other teacher's section)."""

    deletes_account: bool
    confirmation: str | None


class HoldIn(_Request):
    reason: Annotated[str, AfterValidator(unicode_text), Field(min_length=1,
                                                               max_length=MAX_REASON)]


class HoldOut(BaseModel):
    id: UUID
    reason: str
    placed_by: str
    placed_at: datetime


class PublicKeyOut(BaseModel):
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str
    public_key: str = Field(description="base64 of the raw 32-byte public key")


class ReceiptPage(BaseModel):
    items: list[ErasureOut]
    next_after: int | None = Field(description="pass as `after` for the next page")


class ErasuresOut(BaseModel):
    """Signed receipts of erasures made together (a teacher and the students who depended
    on them)."""

    items: list[ErasureOut]


# -- the audit trail (AUD-1, AUD-3) ------------------------------------------------------------
class AccessRecordOut(BaseModel):
    record_id: UUID
    actor_id: UUID = Field(description="the principal (a session or a staff token), never a name")
    actor_role: str
    purpose: str
    read_at: datetime
    resource: str
    fields: list[str]


class AccessRecordPage(BaseModel):
    items: list[AccessRecordOut]
    next_after: str | None = Field(description="pass as `after` for the next page")
