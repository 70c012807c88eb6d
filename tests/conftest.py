"""Fixtures shared by every test directory.

The fixture modules live next to what they start (``tests/authserver``, ``tests/cluster``,
``tests/e2e``, ``tests/keycloak``); they are imported here so that any test can use them.
"""

from tests.authserver.fixtures import authserver  # noqa: F401
from tests.cluster.fixtures import kube_admin, kube_cluster, kube_namespace  # noqa: F401
from tests.e2e.fixtures import kind_admin, kind_cluster, kind_namespace, probe_image  # noqa: F401
from tests.keycloak.fixtures import keycloak  # noqa: F401
