"""Read models built by following the ledger's notification log, and their runners."""
