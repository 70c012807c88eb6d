"""The one error type of the test control plane."""


class ClusterError(RuntimeError):
    """The control plane could not be found, built or started."""
