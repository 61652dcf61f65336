"""Projects, uploads and the gallery (PRG-2, AGE-3, AGE-4). Thin: the rules are the ledger's.

A person works on their own projects only: another's, or a deleted one, answers as one that
does not exist (ACC-5). Uploads are the request's raw body with its Content-Type; the body is
read up to the size limit and no further. The gallery is public and shows an owner only by the
first letter of their display name.

Erasing one project for good (`POST /projects/{id}/erasure`, DEL-4) is for its owner, the
owner's teacher (through a current enrolment) and the operator; anyone else gets the 404 of a
project that does not exist (ACC-5). The answer is the signed erasure receipt; remixes of the
project stay.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.access import Relation
from api.http.auth import PurposeHeader, Session, require, signed_in, stated_purpose
from api.http.deletion import requester
from api.http.deps import Svc, path_id
from api.http.idempotency import IdempotencyKey, made, once
from api.http.models import ErasureOut
from api.http.problems import VALIDATION, ProblemError, not_found, responses
from api.http.work_models import (
    GalleryItem,
    MediaOut,
    NewProject,
    ProjectItem,
    ProjectOut,
    ProjectRename,
    ProjectSource,
    Remix,
    SocialPost,
)
from api.services import Services
from api.tokens import Permission, Principal, Role
from ledger.application import ERASURE_REASONS
from ledger.lifecycle import LegalHoldInPlace
from ledger.media import MEDIA_KINDS, MediaTooLarge
from ledger.project_service import ProjectNotFound
from ledger.projects import Project

log = logging.getLogger("api.http")
router = APIRouter(tags=["projects"])

Maker = Annotated[Session, Depends(signed_in(Permission.PROJECTS_WRITE))]
Reader = Annotated[Principal, Depends(require(Permission.PROGRESS_READ))]
ProjectEraser = Annotated[Principal, Depends(require(Permission.PROJECTS_WRITE))]
_WRITE = responses(401, 403, 404, 410, 422, 503)
# An upload and a download are the raw bytes, of one of the accepted types (not JSON).
_MEDIA_BYTES = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in MEDIA_KINDS}
# AUD-1: what a read of a student's projects returns of each, as its access record names it.
PROJECT_FIELDS = ("id", "kind", "name", "remixed_from", "shared_at")


def _out(project: Project, with_source: bool) -> ProjectOut:
    return ProjectOut(id=project.id, kind=project.kind, name=project.name,
                      source=project.source if with_source else None,
                      remixed_from=project.remixed_from, shared=project.shared,
                      media=[m[0] for m in project.media])  # type: ignore[misc]


@router.post("/me/projects", status_code=201, response_model=ProjectOut, responses=_WRITE)
def create_project(body: NewProject, svc: Svc, me: Maker, response: Response,
                   idempotency_key: IdempotencyKey = None) -> ProjectOut:
    project_id = once(svc, idempotency_key, me.principal, "/me/projects", "/me/projects", body,
                      lambda: svc.projects.create(me.person_id, body.kind, body.name,
                                                  body.source),
                      made, owner_id=me.person_id)
    svc.projects_view.catch_up()
    response.headers["Location"] = f"/me/projects/{project_id}"
    log.info("project created id=%s owner=%s", project_id, me.person_id)
    return _out(svc.projects.project(project_id, me.person_id), with_source=True)


@router.get("/me/projects", response_model=list[ProjectItem], responses=_WRITE)
def my_projects(svc: Svc, me: Maker, request: Request) -> list[ProjectItem]:
    out = [ProjectItem.of(p) for p in svc.projects_reader.of_owner(me.person_id)]
    # AUD-1, AUD-5: a no-op for the user; recorded when support acts as them.
    svc.record_access(me.principal, me.person_id, "/me/projects", PROJECT_FIELDS, None,
                      request.state.request_id)
    return out


@router.get("/me/projects/{project_id}", response_model=ProjectOut, responses=_WRITE)
def my_project(project_id: str, svc: Svc, me: Maker, request: Request) -> ProjectOut:
    out = _out(svc.projects.project(path_id(project_id, "project"), me.person_id), True)
    # AUD-1, AUD-5: a no-op for the user; recorded when support acts as them.
    svc.record_access(me.principal, me.person_id, "/me/projects/{project_id}",
                      sorted(out.model_fields_set), None, request.state.request_id)
    return out


@router.patch("/me/projects/{project_id}", status_code=204, responses=_WRITE)
def rename_project(project_id: str, body: ProjectRename, svc: Svc, me: Maker) -> Response:
    svc.projects.rename(me.person_id, path_id(project_id, "project"), body.name)
    svc.projects_view.catch_up()
    return Response(status_code=204)


@router.put("/me/projects/{project_id}/source", status_code=204, responses=_WRITE)
def save_source(project_id: str, body: ProjectSource, svc: Svc, me: Maker) -> Response:
    svc.projects.save_source(me.person_id, path_id(project_id, "project"), body.source)
    return Response(status_code=204)


@router.delete("/me/projects/{project_id}", status_code=204, responses=_WRITE)
def delete_project(project_id: str, svc: Svc, me: Maker) -> Response:
    """Hidden, its uploads removed; remixes of it stay (PRG-2)."""
    svc.projects.delete(me.person_id, path_id(project_id, "project"))
    svc.projects_view.catch_up()
    return Response(status_code=204)


@router.post("/projects/{project_id}/remixes", status_code=201, response_model=ProjectOut,
             responses=_WRITE)
def remix(project_id: str, body: Remix, svc: Svc, me: Maker, response: Response
          ) -> ProjectOut:
    """A copy of one's own project or of one in the gallery, pointing at its origin."""
    remix_id = svc.projects.remix(me.person_id, path_id(project_id, "project"), body.name)
    svc.projects_view.catch_up()
    response.headers["Location"] = f"/me/projects/{remix_id}"
    return _out(svc.projects.project(remix_id, me.person_id), with_source=True)


