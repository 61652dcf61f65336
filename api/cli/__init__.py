"""The `ledger` command line: a second face over the same services as the HTTP API."""
