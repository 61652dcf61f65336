"""The mapper that seals every stored event and snapshot under its data subject's key (CRY-1).

A sealed state is `b"\\x01" || subject id (16 bytes) || nonce || ciphertext || tag`. The subject
id rides in the clear (it is a random id, and the stream id already is) so that a reader needs no
lookup to find the key. The associated data (`_associated_data`) binds the sealed bytes to their
subject, stream, version and topic: a state copied to another row, version or stream fails to
open.

A state whose key was erased becomes an `ErasedEvent` placeholder rather than an exception, so
that repositories see no aggregate and projections drop the subject's rows instead of stopping.
An unreachable key store raises `KeyStoreUnavailable`: never mistaken for erasure (CRY-4).
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from crypto import KeyErased, SubjectKeys

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


_VERSIONS = [v.to_bytes(8, "big", signed=True) for v in range(4096)]
_TOPICS: dict[str, bytes] = {}


def _stream_bytes(originator_id: UUID | str) -> bytes:
    if type(originator_id) is UUID:
        return originator_id.bytes
    return UUID(str(originator_id)).bytes


def _associated_data(header: bytes, stream: bytes, version: int, topic: str) -> bytes:
    """header || stream id (16) || version (8) || topic: fixed widths, then the topic."""
    topic_bytes = _TOPICS.get(topic)
    if topic_bytes is None:
        topic_bytes = _TOPICS.setdefault(topic, topic.encode())
    if 0 <= version < len(_VERSIONS):
        return header + stream + _VERSIONS[version] + topic_bytes
    return header + stream + version.to_bytes(8, "big", signed=True) + topic_bytes


class SealedMapper(Mapper[UUID]):
    """Build one with `SealedMapper.bound_to(keys)`: the library rebuilds mappers from their
    class alone (followers), so the key source must travel with the class.

    Both directions do the base mapper's work inline (same state dict, same topic, same
    upcasting) rather than building a second `StoredEvent`: replays spend their time here."""

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
        cls = type(domain_event)
        topic = get_topic(cls)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        version = state.pop("originator_version")
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        subject = subject_of(domain_event)
        header = FORMAT_V1 + subject.bytes
        aad = _associated_data(header, _stream_bytes(originator_id), version, topic)
        sealed = header + self.keys.sealer(subject).seal(self.transcoder.encode(state), aad)
        return StoredEvent(originator_id, version, topic, sealed)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        originator_id = stored_event.originator_id
        version = stored_event.originator_version
        topic = stored_event.topic
        state = stored_event.state
        header = state[:HEADER_BYTES]
        if header[:1] != FORMAT_V1 or len(state) < HEADER_BYTES:
            raise MapperDeserialisationError(
                f"stored event {originator_id} v{version} is not sealed")
        subject = header[1:]
        stream = _stream_bytes(originator_id)
        if subject != stream and subject != LEDGER_SUBJECT.bytes:
            # Only the stream's own subject or the ledger seals a stream (`subject_of`): any
            # other header was altered or moved here, and must not pass for an erased event.
            raise MapperDeserialisationError(
                f"stored event {originator_id} v{version} is sealed for another stream")
        try:
            aead = self.keys.opener_for_bytes(subject)
        except KeyErased:
            return ErasedEvent(originator_id, version, topic)  # type: ignore[return-value]
        try:
            plain = aead.open(state[HEADER_BYTES:],
                              _associated_data(header, stream, version, topic))
            event_state: dict[str, Any] = self.transcoder.decode(plain)
        except Exception as error:
            raise MapperDeserialisationError(
                f"stored event {originator_id} v{version} failed to open: {error}") from None
        cls = resolve_topic(topic)
        id_type: Any = type(originator_id)
        event_state["originator_id"] = find_id_convertor(cls, id_type)(originator_id)
        event_state["originator_version"] = version
        class_version = getattr(cls, "class_version", 1)
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event  # type: ignore[no-any-return]


def subject_of(event: DomainEventProtocol[UUID]) -> UUID:
    """Whose key seals this event: the stream's own subject, or the ledger's for its records."""
    if getattr(event, "sealed_for_ledger", False):
        return LEDGER_SUBJECT
    originator_id = event.originator_id
    return originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
