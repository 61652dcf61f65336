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

from crypto import Aead, KeyErased, SubjectKeys

FORMAT_V1 = b"\x01"
HEADER_BYTES = 17

# Streams that belong to no person (the ledger's own records) are sealed under this subject.
LEDGER_SUBJECT = UUID("00000000-0000-4000-8000-000000000001")
_LEDGER_BYTES = LEDGER_SUBJECT.bytes


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
        return b"".join((header, stream, _VERSIONS[version], topic_bytes))
    return b"".join((header, stream, version.to_bytes(8, "big", signed=True), topic_bytes))


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
        id_type: Any = type(originator_id)
        cls = resolve_topic(stored_event.topic)
        stream, state = _stream_bytes(originator_id), stored_event.state
        return self.open_stored(find_id_convertor(cls, id_type)(originator_id), stream,
                                stored_event.originator_version, stored_event.topic, state,
                                self._opener(state, stream))

    def _opener(self, state: bytes, stream: bytes) -> Aead | None:
        """The key named in the state's header; None if erased, or if the header is not one
        that may seal this stream (`open_stored` then says so)."""
        if not may_seal(state, stream):
            return None
        try:
            return self.keys.opener_for_bytes(state[1:HEADER_BYTES])
        except KeyErased:
            return None

    def open_stored(self, originator_id: Any, stream: bytes, version: int, topic: str,
                    state: bytes, aead: Aead | None) -> DomainEventProtocol[UUID]:
        """The domain event of a stored row, opened with `aead`, the key of the subject named
        in the row's header; `None` if that subject was erased: then an `ErasedEvent`.

        `stream` is the 16 bytes of the stream id; readers of whole pages pass cached values."""
        header = state[:HEADER_BYTES]
        if header[:1] != FORMAT_V1 or len(state) < HEADER_BYTES:
            raise MapperDeserialisationError(
                f"stored event {originator_id} v{version} is not sealed")
        if not may_seal(state, stream):
            # Only the stream's own subject or the ledger seals a stream (`subject_of`): any
            # other header was altered or moved here, and must not pass for an erased event.
            raise MapperDeserialisationError(
                f"stored event {originator_id} v{version} is sealed for another stream")
        if aead is None:
            return ErasedEvent(originator_id, version, topic)  # type: ignore[return-value]
        try:
            plain = aead.open(state[HEADER_BYTES:],
                              _associated_data(header, stream, version, topic))
            event_state: dict[str, Any] = self.transcoder.decode(plain)
        except Exception as error:
            raise MapperDeserialisationError(
                f"stored event {originator_id} v{version} failed to open: {error}") from None
        cls, class_version = self._event_class(topic)
        event_state["originator_id"] = originator_id
        event_state["originator_version"] = version
        if class_version > 1:
            from_version = event_state.pop("class_version", 1)
            while from_version < class_version:
                getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
                from_version += 1
        domain_event: Any = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event  # type: ignore[no-any-return]

    def _event_class(self, topic: str) -> tuple[type, int]:
        known = _EVENT_CLASSES.get(topic)
        if known is None:
            cls = resolve_topic(topic)
            known = _EVENT_CLASSES.setdefault(topic, (cls, getattr(cls, "class_version", 1)))
        return known


_EVENT_CLASSES: dict[str, tuple[type, int]] = {}


def may_seal(state: bytes, stream: bytes) -> bool:
    """Whether the subject named in a sealed state's header may seal the stream `stream`."""
    subject = state[1:HEADER_BYTES]
    return subject == stream or subject == _LEDGER_BYTES


def subject_of(event: DomainEventProtocol[UUID]) -> UUID:
    """Whose key seals this event: the stream's own subject, or the ledger's for its records."""
    if getattr(event, "sealed_for_ledger", False):
        return LEDGER_SUBJECT
    originator_id = event.originator_id
    return originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
