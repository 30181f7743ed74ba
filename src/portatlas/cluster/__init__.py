"""Scanning on a Dask cluster: the scan engine of portatlas.scan, run shard by shard on the
workers of a Dask distributed cluster, merged into one ScanReport.

Public API:
    ClusterScanner(hosts, tcp_ports=..., udp_ports=..., cluster="tcp://HOST:8786" | "local:N",
                   timing=..., on_result=..., on_progress=...).run() -> ScanReport
    parse_cluster(text)      -> ("local", N) | ("remote", address); UsageError when malformed
    ClusterError             the cluster cannot run the scan (exit status 4)

Nothing here is imported unless --cluster is used; Dask is an optional extra
(`pip install 'portatlas[cluster]'`). Design: docs/scan.md, "Scanning on a cluster".
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portatlas.cluster.client import ClusterError, ClusterScanner, parse_cluster

__all__ = ["ClusterError", "ClusterScanner", "parse_cluster"]


def __getattr__(name: str):
    if name in __all__:
        # optional: the client needs dask distributed (cluster extra); parse_cluster does not
        from portatlas.cluster import client

        return getattr(client, name)
    raise AttributeError(name)
