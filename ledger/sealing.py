"""The mapper that seals every stored event and snapshot under its data subject's key (CRY-1).

A sealed state is `b"\\x01" || subject id (16 bytes) || nonce || ciphertext || tag`. The subject
id rides in the clear (it is a random id, and the stream id already is) so that a reader needs no
lookup to find the key. The associated data binds the sealed bytes to their subject, stream,
version and topic: a state copied to another row, version or stream fails to open.

A state whose key was erased becomes an `ErasedEvent` placeholder rather than an exception, so
that repositories see no aggregate and projections drop the subject's rows instead of stopping.
An unreachable key store raises `KeyStoreUnavailable`: never mistaken for erasure (CRY-4).
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder

from crypto import KeyErased, SealBroken, SubjectKeys

FORMAT_V1 = b"\x01"
HEADER_BYTES = 17

# Streams that belong to no person (the ledger's own records) are sealed under this subject.
LEDGER_SUBJECT = UUID("00000000-0000-4000-8000-000000000001")


class ErasedEvent:
    """Stands in for an event whose subject was erased: nothing of it can be read, ever."""

    def __init__(self, originator_id: UUID | str, originator_version: int, topic: str) -> None:
        self.originator_id = originator_id
        self.originator_version = originator_version
        self.erased_topic = topic

    def mutate(self, aggregate: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"ErasedEvent({self.originator_id}, v{self.originator_version})"


def _associated_data(header: bytes, stored: StoredEvent) -> bytes:
    return b"|".join((
        header,
        str(stored.originator_id).encode(),
        stored.originator_version.to_bytes(8, "big", signed=True),
        stored.topic.encode(),
    ))


class SealedMapper(Mapper[UUID]):
    """Build one with `SealedMapper.bound_to(keys)`: the library rebuilds mappers from their
    class alone (followers), so the key source must travel with the class."""

    keys: ClassVar[SubjectKeys]

    @classmethod
    def bound_to(cls, keys: SubjectKeys) -> type[SealedMapper]:
        return type("SealedMapper", (cls,), {"keys": keys})

    def __init__(self, transcoder: Transcoder, compressor: Any = None, cipher: Any = None) -> None:
        if cipher is not None or compressor is not None:
            raise ValueError("the sealed mapper does its own sealing: unset CIPHER_* and "
                             "COMPRESSOR_TOPIC")
        super().__init__(transcoder=transcoder)

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        plain = super().to_stored_event(domain_event)
        subject = subject_of(domain_event)
        header = FORMAT_V1 + subject.bytes
        aead = self.keys.sealer(subject)
        sealed = header + aead.seal(plain.state, _associated_data(header, plain))
        return StoredEvent(plain.originator_id, plain.originator_version, plain.topic, sealed)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        state = stored_event.state
        header = state[:HEADER_BYTES]
        if header[:1] != FORMAT_V1 or len(state) < HEADER_BYTES:
            raise MapperDeserialisationError(
                f"stored event {stored_event.originator_id} v{stored_event.originator_version}"
                " is not sealed"
            )
        subject = header[1:]
        if subject != LEDGER_SUBJECT.bytes and subject != _stream_subject(stored_event):
            # Only the stream's own subject or the ledger seals a stream (`subject_of`): any
            # other header was altered or moved here, and must not pass for an erased event.
            raise MapperDeserialisationError(
                f"stored event {stored_event.originator_id} v{stored_event.originator_version}"
                " is sealed for another stream"
            )
        try:
            aead = self.keys.opener_for_bytes(subject)
        except KeyErased:
            return ErasedEvent(  # type: ignore[return-value]
                stored_event.originator_id, stored_event.originator_version, stored_event.topic
            )
        try:
            plain = aead.open(state[HEADER_BYTES:], _associated_data(header, stored_event))
        except SealBroken as error:
            raise MapperDeserialisationError(
                f"stored event {stored_event.originator_id} v{stored_event.originator_version}"
                f" failed to open: {error}"
            ) from None
        return super().to_domain_event(StoredEvent(
            stored_event.originator_id, stored_event.originator_version, stored_event.topic, plain
        ))


def _stream_subject(stored_event: StoredEvent) -> bytes:
    originator_id = stored_event.originator_id
    return originator_id.bytes if isinstance(originator_id, UUID) else UUID(originator_id).bytes


def subject_of(event: DomainEventProtocol[UUID]) -> UUID:
    """Whose key seals this event: the stream's own subject, or the ledger's for its records."""
    if getattr(event, "sealed_for_ledger", False):
        return LEDGER_SUBJECT
    originator_id = event.originator_id
    return originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
