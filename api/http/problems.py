"""Every error as `application/problem+json` (RFC 9457), with stable type URIs.

A problem never carries a submitted value: validation problems name the field and the rule
only, because request bodies hold personal data and responses end up in logs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    RecordConflictError,
)
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from crypto import KeyErased, KeyStoreUnavailable
from crypto.passwords import PasswordTooLong
from crypto.sql import DatabaseUnavailable
from ledger.accounts import SchoolNotFound
from ledger.application import AlreadyInUse, PersonNotFound
from ledger.audit import AccessNotRecorded
from ledger.enrolment import ConsentRequired, SectionNotFound
from ledger.holds import HoldNotFound
from ledger.idempotency import IdempotencyKeyReused
from ledger.lifecycle import CascadeChanged, LegalHoldInPlace, NotDeleted, RecoveryWindowClosed
from ledger.media import MediaTooLarge
from ledger.password_reset import ResetTokenInvalid
from ledger.people import InvalidRecord
from ledger.project_service import ProjectNotFound
from ledger.rights import RequestNotFound, RequestStateConflict, SubjectRestricted
from ledger.signin import ReauthenticationFailed, SignInFailed
from ledger.throttle import SignInThrottled

log = logging.getLogger("api.http")

MEDIA_TYPE = "application/problem+json"
BASE = "https://ledger.invalid/problems/"
VALIDATION = BASE + "validation"
MALFORMED_BODY = BASE + "malformed-body"
UNAUTHENTICATED = BASE + "unauthenticated"
FORBIDDEN = BASE + "forbidden"
NOT_FOUND = BASE + "not-found"
SUBJECT_ERASED = BASE + "subject-erased"
METHOD_NOT_ALLOWED = BASE + "method-not-allowed"
CONFLICT = BASE + "conflict"
KEY_STORE_UNAVAILABLE = BASE + "key-store-unavailable"
SERVICE_UNAVAILABLE = BASE + "service-unavailable"
NOT_READY = BASE + "not-ready"  # /readyz: a store, a read model's lag or a background loop
INTERNAL = BASE + "internal"
SIGN_IN_FAILED = BASE + "sign-in-failed"
TOO_MANY_ATTEMPTS = BASE + "too-many-attempts"
REAUTHENTICATION_FAILED = BASE + "reauthentication-failed"
RESET_TOKEN_INVALID = BASE + "reset-token-invalid"
UPLOAD_TOO_LARGE = BASE + "upload-too-large"
BODY_TOO_LARGE = BASE + "body-too-large"
ALREADY_IN_USE = BASE + "already-in-use"
CONSENT_REQUIRED = BASE + "consent-required"
PURPOSE_REQUIRED = BASE + "purpose-required"
RECOVERY_WINDOW_CLOSED = BASE + "recovery-window-closed"
NOT_DELETED = BASE + "not-deleted"
LEGAL_HOLD = BASE + "legal-hold"
CONFIRMATION_REQUIRED = BASE + "confirmation-required"
HOLD_NOT_FOUND = BASE + "hold-not-found"
REQUEST_STATE = BASE + "request-state"  # RGT: a closed request, a statement too early
RESTRICTED = BASE + "restricted"  # RGT-3: processing the subject restricted
ACCESS_NOT_RECORDED = BASE + "access-not-recorded"
IDEMPOTENCY_KEY_REUSED = BASE + "idempotency-key-reused"
RETRY_AFTER_SECONDS = "2"

_BIRTH_DATE_KEYS = {"birthdate": "birth_date", "dateofbirth": "date_of_birth", "dob": "dob",
                    "birthday": "birthday", "bday": "bday"}
BIRTH_DATE_DETAIL = ('Birth dates are never accepted or stored: give an age instead'
                     ' (4 to 20, or "21+") and, optionally, the date it was given (MIN-3).')
# MIN-4: a street address or phone number is never accepted. Keys are compared with case,
# digits, '_' and '-' removed; the canonical name (never the key as sent) goes in the problem.
_CONTACT_KEYS = {
    "address": "address", "homeaddress": "address", "streetaddress": "address",
    "postaladdress": "address", "mailingaddress": "address", "addressline": "address",
    "street": "street", "zip": "postal_code", "zipcode": "postal_code",
    "postcode": "postal_code", "postalcode": "postal_code",
    "phone": "phone", "phonenumber": "phone", "homephone": "phone", "cellphone": "phone",
    "mobilephone": "phone", "mobile": "phone", "mobilenumber": "phone", "cell": "phone",
    "telephone": "phone", "tel": "phone", "telephonenumber": "phone",
}
CONTACT_DETAIL = ("A street address or a phone number is never accepted (MIN-4); a teacher may"
                  " give a school instead.")

# Our own words for each pydantic error type: pydantic's messages may quote the input.
_RULES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request (see the OpenAPI schema)",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "uuid_version": "must be a UUID",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "json_invalid": "is not valid JSON",
    "json_type": "is not valid JSON",
}


class Problem(BaseModel):
    """The shape of every error response (for the OpenAPI document)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None
    request_id: str | None = None


