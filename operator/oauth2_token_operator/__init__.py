"""oauth2-token-operator: keeps short-lived OAuth2 access tokens in Kubernetes Secrets."""

__version__ = "0.1.0"
