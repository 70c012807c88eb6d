"""One OAuth2Client's reconcile."""
