"""The command line, `oauth2-token-operator` (`python -m oauth2_token_operator.cli`): the
top of the import order, nothing in the operator imports it.

`main` builds the parser and hands each command to its module: `run` (the operator's
options and configuration), `discover` (an authorization server's metadata), `tokens`
(`get`, `refresh`, `introspect`, `revoke` through the token library) and `client` (the
client those four act as, from flags or an `OAuth2Client` manifest)."""
