"""`make demo`: the operator on a kind cluster, serving a workload (see __main__.py)."""
