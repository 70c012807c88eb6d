"""Small helpers with no knowledge of OAuth2 or Kubernetes, below every other package:
RFC 3339 timestamps, interning of repeated values, a one-or-many holder."""
