"""Deployment: where the workers come from, kept apart from the science.

* :mod:`.client`: :func:`open_client`, a client on a local cluster, a running scheduler
  or the cluster a cluster file describes;
* :mod:`.cluster_file`: cluster files (``cluster/*.yaml``) read and checked;
* :mod:`.tls`: TLS credentials for clusters across machines;
* :mod:`.plugins`: what asm-dask installs on workers (storage options, quiet logs).
"""

from .client import open_client
from .cluster_file import KINDS, ClusterPlan, plan_cluster
from .errors import ClusterFileError, ClusterFileNotFoundError, ClusterTimeoutError, MissingExtraError
from .plugins import import_on_workers, storage_options_shared

__all__ = ["KINDS", "ClusterFileError", "ClusterFileNotFoundError", "ClusterPlan", "ClusterTimeoutError",
           "MissingExtraError", "import_on_workers", "open_client", "plan_cluster", "storage_options_shared"]
