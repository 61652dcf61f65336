"""Projects, uploads, the gallery and coursework over HTTP (PRG-2, PRG-3, PRG-4, AGE-3, AGE-4),
both backends: the rules again through the door a client uses."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.services import Services
from ledger.settings import Settings
from tests.test_leak_scan import haystack

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
LIMIT = 1024


@dataclasses.dataclass
class Api:
    svc: Services
    http: TestClient

    def session(self, person: UUID) -> dict[str, str]:
        kind = self.svc.ledger.live(person).kind
        issued = self.http.app.state.tokens.issue(  # type: ignore[attr-defined]
            kind, "session", timedelta(hours=1), subject_id=person)
        return {"Authorization": f"Bearer {issued.token}"}

    def call(self, method: str, url: str, auth: dict[str, str], body: Any = None) -> Any:
        return self.http.request(method, url, json=body, headers=auth)

    def upload(self, url: str, auth: dict[str, str], data: bytes, content_type: str) -> Any:
        return self.http.post(url, content=data, headers={**auth, "Content-Type": content_type})


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    services = Services.open(dataclasses.replace(settings, max_upload_bytes=LIMIT))
    with TestClient(create_app(services)) as http:
        yield Api(services, http)
    services.close()


def classroom(api: Api) -> tuple[UUID, UUID, UUID, UUID]:
    """A teacher with a section holding a 9-year-old; a 15-year-old in no section."""
    accounts, sections = api.svc.accounts, api.svc.sections
    teacher = accounts.sign_up_teacher("Ms Frizzle", "friz@school.example", "pw pw pw pw")
    accounts.attest_parental_consent(teacher)
    section = sections.create(teacher, "Period 1", "csf", "3", "word")
    child = sections.create_student(teacher, section, "Kim", "9")
    teen = api.svc.ledger.register_student("Tess", "15")
    api.svc.settle()
    return teacher, section, child, teen


def test_PRG_2_projects_remixes_and_the_gallery_over_http(api: Api) -> None:
    _, _, child, teen = classroom(api)
    kid, tess = api.session(child), api.session(teen)
    made = api.call("POST", "/me/projects", kid, {"kind": "app", "name": "Clicker",
                                                  "source": "onClick()"})
    assert made.status_code == 201, made.text
    project = made.json()["id"]
    assert api.call("POST", f"/projects/{project}/remixes", tess, {}).status_code == 404
    assert api.call("PUT", f"/me/projects/{project}/gallery", kid).status_code == 204
    remix = api.call("POST", f"/projects/{project}/remixes", tess, {"name": "Mine"}).json()
    assert (remix["remixed_from"], remix["source"]) == (project, "onClick()")

    assert api.call("DELETE", f"/me/projects/{project}", kid).status_code == 204
    assert api.call("GET", f"/me/projects/{remix['id']}", tess).json()["name"] == "Mine"
    assert api.call("GET", f"/me/projects/{project}", kid).status_code == 404
    assert api.call("PUT", f"/me/projects/{remix['id']}/gallery", tess).status_code == 204
    cards = api.http.get("/gallery").json()
    assert [(c["name"], c["owner_initial"]) for c in cards] == [("Mine", "T")]
    assert "owner_id" not in cards[0]


def test_AGE_4_and_uploads_size_and_type_over_http(api: Api) -> None:
    _, _, child, teen = classroom(api)
    loner = api.svc.ledger.register_student("Lou", "10")  # under 13, in no section
    for who, status in ((child, 201), (teen, 201), (loner, 422)):
        me = api.session(who)
        project = api.call("POST", "/me/projects", me, {"kind": "animation", "name": "Walk"}
                           ).json()["id"]
        answer = api.upload(f"/me/projects/{project}/media", me, PNG, "image/png")
        assert answer.status_code == status, answer.text
    me = api.session(teen)
    project = api.call("POST", "/me/projects", me, {"kind": "animation", "name": "Run"}
                       ).json()["id"]
    too_big = api.upload(f"/me/projects/{project}/media", me, PNG + b"\x00" * LIMIT,
                         "image/png")
    assert too_big.status_code == 413
    assert too_big.json()["type"].endswith("/upload-too-large")
    assert api.upload(f"/me/projects/{project}/media", me, PNG, "video/mp4").status_code == 422
    assert api.call("GET", f"/me/projects/{project}", me).json()["media"] == []
    stored = api.upload(f"/me/projects/{project}/media", me, PNG + b"marker-xyz",
                        "image/png").json()
    got = api.http.get(f"/me/media/{stored['id']}", headers=me)
    assert (got.status_code, got.content) == (200, PNG + b"marker-xyz")
    assert api.http.get(f"/me/media/{stored['id']}", headers=api.session(child)
                        ).status_code == 404
    assert haystack(api.svc.settings).find({"upload": b"marker-xyz"}) == []


def test_AGE_3_an_under_13_shares_no_media_and_posts_nothing_over_http(api: Api) -> None:
    _, _, child, _ = classroom(api)
    kid = api.session(child)
    project = api.call("POST", "/me/projects", kid, {"kind": "app", "name": "Pics"}
                       ).json()["id"]
    assert api.upload(f"/me/projects/{project}/media", kid, PNG, "image/png"
                      ).status_code == 201
    refused = api.call("PUT", f"/me/projects/{project}/gallery", kid)
    assert refused.status_code == 422 and "AGE-3" in refused.text
    assert api.call("POST", f"/me/projects/{project}/social-posts", kid,
                    {"network": "tiktok"}).status_code == 422


def test_PRG_3_PRG_4_coursework_over_http(api: Api) -> None:
    teacher, section, child, teen = classroom(api)
    kid, miss, tess = api.session(child), api.session(teacher), api.session(teen)
    assert api.call("POST", "/me/answers", kid, {"prompt": "csf/unit-1/reflection",
                                                 "text": "Loops repeat."}).status_code == 204
    assert api.call("POST", "/me/surveys", kid, {"survey": "csf/s1", "answers": {
        "fun": "yes"}}).status_code == 204
    answers = api.call("GET", f"/students/{child}/answers", miss).json()
    assert [a["text"] for a in answers] == ["Loops repeat."]
    tally = api.call("GET", f"/sections/{section}/surveys?survey=csf/s1", miss).json()
    assert tally == [{"question": "fun", "answers": ["yes"]}]
    assert "Kim" not in str(tally) and str(child) not in str(tally)

    for comment in ("Good start.", "Now use a loop."):
        assert api.call("POST", f"/students/{child}/feedback", miss, {
            "level": "csf/unit-1/level-2", "comment": comment}).status_code == 201
    assert api.call("GET", "/me/feedback", kid).json() == [
        {"level": "csf/unit-1/level-2", "comment": "Now use a loop.", "teacher_id": None,
         "given_at": None}]
    history = api.call("GET", f"/students/{child}/feedback", miss).json()
    assert [h["comment"] for h in history] == ["Good start.", "Now use a loop."]
    # Tess is in no section of this teacher: as if she did not exist (ACC-5)
    refused = api.call("POST", f"/students/{teen}/feedback", miss, {
        "level": "csf/unit-1/level-2", "comment": "Hi"})
    missing = api.call("POST", "/students/00000000-0000-4000-8000-000000000000/feedback",
                       miss, {"level": "csf/unit-1/level-2", "comment": "Hi"})
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["detail"] == missing.json()["detail"]
    assert api.call("GET", f"/students/{child}/answers", tess).status_code == 404


def test_DEL_4_a_project_erased_by_its_owners_teacher_over_http(api: Api) -> None:
    teacher, _, child, teen = classroom(api)
    kid, miss, tess = api.session(child), api.session(teacher), api.session(teen)
    project = api.call("POST", "/me/projects", kid, {"kind": "app", "name": "Erase me",
                                                     "source": "bye()"}).json()["id"]
    kept = api.call("POST", "/me/projects", kid, {"kind": "story", "name": "Keep me"}
                    ).json()["id"]
    assert api.call("PUT", f"/me/projects/{project}/gallery", kid).status_code == 204
    remix = api.call("POST", f"/projects/{project}/remixes", tess, {"name": "Tess's"}).json()
    # AGE-3: under 13, no upload into a shared project; so unshared again, then an upload.
    assert api.call("DELETE", f"/me/projects/{project}/gallery", kid).status_code == 204
    stored = api.upload(f"/me/projects/{project}/media", kid, PNG + b"gone-xyz",
                        "image/png").json()
    other_teacher = api.svc.accounts.sign_up_teacher("Mr Other", "other@school.example",
                                                     "pw pw pw pw")

    # Anyone else: the same 404 as a project that does not exist (ACC-5).
    missing = api.call("POST", "/projects/00000000-0000-4000-8000-000000000000/erasure", miss)
    for stranger in (tess, api.session(other_teacher)):
        refused = api.call("POST", f"/projects/{project}/erasure", stranger)
        assert refused.status_code == missing.status_code == 404
        assert refused.content == missing.content
    wrong_reason = api.call("POST", f"/projects/{project}/erasure?reason=school_request", miss)
    assert wrong_reason.status_code == 422

    erased = api.call("POST", f"/projects/{project}/erasure", miss)

    assert erased.status_code == 200, erased.text
    body = erased.json()["receipt"]
    assert (body["subject_id"], body["reason"]) == (project, "teacher_request")
    assert body["requester"].startswith("teacher:")  # the session, not a name
    signed = api.svc.ledger.receipt_of(UUID(project))
    assert signed is not None and signed.verify(api.svc.ledger.signer.public_key)
    assert api.call("GET", f"/me/projects/{project}", kid).status_code == 404
    assert api.http.get(f"/me/media/{stored['id']}", headers=kid).status_code == 404
    assert [p["id"] for p in api.call("GET", "/me/projects", kid).json()] == [kept]
    assert project not in {c["id"] for c in api.http.get("/gallery").json()}
    kept_remix = api.call("GET", f"/me/projects/{remix['id']}", tess).json()
    assert (kept_remix["remixed_from"], kept_remix["source"]) == (project, "bye()")
    assert api.call("GET", "/me", kid).status_code == 200
    # Erased: as if it never was, to everyone (the receipt stays with the privacy officer).
    assert api.call("POST", f"/projects/{project}/erasure", miss).content == missing.content
    assert haystack(api.svc.settings).find({"upload": b"gone-xyz"}) == []


def test_DEL_4_an_owner_erases_their_own_project_and_a_hold_blocks_it(api: Api) -> None:
    *_, teen = classroom(api)
    tess = api.session(teen)
    first, second = (api.call("POST", "/me/projects", tess, {"kind": "app", "name": n}
                              ).json()["id"] for n in ("One", "Two"))
    mine = api.call("POST", f"/projects/{first}/erasure", tess)
    assert mine.status_code == 200 and mine.json()["receipt"]["reason"] == "user_request"
    assert [p["id"] for p in api.call("GET", "/me/projects", tess).json()] == [second]

    hold = api.svc.holds.place(teen, "inspection request", "operator")
    assert api.call("POST", f"/projects/{second}/erasure", tess).status_code == 409
    api.svc.holds.lift(teen, hold, "closed", "operator")
    assert api.call("POST", f"/projects/{second}/erasure", tess).status_code == 200