class ProblemError(Exception):
    """Raised by routes and dependencies; rendered by `problem_response`."""

    def __init__(self, status: int, type_: str, title: str, detail: str,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(type_)
        self.status, self.type, self.title, self.detail = status, type_, title, detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(status: int, type_: str, title: str, detail: str,
                     headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}),
                        media_type=MEDIA_TYPE)


def not_found(what: str = "person") -> ProblemError:
    """One body per kind of record for "never existed", "not yours to see", "other kind" and
    "malformed id" alike (ACC-5): the body says what was looked for, never why it was not
    found."""
    return ProblemError(404, NOT_FOUND, "Not found", f"There is no such {what}.")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route can answer."""
    schema = Problem.model_json_schema()
    return {status: {"content": {MEDIA_TYPE: {"schema": schema}},
                     "description": "a problem (application/problem+json)"}
            for status in statuses}


# The problems any route with a JSON request body can answer, whatever else it lists: FastAPI
# parses the body before the route runs (and documents its own 422 shape, which is not ours).
_BODY_PROBLEMS = {
    400: "a problem (application/problem+json): the body is not valid JSON (malformed-body)",
    422: "a problem (application/problem+json): the request breaks the rules listed in"
         " `errors` (validation)",
}


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document, corrected once for every route: a route with a JSON body lists
    the 400 of a malformed body and the 422 of an invalid one, every route that may take a
    body the 413 of one over its limit (api/http/limits.py), and every 422 is a problem
    (FastAPI documents its own `HTTPValidationError` body, which this API never sends)."""
    problem = responses(422)[422]["content"]
    for path_item in openapi.get("paths", {}).values():
        for method, operation in path_item.items():
            answers = operation.setdefault("responses", {})
            if method in ("post", "put", "patch"):
                answers.setdefault("413", responses(413)[413])
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                for status, description in _BODY_PROBLEMS.items():
                    answers.setdefault(str(status), {"description": description,
                                                     "content": problem})
            if "422" in answers:
                answers["422"]["content"] = problem
    schemas = openapi.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return openapi


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


# -- rendering validation errors without their inputs --------------------------------------
def _rule(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind in _RULES:
        return _RULES[kind]
    if kind == "value_error":  # our own validators: their messages never quote the value
        return str(ctx.get("error", "is not valid"))
    if kind == "literal_error" or kind == "enum":
        return f"must be one of {ctx.get('expected', 'the listed values')}"
    if kind.startswith("datetime_"):
        return "must be a date and time with a time zone (ISO 8601)"
    if kind.startswith("date_"):
        return "must be a date (YYYY-MM-DD)"
    if kind == "timezone_aware":
        return "must carry a time zone"
    bounds = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
              "greater_than": ("more than", "gt"), "less_than": ("less than", "lt")}
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}"
    if kind in ("too_long", "too_short"):
        return f"must have {'at most' if kind.endswith('long') else 'at least'}" \
               f" {ctx.get('max_length', ctx.get('min_length'))} items"
    if kind in ("string_too_long", "string_too_short"):
        return f"must be {'at most' if kind.endswith('long') else 'at least'}" \
               f" {ctx.get('max_length', ctx.get('min_length'))} characters"
    return f"is not valid ({re.sub(r'[^a-z_]', '', kind)})"


def _birth_date_key(key: object) -> str | None:
    return _BIRTH_DATE_KEYS.get(re.sub(r"[^a-z]", "", str(key).lower()))


def _contact_key(key: object) -> str | None:
    return _CONTACT_KEYS.get(re.sub(r"[^a-z]", "", str(key).lower()))


