"""The ledger's own record that a subject was erased: ids and key facts only, no personal data.

One record stream per subject, at an id derived from the subject's id, so that recording the
same erasure twice is a no-op and a crash between destroying the key and recording it is healed
by running the erasure again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

ERASURE_NAMESPACE = UUID("3f8d1c1e-6c0e-4d8e-9a55-2b1f0e6f7a10")


class ErasureRecord(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_ledger = True  # sealed under the ledger's key, which is never erased

    @staticmethod
    def id_for(subject_id: UUID) -> UUID:
        return uuid5(ERASURE_NAMESPACE, str(subject_id))

    @classmethod
    def create_id(cls, subject_id: UUID, **_: object) -> UUID:
        return cls.id_for(subject_id)

    class SubjectErased(Aggregate.Created, Event):
        subject_id: UUID
        reason: str
        key_id: UUID | None
        kek_version: int | None
        erased_at: datetime
        receipt: dict[str, Any]  # the signed receipt (DEL-8), as `SignedReceipt.to_dict`

    @event(SubjectErased)
    def __init__(self, subject_id: UUID, reason: str, key_id: UUID | None,
                 kek_version: int | None, erased_at: datetime, receipt: dict[str, Any]
                 ) -> None:
        self.subject_id = subject_id
        self.reason = reason
        self.key_id = key_id
        self.kek_version = kek_version
        self.erased_at = erased_at
        self.receipt = receipt
