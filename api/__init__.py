"""The faces over the ledger's services: the HTTP API and the `ledger` command line."""