def _field(error: Mapping[str, Any]) -> str:
    loc: Sequence[Any] = error.get("loc", ())
    if error.get("type") == "extra_forbidden":  # never echo an unknown key
        return _birth_date_key(loc[-1]) or _contact_key(loc[-1]) or str(loc[0])
    if len(loc) >= 3 and isinstance(loc[1], str) and loc[1][:1].isupper() \
            and isinstance(loc[2], str):
        return loc[2]  # a member of a union of bodies (`AttemptIn | AttemptBatch`), then ours
    if len(loc) >= 2 and isinstance(loc[1], str):
        return loc[1]  # a field or parameter name of ours
    return str(loc[0]) if loc else "request"


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    if any(e.get("type") in ("json_invalid", "json_type") for e in errors):
        return problem_response(400, MALFORMED_BODY, "Malformed request body",
                                "The request body is not valid JSON.")
    listed: list[dict[str, str]] = []
    details: list[str] = []
    for error in errors:
        field = _field(error)
        extra = error.get("type") == "extra_forbidden"
        if extra and _birth_date_key(field):
            details.append(BIRTH_DATE_DETAIL)
            item = {"field": field, "rule": "a birth date is never accepted (MIN-3)"}
        elif extra and _contact_key(field):
            details.append(CONTACT_DETAIL)
            item = {"field": field, "rule": "a street address or phone number is never accepted"
                                            " (MIN-4)"}
        else:
            item = {"field": field, "rule": _rule(error)}
        if item not in listed:
            listed.append(item)
    detail = " ".join(dict.fromkeys(details)) or "The request breaks the rules listed in errors."
    return problem_response(422, VALIDATION, "Invalid request", detail, errors=listed)


# -- handlers --------------------------------------------------------------------------------
def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidRecord, _on_invalid_record)  # type: ignore[arg-type]
    app.add_exception_handler(PersonNotFound, _on_not_found)
    app.add_exception_handler(SectionNotFound, _on_section_not_found)
    app.add_exception_handler(ProjectNotFound, _on_project_not_found)
    app.add_exception_handler(MediaTooLarge, _on_media_too_large)  # type: ignore[arg-type]
    app.add_exception_handler(SchoolNotFound, _on_school_not_found)
    app.add_exception_handler(AlreadyInUse, _on_already_in_use)  # type: ignore[arg-type]
    app.add_exception_handler(ConsentRequired, _on_consent_required)
    app.add_exception_handler(SignInFailed, _on_sign_in_failed)
    app.add_exception_handler(SignInThrottled, _on_throttled)  # type: ignore[arg-type]
    app.add_exception_handler(ReauthenticationFailed, _on_reauthentication_failed)
    app.add_exception_handler(ResetTokenInvalid, _on_reset_token_invalid)
    app.add_exception_handler(PasswordTooLong, _on_password_too_long)
    app.add_exception_handler(KeyErased, _on_erased)
    app.add_exception_handler(RecoveryWindowClosed, _on_window_closed)  # type: ignore[arg-type]
    app.add_exception_handler(NotDeleted, _on_not_deleted)
    app.add_exception_handler(LegalHoldInPlace, _on_legal_hold)
    app.add_exception_handler(CascadeChanged, _on_cascade_changed)
    app.add_exception_handler(HoldNotFound, _on_hold_not_found)
    app.add_exception_handler(RequestNotFound, _on_request_not_found)
    app.add_exception_handler(RequestStateConflict, _on_request_state)
    app.add_exception_handler(SubjectRestricted, _on_restricted)
    app.add_exception_handler(KeyStoreUnavailable, _on_key_store_unavailable)
    app.add_exception_handler(AccessNotRecorded, _on_access_not_recorded)
    app.add_exception_handler(IdempotencyKeyReused, _on_key_reused)
    # psycopg's own: a statement or lock timeout, or a pool wait that ran out, where a caller
    # reached the database without one of the wrappers above.
    for unavailable in (DatabaseUnavailable, OperationalError, InterfaceError,
                        psycopg.OperationalError):
        app.add_exception_handler(unavailable, _on_unavailable)
    for conflict in (RecordConflictError, IntegrityError):
        app.add_exception_handler(conflict, _on_conflict)


async def _on_problem(request: Request, error: ProblemError) -> JSONResponse:
    return problem_response(error.status, error.type, error.title, error.detail, error.headers,
                            **error.extra)


