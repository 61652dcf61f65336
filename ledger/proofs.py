"""Proofs an auditor can check with nothing but the ledger's public key (LED-2).

An inclusion proof carries the stored event as it rests (ids, topic and the sealed state: no
plaintext), the audit path, and the signed tree head it is proved against: the checker
recomputes the leaf from the event, the root from the path, and checks the head's signature.
A consistency proof carries two signed heads and the hashes that show the first tree is a
prefix of the second. Both are JSON; `check` needs no database and no data key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from crypto.merkle import leaf_hash, verify_consistency, verify_inclusion
from crypto.signing import LedgerPublicKey
from ledger.merkle_log import LOG_NAME, MerkleLog, TreeHead, event_leaf


class ProofMalformed(ValueError):
    """A proof document that is not one: say what, never echo it."""


@dataclass(frozen=True)
class StoredEventRef:
    """One stored event, as it rests: what its leaf is made of."""

    application: str
    notification_id: int
    stream_id: UUID
    version: int
    topic: str
    state: bytes  # sealed

    def leaf(self) -> bytes:
        return leaf_hash(event_leaf(self.application, self.notification_id, self.stream_id.bytes,
                                    self.version, self.topic, self.state))

    def to_dict(self) -> dict[str, Any]:
        return {"application": self.application, "notification_id": self.notification_id,
                "stream_id": str(self.stream_id), "version": self.version, "topic": self.topic,
                "state": base64.b64encode(self.state).decode()}

    @classmethod
    def from_dict(cls, d: Any) -> StoredEventRef:
        return cls(d["application"], _count(d["notification_id"]), UUID(d["stream_id"]),
                   _count(d["version"]), _text(d["topic"]),
                   base64.b64decode(d["state"], validate=True))


@dataclass(frozen=True)
class InclusionProof:
    event: StoredEventRef
    leaf_index: int
    path: list[bytes]
    head: TreeHead

    def check(self, public_key: LedgerPublicKey) -> bool:
        """The head is the ledger's, and the event is at `leaf_index` of its tree."""
        return self.head.verify(public_key) and verify_inclusion(
            self.event.leaf(), self.leaf_index, self.head.tree_size, self.path,
            self.head.root_hash)

    def to_dict(self) -> dict[str, Any]:
        return {"log": LOG_NAME, "kind": "inclusion", "event": self.event.to_dict(),
                "leaf_index": self.leaf_index, "path": [h.hex() for h in self.path],
                "head": self.head.to_dict()}


@dataclass(frozen=True)
class ConsistencyProof:
    first: TreeHead
    second: TreeHead
    path: list[bytes]

    def check(self, public_key: LedgerPublicKey) -> bool:
        """Both heads are the ledger's, and the second tree extends the first."""
        return self.first.verify(public_key) and self.second.verify(public_key) and \
            verify_consistency(self.first.tree_size, self.first.root_hash,
                               self.second.tree_size, self.second.root_hash, self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"log": LOG_NAME, "kind": "consistency", "first": self.first.to_dict(),
                "second": self.second.to_dict(), "path": [h.hex() for h in self.path]}


def proof_from_dict(d: Any) -> InclusionProof | ConsistencyProof:
    """A proof from its JSON form; `ProofMalformed` for anything else."""
    try:
        if d["log"] != LOG_NAME:
            raise ProofMalformed("not a proof of this ledger")
        path = [_hash(h) for h in d["path"]]
        if d["kind"] == "inclusion":
            return InclusionProof(StoredEventRef.from_dict(d["event"]), _count(d["leaf_index"]),
                                  path, TreeHead.from_dict(d["head"]))
        if d["kind"] == "consistency":
            return ConsistencyProof(TreeHead.from_dict(d["first"]),
                                    TreeHead.from_dict(d["second"]), path)
    except ProofMalformed:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ProofMalformed(f"a malformed proof ({type(error).__name__})") from None
    raise ProofMalformed("a proof is of kind inclusion or consistency")


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError("a count")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a text")
    return value


def _hash(value: Any) -> bytes:
    raw = bytes.fromhex(_text(value))
    if len(raw) != 32:
        raise ValueError("a hash")
    return raw


class NotProvable(LookupError):
    """No such event, head or pair of heads; or the event is not yet under a signed head."""


def prove_inclusion(log: MerkleLog, notification_id: int, tree_size: int | None = None
                    ) -> InclusionProof:
    """The proof that the event at `notification_id` is in the tree of a signed head (the
    latest by default)."""
    head = log.head(tree_size)
    position = log.position_of(notification_id)
    row = log.stored_event(notification_id)
    if head is None or position is None or row is None or position >= head.tree_size:
        raise NotProvable("no signed tree head covers that event")
    _, stream, version, topic, state = row
    event = StoredEventRef(log.application, notification_id, UUID(bytes=stream), version, topic,
                           state)
    return InclusionProof(event, position,
                          log.tree().inclusion_proof(position, head.tree_size), head)


def prove_consistency(log: MerkleLog, first: int, second: int | None = None
                      ) -> ConsistencyProof:
    """The proof that the signed head of size `first` is a prefix of the one of size `second`
    (the latest by default)."""
    older, newer = log.head(first), log.head(second)
    if older is None or newer is None or older.tree_size > newer.tree_size:
        raise NotProvable("no two signed tree heads of those sizes, in that order")
    return ConsistencyProof(older, newer,
                            log.tree().consistency_proof(older.tree_size, newer.tree_size))
