"""Projects and the public gallery (PRG-2, AGE-3), for listings.

One row per live project: kind, remix origin and gallery state are pseudonymous (plain); the
name rests sealed under the project's own key (`name_key`: the project's id; a project stored
before per-project keys has none, and its name rests under its owner's key, `name_key` = the
owner's id), so that erasing the project alone makes its name here unreadable too. The gallery
shows of the owner only the first letter of their display name (AGE-3), kept sealed per owner
and updated when they are renamed. A deleted project's row goes; an erased project's or
owner's rows go (live, on `SubjectErased`; on a rebuild, their events arrive as `ErasedEvent`
placeholders), and a remix of an erased project stays, since it is its own owner's.

A soft-deleted owner (DEL-1) is a row of the `hidden` table: their projects leave every listing
and the gallery, while their changes are still followed, and withdrawing the deletion (DEL-2)
shows them again as they now are, without reading sealed streams. The filter is part of each
existing query, so a read costs the same number of queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crypto import Aead, KeyErased, KeyNotFound, SubjectKeys
from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.people import Person
from ledger.projects import Project
from ledger.sealing import ErasedEvent
from projections.runner import Projection, hide, live_table, time_text


def _aad(table: str, row: str, column: str) -> bytes:
    return f"{table}|{row}|{column}".encode()


@dataclass(frozen=True)
class ProjectSummary:
    id: UUID
    owner_id: UUID
    kind: str
    name: str
    remixed_from: UUID | None
    shared_at: datetime | None


@dataclass(frozen=True)
class GalleryCard:
    """What anyone may see of a shared project: no owner id, only their initial."""

    id: UUID
    kind: str
    name: str
    owner_initial: str
    remixed_from: UUID | None
    shared_at: datetime


class Tables:
    def __init__(self, prefix: str) -> None:
        self.projects = prefix
        self.owners = f"{prefix}_owners"
        self.hidden = f"{prefix}_hidden"


class ProjectsView(Projection):
    name = "projects"

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        t = Tables(table)
        cur.execute(f"CREATE TABLE {t.projects} (project_id TEXT PRIMARY KEY,"
                    f" owner_id TEXT NOT NULL, kind TEXT NOT NULL, sealed_name {blob} NOT NULL,"
                    " name_key TEXT NOT NULL, remixed_from TEXT, shared_at TEXT)")
        cur.execute(f"CREATE INDEX {t.projects}_by_owner ON {t.projects} (owner_id)")
        cur.execute(f"CREATE INDEX {t.projects}_gallery ON {t.projects} (shared_at, project_id)")
        cur.execute(f"CREATE TABLE {t.owners} (owner_id TEXT PRIMARY KEY,"
                    f" sealed_initial {blob} NOT NULL)")
        cur.execute(f"CREATE TABLE {t.hidden} (person_id TEXT PRIMARY KEY)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        t = Tables(table)
        return {t.projects: frozenset({"project_id", "owner_id", "kind", "sealed_name",
                                       "name_key", "remixed_from", "shared_at"}),
                t.owners: frozenset({"owner_id", "sealed_initial"}),
                t.hidden: frozenset({"person_id"})}

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        t = Tables(table)
        return [(t.projects, ("owner_id", "project_id")), (t.owners, ("owner_id",)),
                (t.hidden, ("person_id",))]

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        t = Tables(table)
        if isinstance(event, ErasedEvent):
            gone = str(event.originator_id)  # a project's stream, or a person's
            cur.execute(f"DELETE FROM {t.projects} WHERE project_id = ? OR owner_id = ?",
                        (gone, gone))
            cur.execute(f"DELETE FROM {t.owners} WHERE owner_id = ?", (gone,))
            cur.execute(f"DELETE FROM {t.hidden} WHERE person_id = ?", (gone,))
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])
        elif isinstance(event, Person.DeletionRequested | Person.DeletionWithdrawn):
            hide(cur, t.hidden, event)
        elif isinstance(event, Person.Registered | Person.Renamed):
            self._owner(cur, t, event.originator_id, event.display_name)
        elif isinstance(event, Project.Created):
            pid = str(event.originator_id)
            named = self._seal_name(event.originator_id, event.owner_id, event.name)
            if named is not None:
                cur.execute(f"INSERT INTO {t.projects} (project_id, owner_id, kind, sealed_name,"
                            " name_key, remixed_from, shared_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                            (pid, str(event.owner_id), event.kind, named[1], str(named[0]),
                             str(event.remixed_from) if event.remixed_from else None))
        elif isinstance(event, Project.Renamed):
            named = self._seal_name(event.originator_id, event.owner_id, event.name)
            if named is not None:
                cur.execute(f"UPDATE {t.projects} SET sealed_name = ?, name_key = ?"
                            " WHERE project_id = ?",
                            (named[1], str(named[0]), str(event.originator_id)))
        elif isinstance(event, Project.SharedToGallery):
            cur.execute(f"UPDATE {t.projects} SET shared_at = ? WHERE project_id = ?",
                        (time_text(event.timestamp), str(event.originator_id)))
        elif isinstance(event, Project.UnsharedFromGallery):
            cur.execute(f"UPDATE {t.projects} SET shared_at = NULL WHERE project_id = ?",
                        (str(event.originator_id),))
        elif isinstance(event, Project.Deleted):
            cur.execute(f"DELETE FROM {t.projects} WHERE project_id = ?",
                        (str(event.originator_id),))

    def _owner(self, cur: Cursor, t: Tables, person_id: UUID, display_name: str) -> None:
        sealed = self._seal(person_id, "projects_owners", str(person_id), "initial",
                            display_name[:1].upper())
        if sealed is None:
            return
        cur.execute(f"DELETE FROM {t.owners} WHERE owner_id = ?", (str(person_id),))
        cur.execute(f"INSERT INTO {t.owners} (owner_id, sealed_initial) VALUES (?, ?)",
                    (str(person_id), sealed))

    def _seal_name(self, project_id: UUID, owner_id: UUID, name: str
                   ) -> tuple[UUID, bytes] | None:
        """(whose key, the sealed name): the project's own key, or its owner's for a project
        stored before per-project keys; None if that key is erased (no row, ever)."""
        try:
            aead, key_of = self.keys.opener(project_id), project_id
        except KeyErased:
            return None
        except KeyNotFound:  # a project from before per-project keys
            return self._owner_sealed_name(project_id, owner_id, name)
        return key_of, aead.seal(name.encode(), _aad("projects", str(project_id), "name"))

    def _owner_sealed_name(self, project_id: UUID, owner_id: UUID, name: str
                           ) -> tuple[UUID, bytes] | None:
        sealed = self._seal(owner_id, "projects", str(project_id), "name", name)
        return (owner_id, sealed) if sealed is not None else None

    def _seal(self, owner_id: UUID, table: str, row: str, column: str, value: str
              ) -> bytes | None:
        """Sealed under the owner's key, bound to the table (by its name without generation),
        row and column."""
        try:
            aead = self.keys.sealer(owner_id)
        except KeyErased:
            return None  # erased since the event was written: nothing to show, ever
        return aead.seal(value.encode(), _aad(table, row, column))



def _shown(hidden: str, column: str) -> str:
    """A condition: the owner in `column` is not soft-deleted (one look-up by primary key)."""
    return f"NOT EXISTS (SELECT 1 FROM {hidden} h WHERE h.person_id = {column})"


class ProjectsReader:
    """Listings and the gallery; a soft-deleted owner's projects are in none of them."""

    def __init__(self, db: Database, keys: SubjectKeys, projection: ProjectsView) -> None:
        self.db = db
        self.keys = keys
        self.projection = projection

    def of_owner(self, owner_id: UUID) -> list[ProjectSummary]:
        """Empty for a soft-deleted owner (their teachers see nothing of them, DEL-1)."""
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT p.project_id, p.owner_id, p.kind, p.sealed_name,"
                        f" p.remixed_from, p.shared_at, p.name_key FROM {t.projects} p"
                        f" WHERE p.owner_id = ? AND {_shown(t.hidden, 'p.owner_id')}"
                        " ORDER BY p.project_id", (str(owner_id),))
            rows = cur.fetchall()
        keys = self._openers([str(owner_id)] + [r[6] for r in rows])
        if keys.get(owner_id.bytes) is None:
            return []  # the owner is erased: nothing of theirs is anyone's to see
        found = []
        for r in rows:
            name = _open_name(keys, r[6], r[0], r[3])
            if name is not None:  # else erased since the row was read
                found.append(ProjectSummary(UUID(r[0]), owner_id, r[2], name,
                                            UUID(r[4]) if r[4] else None,
                                            datetime.fromisoformat(r[5]) if r[5] else None))
        return found

    def _openers(self, subject_ids: list[str]) -> dict[bytes, Aead | None]:
        """The keys of a page of rows in one key-store round trip; None for an erased one."""
        return self.keys.openers({UUID(s).bytes for s in subject_ids})

    def gallery(self, limit: int = 50, before: datetime | None = None) -> list[GalleryCard]:
        """Shared projects, newest first; page with `before` = the last card's `shared_at`."""
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(
                f"SELECT p.project_id, p.owner_id, p.kind, p.sealed_name, p.remixed_from,"
                f" p.shared_at, o.sealed_initial, p.name_key FROM {t.projects} p"
                f" LEFT JOIN {t.owners} o"
                " ON o.owner_id = p.owner_id WHERE p.shared_at IS NOT NULL AND p.shared_at < ?"
                # In the query, not after it, so that a page still holds `limit` cards.
                f" AND {_shown(t.hidden, 'p.owner_id')}"
                " ORDER BY p.shared_at DESC, p.project_id LIMIT ?",
                (time_text(before) if before else "9999", limit))
            rows = cur.fetchall()
        keys = self._openers([r[1] for r in rows] + [r[7] for r in rows])
        cards = []
        for r in rows:
            owner = keys.get(UUID(r[1]).bytes)
            name = _open_name(keys, r[7], r[0], r[3])
            if owner is None or name is None:
                continue  # erased since the row was read
            initial = (owner.open(bytes(r[6]), _aad("projects_owners", r[1], "initial"))
                       .decode() if r[6] is not None else "")
            cards.append(GalleryCard(UUID(r[0]), r[2], name, initial,
                                     UUID(r[4]) if r[4] else None,
                                     datetime.fromisoformat(r[5])))
        return cards


def _open_name(keys: dict[bytes, Aead | None], name_key: str, project_id: str,
               sealed: bytes) -> str | None:
    """A row's project name, opened with the key named in its `name_key`; None if erased."""
    aead = keys.get(UUID(name_key).bytes)
    if aead is None:
        return None
    return aead.open(bytes(sealed), _aad("projects", project_id, "name")).decode()