async def _on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
    return validation_problem(error.errors())


async def _on_invalid_record(request: Request, error: InvalidRecord) -> JSONResponse:
    return problem_response(422, VALIDATION, "Invalid request",
                            "The request breaks the rules listed in errors.",
                            errors=[{"field": error.field, "rule": error.rule}])


async def _on_not_found(request: Request, error: Exception) -> JSONResponse:
    return await _on_problem(request, not_found())


async def _on_project_not_found(request: Request, error: Exception) -> JSONResponse:
    """Another's project, a deleted one, or none: one answer (ACC-5)."""
    return await _on_problem(request, not_found("project"))


async def _on_media_too_large(request: Request, error: MediaTooLarge) -> JSONResponse:
    return problem_response(413, UPLOAD_TOO_LARGE, "Upload too large",
                            f"An upload is at most {error.limit} bytes.")


async def _on_section_not_found(request: Request, error: Exception) -> JSONResponse:
    """Another teacher's section, a section the student is not in, an unknown join code and
    an id that never was: one body (ACC-5)."""
    return await _on_problem(request, not_found("section"))


async def _on_school_not_found(request: Request, error: Exception) -> JSONResponse:
    """A school named in a request body (`school_id`): the body is wrong, not the URL."""
    return problem_response(422, VALIDATION, "Invalid request",
                            "The request breaks the rules listed in errors.",
                            errors=[{"field": "school_id", "rule": "is not a registered school"}])


# The identity index's purposes, as the request fields that carry them.
_FIELDS_OF_PURPOSE = {"student_email": "email", "teacher_email": "email",
                      "provider": "provider_subject"}


async def _on_already_in_use(request: Request, error: AlreadyInUse) -> JSONResponse:
    """Names the field only: never the value, nor whose account holds it."""
    field = _FIELDS_OF_PURPOSE.get(error.field, error.field)
    return problem_response(409, ALREADY_IN_USE, "Already in use",
                            f"The {field} given is already in use by another account.",
                            errors=[{"field": field, "rule": "is already in use"}])


async def _on_consent_required(request: Request, error: Exception) -> JSONResponse:
    return problem_response(
        403, CONSENT_REQUIRED, "Parental consent attestation required",
        "Accounts for students under 13 (or of no stated age) need your attestation that the"
        " school holds parental consent (AGE-1): record it with POST /me/attestations, then"
        " retry.")


async def _on_sign_in_failed(request: Request, error: Exception) -> JSONResponse:
    """One body whatever went wrong: unknown account, wrong password or secret, erased."""
    return problem_response(401, SIGN_IN_FAILED, "Sign-in failed",
                            "The sign-in details do not match an account.")


async def _on_throttled(request: Request, error: SignInThrottled) -> JSONResponse:
    """Says neither which count ran out (the account's, the address's, everyone's) nor whether
    the account exists."""
    return problem_response(429, TOO_MANY_ATTEMPTS, "Too many attempts",
                            "Too many failed attempts; wait before trying again.",
                            {"Retry-After": str(error.retry_after_seconds)})


async def _on_reauthentication_failed(request: Request, error: Exception) -> JSONResponse:
    return problem_response(403, REAUTHENTICATION_FAILED, "Current password required",
                            "This change needs the account's current password, in"
                            " current_password; the one given is missing or does not match.",
                            errors=[{"field": "current_password", "rule": "must match"}])


async def _on_reset_token_invalid(request: Request, error: Exception) -> JSONResponse:
    """One body for a token unknown, used, superseded, expired or of an erased account."""
    return problem_response(400, RESET_TOKEN_INVALID, "Reset token not valid",
                            "The reset token is not valid (unknown, used or expired);"
                            " request a new one.")


async def _on_password_too_long(request: Request, error: Exception) -> JSONResponse:
    """The request models refuse these first; this is the ledger's own guard, answered alike."""
    return problem_response(422, VALIDATION, "Invalid request",
                            "The request breaks the rules listed in errors.",
                            errors=[{"field": "password", "rule": str(error)}])


async def _on_window_closed(request: Request, error: RecoveryWindowClosed) -> JSONResponse:
    return problem_response(
        409, RECOVERY_WINDOW_CLOSED, "Recovery window closed",
        f"The account was deleted and its recovery window ended at"
        f" {error.ended_at.isoformat()}; it is being purged and cannot be recovered (DEL-2).",
        ended_at=error.ended_at.isoformat())


