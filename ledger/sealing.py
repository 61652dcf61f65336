"""The mapper that seals every stored event and snapshot under its data subject's key (CRY-1).

A sealed state is `header || nonce (12) || ciphertext || tag (16)`. The header says whose key
sealed it: the stream's own subject (a person's stream, 1 byte), the ledger's (its own records,
1 byte), or the stream's owner (0x03 then the owner's 16-byte id: a teacher's section, whose
stream is not a person but whose content is the teacher's, so that erasing the teacher erases
it too). The associated data (`_associated_data`) binds the sealed bytes to their header,
stream, version and topic: a state copied to another row, version or stream fails to open.

A stream that must be erasable on its own although its content is a person's (a project, whose
events carry `sealed_under_own_key_for_owner`) is sealed under a key of its own, made as owned
by the person (`SubjectKeys.sealer(stream, owner=...)`), with the plain stream header 0x01.
Erasing the stream destroys its key alone; erasing the owner destroys the owner's key and every
key they own in one key-store transaction. The header need not name the owner: the key store
records it, so reading is the stream case (the replay's one key query per page is unchanged)
and a stored state carries no person's id. Streams written before, under the owner's key (0x03),
still open under it; such a stream's later events go under its own key.

A state whose key was erased becomes an `ErasedEvent` placeholder rather than an exception, so
that repositories see no aggregate and projections drop the subject's rows instead of stopping.
An unreachable key store raises `KeyStoreUnavailable`: never mistaken for erasure (CRY-4).
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from crypto import Aead, KeyErased, KeyNotFound, SubjectKeys
from ledger.transcoder import OrjsonTranscoder

# The first byte of a sealed state says whose key sealed it. The subject is never spelt out:
# it is the stream's own subject, or the ledger. So a state moved to another stream is opened
# with that stream's key and stream id, and fails to authenticate.
SEALED_FOR_STREAM = b"\x01"
SEALED_FOR_LEDGER = b"\x02"
SEALED_FOR_OWNER = b"\x03"
_OWNER_HEADER_BYTES = 17

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
        stream = _stream_bytes(originator_id)
        # A snapshot is sealed as its aggregate's events are: a section's under its owner's
        # key, not under a key made for the section's own id that erasing the owner would miss.
        marks: Any = (_event_class_of_aggregate(domain_event.topic)
                      if isinstance(domain_event, Snapshot) else domain_event)
        if getattr(marks, "sealed_for_ledger", False):
            header, aead = SEALED_FOR_LEDGER, self.keys.sealer(LEDGER_SUBJECT)
        elif getattr(marks, "sealed_for_owner", False):
            owner = _owner_of(domain_event)
            header, aead = SEALED_FOR_OWNER + owner.bytes, self.keys.sealer(owner)
        else:
            subject = originator_id if type(originator_id) is UUID else UUID(bytes=stream)
            owned_by = (_owner_of(domain_event)
                        if getattr(marks, "sealed_under_own_key_for_owner", False) else None)
            header, aead = SEALED_FOR_STREAM, self.keys.sealer(subject, owner=owned_by)
        aad = _associated_data(header, stream, version, topic)
        sealed = header + aead.seal(self.transcoder.encode(state), aad)
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
        """The key the state's header names; None if erased or if the header is unknown
        (`open_stored` then says which)."""
        subject = sealing_subject(state, stream)
        if subject is None:
            return None
        try:
            return self.keys.opener_for_bytes(subject)
        except KeyErased:
            return None
        except KeyNotFound:
            raise keyless(stream) from None

    def open_stored(self, originator_id: Any, stream: bytes, version: int, topic: str,
                    state: bytes, aead: Aead | None) -> DomainEventProtocol[UUID]:
        """The domain event of a stored row, opened with `aead`, the key of the subject named
        in the row's header; `None` if that subject was erased: then an `ErasedEvent`.

        `stream` is the 16 bytes of the stream id; readers of whole pages pass cached values."""
        header_bytes = _header_length(state)
        if header_bytes == 0:
            raise MapperDeserialisationError(
                f"stored event {originator_id} v{version} is not sealed")
        header = state[:header_bytes]
        if aead is None:
            return ErasedEvent(originator_id, version, topic)  # type: ignore[return-value]
        try:
            plain = aead.open(state[header_bytes:],
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


def sealed_mapper(keys: SubjectKeys | None, transcoder: Transcoder | None = None
                  ) -> SealedMapper:
    """The ledger's mapper: every event sealed under its subject's key from `keys`, its state
    in orjson (`OrjsonTranscoder`) unless another transcoder is given. Without keys it only
    opens rows with the keys it is handed (`open_stored`): a rebuild's worker, which can
    neither seal nor look a key up."""
    cls = SealedMapper.bound_to(keys) if keys is not None else SealedMapper
    return cls(transcoder=transcoder or OrjsonTranscoder())


def _owner_of(domain_event: DomainEventProtocol[UUID]) -> UUID:
    """The owner named in an event's `owner_id`, or in a snapshot's state."""
    if isinstance(domain_event, Snapshot):
        return UUID(str(domain_event.state["owner_id"]))
    owner: UUID = domain_event.owner_id  # type: ignore[attr-defined]
    return owner


_EVENT_CLASSES: dict[str, tuple[type, int]] = {}
_AGGREGATE_EVENTS: dict[str, type] = {}


def _event_class_of_aggregate(topic: str) -> type:
    """The base event class of the aggregate at `topic` (where its sealing marks are set)."""
    known = _AGGREGATE_EVENTS.get(topic)
    if known is None:
        aggregate = resolve_topic(topic)
        known = _AGGREGATE_EVENTS.setdefault(topic, getattr(aggregate, "Event", aggregate))
    return known


def keyless(stream: bytes) -> MapperDeserialisationError:
    """A row whose subject has neither a key nor a tombstone: forged, or the wrong key store."""
    return MapperDeserialisationError(
        f"stream {UUID(bytes=stream)} has no data key and no erasure: forged, or the key store"
        " does not belong to this event store")


def sealing_subject(state: bytes, stream: bytes) -> bytes | None:
    """The 16-byte id of the subject whose key sealed `state`, stored in stream `stream`."""
    first = state[:1]
    if first == SEALED_FOR_STREAM:
        return stream
    if first == SEALED_FOR_LEDGER:
        return _LEDGER_BYTES
    if first == SEALED_FOR_OWNER and len(state) >= _OWNER_HEADER_BYTES:
        return state[1:_OWNER_HEADER_BYTES]
    return None


def _header_length(state: bytes) -> int:
    """How many leading bytes of `state` are its header; 0 if it has no known header."""
    first = state[:1]
    if first in (SEALED_FOR_STREAM, SEALED_FOR_LEDGER):
        return 1
    if first == SEALED_FOR_OWNER and len(state) >= _OWNER_HEADER_BYTES:
        return _OWNER_HEADER_BYTES
    return 0
