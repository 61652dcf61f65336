"""The tamper-evident log over HTTP (LED-2): signed tree heads and proofs.

Heads and consistency proofs are hashes, sizes and signatures: public, like the ledger's public
key, so anyone holding a head can ask whether a later one extends it. An inclusion proof carries
a stored event as it rests (its ids and sealed state), so it is for the privacy officer and
auditors. Every proof is the same JSON document `ledger proof` prints, and `ledger proof check`
checks it with the public key alone (docs/merkle-log.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from api.http.auth import require
from api.http.deps import MAX_POSITION, Svc
from api.http.problems import NOT_FOUND as _NOT_FOUND
from api.http.problems import ProblemError, responses
from api.tokens import Permission, Principal
from ledger.merkle_log import TreeHead
from ledger.proofs import NotProvable, prove_consistency, prove_inclusion

router = APIRouter(tags=["tamper-evident log"])

Prover = Annotated[Principal, Depends(require(Permission.LEDGER_PROVE))]
Signer = Annotated[Principal, Depends(require(Permission.TREE_HEADS_SIGN))]


class TreeHeadOut(BaseModel):
    log: str
    version: int
    tree_size: int
    root_hash: str
    signed_at: str
    signature: str

    @classmethod
    def of(cls, head: TreeHead) -> TreeHeadOut:
        return cls(**head.to_dict())


class TreeHeadPage(BaseModel):
    items: list[TreeHeadOut]
    next_after: int | None


def _not_provable(detail: str) -> ProblemError:
    return ProblemError(404, _NOT_FOUND, "Not found", detail)


@router.get("/ledger/tree-heads", response_model=TreeHeadPage, responses=responses(422, 503))
def tree_heads(svc: Svc, after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> TreeHeadPage:
    """The chain of signed tree heads, oldest first, from tree size `after` on."""
    heads = [head for head in svc.merkle_log.heads() if head.tree_size > after][:limit]
    return TreeHeadPage(items=[TreeHeadOut.of(head) for head in heads],
                        next_after=heads[-1].tree_size if len(heads) == limit else None)


@router.get("/ledger/tree-heads/latest", response_model=TreeHeadOut,
            responses=responses(404, 503))
def latest_tree_head(svc: Svc) -> TreeHeadOut:
    head = svc.merkle_log.head()
    if head is None:
        raise _not_provable("No tree head has been signed yet.")
    return TreeHeadOut.of(head)


@router.post("/ledger/tree-heads", status_code=201, response_model=TreeHeadOut,
             responses=responses(401, 403, 503))
def sign_tree_head(svc: Svc, who: Signer) -> TreeHeadOut:
    """Seal every stored event and sign a head now, off the schedule."""
    return TreeHeadOut.of(svc.merkle_log.sign_head())


@router.get("/ledger/proofs/consistency", responses=responses(404, 422, 503))
def consistency_proof(svc: Svc, first: Annotated[int, Query(ge=0, le=MAX_POSITION)],
                      second: Annotated[int | None, Query(ge=0, le=MAX_POSITION)] = None
                      ) -> dict[str, Any]:
    """That the signed head of size `second` (default: the latest) extends the one of size
    `first`."""
    try:
        return prove_consistency(svc.merkle_log, first, second).to_dict()
    except NotProvable as error:
        raise _not_provable(str(error).capitalize() + ".") from None


@router.get("/ledger/proofs/inclusion/{notification_id}",
            responses=responses(401, 403, 404, 422, 503))
def inclusion_proof(notification_id: Annotated[int, Path(ge=1, le=MAX_POSITION)], svc: Svc,
                    who: Prover,
                    tree_size: Annotated[int | None, Query(ge=1, le=MAX_POSITION)] = None
                    ) -> dict[str, Any]:
    """That the event at `notification_id` is in the tree of a signed head (default: the
    latest)."""
    try:
        return prove_inclusion(svc.merkle_log, notification_id, tree_size).to_dict()
    except NotProvable as error:
        raise _not_provable(str(error).capitalize() + ".") from None