async def _on_not_deleted(request: Request, error: Exception) -> JSONResponse:
    return problem_response(409, NOT_DELETED, "Not deleted",
                            "This account has no deletion pending: there is nothing to recover.")


async def _on_legal_hold(request: Request, error: Exception) -> JSONResponse:
    return problem_response(409, LEGAL_HOLD, "Legal hold in place",
                            "A legal hold is in place on this record: it cannot be purged until"
                            " the hold is lifted (DEL-7).")


async def _on_cascade_changed(request: Request, error: Exception) -> JSONResponse:
    return problem_response(
        409, CONFIRMATION_REQUIRED, "Confirmation required",
        "This deletion also deletes the students who depend on you (DEL-5). Read the list at"
        " the preview route, then repeat the request with its confirmation value.")


async def _on_hold_not_found(request: Request, error: Exception) -> JSONResponse:
    return problem_response(404, HOLD_NOT_FOUND, "No such hold",
                            "No hold with this id is in place on this record.")


async def _on_request_not_found(request: Request, error: Exception) -> JSONResponse:
    return await _on_problem(request, not_found("rights request"))


async def _on_request_state(request: Request, error: Exception) -> JSONResponse:
    return problem_response(409, REQUEST_STATE, "Conflict", str(error))


async def _on_restricted(request: Request, error: Exception) -> JSONResponse:
    return problem_response(409, RESTRICTED, "Restricted",
                            "The student has restricted or objected to this processing (RGT-3);"
                            " it is not done until the restriction is lifted.")


async def _on_erased(request: Request, error: Exception) -> JSONResponse:
    return problem_response(410, SUBJECT_ERASED, "Subject erased",
                            "This person's records were erased and can never be read again.")


async def _on_key_store_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("key store unavailable request_id=%s", request_id(request))
    return problem_response(503, KEY_STORE_UNAVAILABLE, "Key store unavailable",
                            "The key store cannot be reached; nothing was changed. Retry later.",
                            {"Retry-After": RETRY_AFTER_SECONDS})


async def _on_access_not_recorded(request: Request, error: Exception) -> JSONResponse:
    """AUD-1: no read without its access record; nothing of the student is in the answer."""
    log.warning("access record not saved request_id=%s", request_id(request))
    return problem_response(503, ACCESS_NOT_RECORDED, "Access not recorded",
                            "The read's access record could not be saved, so nothing is"
                            " returned. Retry later.", {"Retry-After": RETRY_AFTER_SECONDS})


async def _on_key_reused(request: Request, error: Exception) -> JSONResponse:
    """Says neither what the first request was nor when: only that the key is spent."""
    return problem_response(
        422, IDEMPOTENCY_KEY_REUSED, "Idempotency key reused",
        "This Idempotency-Key was already used on this route for a different request; nothing"
        " was done. Use a new key for a new request.",
        errors=[{"field": "Idempotency-Key", "rule": "was used for a different request"}])


async def _on_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("database unavailable (%s) request_id=%s", type(error).__name__,
                request_id(request))
    return problem_response(503, SERVICE_UNAVAILABLE, "Service unavailable",
                            "A database cannot be reached. Retry later.",
                            {"Retry-After": RETRY_AFTER_SECONDS})


async def _on_conflict(request: Request, error: Exception) -> JSONResponse:
    return problem_response(409, CONFLICT, "Conflict",
                            "The record changed while this request ran; retry it.")


_HTTP = {
    400: (MALFORMED_BODY, "Malformed request body", "The request body could not be read."),
    401: (UNAUTHENTICATED, "Unauthenticated", "A valid bearer token is required."),
    403: (FORBIDDEN, "Forbidden", "This token's role does not allow this request."),
    404: (NOT_FOUND, "Not found", "There is no such resource."),
    405: (METHOD_NOT_ALLOWED, "Method not allowed", "This resource does not allow the method."),
    413: (BODY_TOO_LARGE, "Request body too large",
          "The request body is larger than this route accepts."),
}


async def _on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
    type_, title, detail = _HTTP.get(
        error.status_code, ("about:blank", "HTTP error", f"HTTP status {error.status_code}."))
    return problem_response(error.status_code, type_, title, detail, error.headers)
