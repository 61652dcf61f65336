"""The tamper-evident log from the command line (LED-2): `ledger verify`, `ledger heads`,
`ledger proof`.

`ledger verify [--head FILE]` recomputes the Merkle tree from the stored events (no data key is
needed) and checks it against every signed tree head, or also against a head an auditor kept;
it exits 0 when the log is intact, 1 naming the first position that fails and how (changed,
missing, inserted, reordered, unsigned, forked). `ledger heads sign` seals what is stored and
signs a tree head; `ledger heads list` prints the chain. `ledger proof inclusion ID` and `ledger
proof consistency FIRST [SECOND]` print proofs as JSON; `ledger proof check FILE --public-key
KEY` checks one with nothing but the ledger's public key (no database).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from crypto.signing import LedgerPublicKey
from ledger.merkle_log import TreeHead
from ledger.persistence import open_merkle_log, open_signer
from ledger.proofs import (
    NotProvable,
    ProofMalformed,
    proof_from_dict,
    prove_consistency,
    prove_inclusion,
)
from ledger.settings import Settings


def register(commands: Any) -> None:
    verify = commands.add_parser("verify", help="check the stored log against its signed tree"
                                                " heads (exit 1 naming the first failure)")
    verify.add_argument("--head", metavar="FILE",
                        help="also check against this tree head (JSON, as `heads list` prints)")
    verify.set_defaults(func=run_verify)

    heads = commands.add_parser("heads", help="signed tree heads of the log")
    head_commands = heads.add_subparsers(dest="heads_command", required=True)
    head_commands.add_parser("sign", help="seal the stored events and sign a tree head"
                             ).set_defaults(func=run_sign_head)
    head_commands.add_parser("list", help="every signed tree head, oldest first (JSON lines)"
                             ).set_defaults(func=run_list_heads)

    proof = commands.add_parser("proof", help="inclusion and consistency proofs")
    proof_commands = proof.add_subparsers(dest="proof_command", required=True)
    inclusion = proof_commands.add_parser("inclusion", help="that an event is in the log")
    inclusion.add_argument("notification_id", type=int)
    inclusion.add_argument("--tree-size", type=int, default=None,
                           help="against the signed head of this size (default: the latest)")
    inclusion.set_defaults(func=run_inclusion)
    consistency = proof_commands.add_parser("consistency",
                                            help="that a signed head extends an earlier one")
    consistency.add_argument("first", type=int)
    consistency.add_argument("second", type=int, nargs="?", default=None)
    consistency.set_defaults(func=run_consistency)
    check = proof_commands.add_parser("check", help="check a proof file with the public key"
                                                    " alone (no database)")
    check.add_argument("file", help="the proof (JSON), or - for standard input")
    check.add_argument("--public-key", required=True,
                       help="the ledger's public key, as GET /ledger/public-key gives it")
    check.set_defaults(func=run_check)


def run_verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    signer = open_signer(settings)
    head = None
    if args.head is not None:
        try:
            head = TreeHead.from_dict(_read_json(args.head))
        except (OSError, ValueError) as error:
            print(f"--head: {error}", file=sys.stderr)
            return 2
    log = open_merkle_log(settings)
    report = log.verify(signer.public_key, head)
    summary: dict[str, Any] = {"events": report.events, "unsealed": report.unsealed,
                               "head": report.head.to_dict() if report.head else None}
    if report.discrepancy is None:
        print(json.dumps({"status": "intact", **summary}))
        return 0
    failure = report.discrepancy
    print(json.dumps({"status": "failed", "position": failure.position, "how": failure.how,
                      "detail": failure.detail, **summary}))
    print(f"position {failure.position}: {failure.how} ({failure.detail})", file=sys.stderr)
    return 1


def run_sign_head(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    print(json.dumps(open_merkle_log(settings, open_signer(settings)).sign_head().to_dict()))
    return 0


def run_list_heads(args: argparse.Namespace) -> int:
    for head in open_merkle_log(Settings.from_env()).heads():
        print(json.dumps(head.to_dict()))
    return 0


def run_inclusion(args: argparse.Namespace) -> int:
    try:
        proof = prove_inclusion(open_merkle_log(Settings.from_env()), args.notification_id,
                                args.tree_size)
    except NotProvable as error:
        print(str(error), file=sys.stderr)
        return 1
    print(json.dumps(proof.to_dict()))
    return 0


def run_consistency(args: argparse.Namespace) -> int:
    try:
        proof = prove_consistency(open_merkle_log(Settings.from_env()), args.first, args.second)
    except NotProvable as error:
        print(str(error), file=sys.stderr)
        return 1
    print(json.dumps(proof.to_dict()))
    return 0


def run_check(args: argparse.Namespace) -> int:
    try:
        key = LedgerPublicKey.from_text(args.public_key)
        proof = proof_from_dict(_read_json(args.file))
    except (OSError, ValueError, ProofMalformed) as error:
        print(str(error), file=sys.stderr)
        return 2
    if proof.check(key):
        print(json.dumps({"status": "valid", "kind": proof.to_dict()["kind"]}))
        return 0
    print(json.dumps({"status": "invalid", "kind": proof.to_dict()["kind"]}))
    return 1


def _read_json(path: str) -> Any:
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as f:
        return json.load(f)
