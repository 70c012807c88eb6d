"""Pure decisions, tested without a cluster: when to issue, when to renew, whether a
Secret is ours and intact, and whether a namespace may use a client. No I/O here."""
