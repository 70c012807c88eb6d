"""The Kubernetes side: API calls through the official client, off the event loop."""