@router.post("/me/projects/{project_id}/media", status_code=201, response_model=MediaOut,
             responses=responses(401, 403, 404, 410, 413, 422, 503),
             openapi_extra={"requestBody": {"required": True, "content": _MEDIA_BYTES}})
async def upload(project_id: str, request: Request, svc: Svc, me: Maker) -> MediaOut:
    """The raw bytes of an image, sound or video, with its Content-Type (AGE-4: 13 or older,
    or under 13 in a teacher's section). Larger than the limit: 413, nothing kept."""
    limit = svc.settings.max_upload_bytes
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise MediaTooLarge(limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # The body was read without blocking; the ledger's work is blocking, so off the loop.
    stored = await run_in_threadpool(svc.projects.upload, me.person_id,
                                     path_id(project_id, "project"), bytes(data), content_type)
    log.info("upload stored media=%s project=%s size=%d", stored.media_id, project_id,
             stored.size)
    return MediaOut(id=stored.media_id, content_type=stored.content_type, size=stored.size)


@router.get("/me/media/{media_id}", response_class=Response, responses={
    **_WRITE, 200: {"content": _MEDIA_BYTES, "description": "the bytes, as uploaded"}})
def my_media(media_id: str, svc: Svc, me: Maker) -> Response:
    found = svc.projects.media.get(path_id(media_id, "media"))
    if found is None or found[0].owner_id != me.person_id:
        raise not_found("media")
    return Response(content=found[1], media_type=found[0].content_type)


@router.put("/me/projects/{project_id}/gallery", status_code=204, responses=_WRITE)
def share(project_id: str, svc: Svc, me: Maker) -> Response:
    """AGE-3: a student under 13 shares no project with uploaded media."""
    svc.projects.share_to_gallery(me.person_id, path_id(project_id, "project"))
    svc.projects_view.catch_up()
    return Response(status_code=204)


@router.delete("/me/projects/{project_id}/gallery", status_code=204, responses=_WRITE)
def unshare(project_id: str, svc: Svc, me: Maker) -> Response:
    svc.projects.unshare(me.person_id, path_id(project_id, "project"))
    svc.projects_view.catch_up()
    return Response(status_code=204)


@router.post("/me/projects/{project_id}/social-posts", status_code=204, responses=_WRITE)
def post_to_social(project_id: str, body: SocialPost, svc: Svc, me: Maker) -> Response:
    """AGE-3: nobody under 13 posts to social media."""
    svc.projects.post_to_social(me.person_id, path_id(project_id, "project"), body.network)
    return Response(status_code=204)


@router.get("/gallery", response_model=list[GalleryItem], responses=responses(422, 503))
def gallery(svc: Svc, limit: Annotated[int, Query(ge=1, le=200)] = 50,
            before: datetime | None = None) -> list[GalleryItem]:
    """Shared projects, newest first; public. Page with `before` = the last `shared_at`."""
    # No access record (AUD-1): what the owner chose to publish, no record of theirs.
    return [GalleryItem.of(c) for c in svc.projects_reader.gallery(limit, before)]


@router.get("/students/{person_id}/projects", response_model=list[ProjectItem],
            responses=responses(401, 403, 404, 410, 503))
def student_projects(person_id: str, svc: Svc, who: Reader, request: Request,
                     purpose: PurposeHeader = None) -> list[ProjectItem]:
    """A student's projects, for whoever may see their work (ACC-1: their teachers); anyone
    but the student leaves an access record (AUD-1)."""
    stated = stated_purpose(who, purpose)
    subject = path_id(person_id)
    if not svc.access.may_see_progress(who, subject):
        raise not_found()
    out = [ProjectItem.of(p) for p in svc.projects_reader.of_owner(subject)]
    svc.record_access(who, subject, "/students/{person_id}/projects", PROJECT_FIELDS, stated,
                      request.state.request_id)
    log.info("projects read id=%s role=%s purpose=%s principal=%s", subject, who.role,
             stated or "-", who.id)
    return out


@router.post("/projects/{project_id}/erasure", response_model=ErasureOut,
             responses=responses(401, 403, 404, 409, 422, 503))
def erase_project(project_id: str, svc: Svc, who: ProjectEraser,
                  reason: Annotated[str | None, Query(
                      description="the operator's reason, one of: " + ", ".join(ERASURE_REASONS)
                                  + "; the owner's and their teacher's follow from who they"
                                    " are")] = None,
                  ) -> ErasureOut:
    """DEL-4: erase one project now: its key is destroyed, so its events, name, source and
    uploads can never be read again; its owner, their other projects and remixes of it by
    others stay. For the owner, the owner's teacher, and the operator. 409 legal-hold while
    the owner is under a hold."""
    subject = path_id(project_id, "project")
    owner = svc.projects.erasable(subject).owner_id
    why = _project_erasure_reason(svc, who, subject, owner, reason)
    if svc.holds.of(owner):
        raise LegalHoldInPlace()
    receipt = svc.projects.erase(subject, requester(who), why)
    svc.projects_view.catch_up()
    log.info("project erased id=%s reason=%s principal=%s", subject, why, who.id)
    return ErasureOut.of(receipt)


def _project_erasure_reason(svc: Services, who: Principal, project_id: UUID, owner: UUID,
                            asked: str | None) -> str:
    """The receipt's reason for this caller; the 404 of no project if they may not erase
    it (ACC-5), and 422 for a reason that is not theirs to give."""
    if who.role == Role.OPERATOR:
        if asked not in ERASURE_REASONS:
            raise ProblemError(422, VALIDATION, "Invalid request",
                               "reason must be one of: " + ", ".join(ERASURE_REASONS))
        return str(asked)
    if who.subject_id == owner and who.role in (Role.STUDENT, Role.TEACHER):
        reason = "user_request"
    elif who.role == Role.TEACHER and svc.access.relation(who, owner) == Relation.TEACHER:
        reason = "teacher_request"
    else:
        raise ProjectNotFound(project_id)
    if asked is not None and asked != reason:
        raise ProblemError(422, VALIDATION, "Invalid request",
                           f"your reason is {reason}: leave it out or give that one")
    return reason
