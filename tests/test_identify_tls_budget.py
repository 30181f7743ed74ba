"""Real TLS servers under deliberately tight time budgets: the answer is right or there is
none, never the carrier `tls` (issue 11: "under time pressure the engine answers less, never
wrong").

nginx (HTTPS on 443 and 8443), Exim (SMTPS on 465), stunnel in front of nginx's plain HTTP
port (4443), of svnserve (3692) and of a port where nothing listens (5443: TLS, then the
tunnel closes - nothing to name). One server namespace, one client namespace; every batch
identifies all of them at once, from budgets too small for anything to generous ones.
"""

from __future__ import annotations

import json

import pytest

from portatlas.identify import IDENTIFIED, identify_many
from support import nsthread
from support import servers_lab as sl
from support import servers_text as st
from support.netns import Netns, available, link

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not available(), reason="needs root and ip netns")]

# port -> the names that are right (None: only "no name" is right)
TRUTH = {443: {"http", "https"}, 8443: {"http", "https"}, 465: {"smtp", "smtps"},
         4443: {"http", "https"}, 3692: {"svnserve"}, 5443: None}
TIGHT = [{"timeout": 0.5, "probe_timeout": 0.15}, {"timeout": 1.0, "probe_timeout": 0.3},
         {"timeout": 2.0, "probe_timeout": 0.5}]
GENEROUS = {"timeout": 8.0, "probe_timeout": 2.0}


@pytest.fixture(scope="module")
def tls_lab(tmp_path_factory, atlas):
    tmp = tmp_path_factory.mktemp("tls-budget")
    with Netns("p1-tbs") as server, Netns("p1-tbc") as client:
        _, address = link(client, server)
        nginx = st.start_nginx(server, tmp / "nginx", http_ports=(80,), https_ports=(443, 8443))
        exim = st.start_exim(server, tmp / "exim", ports=(2525,), smtps_port=465)
        sl.start_svnserve(server, tmp / "svn", ports=(3690,))
        sl.start_stunnel(server, tmp / "stunnel", tunnels=((4443, 80), (3692, 3690),
                                                           (5443, 9)))
        atlas.preload()
        try:
            yield client, address
        finally:
            for service in (nginx, exim):
                stop = getattr(service, "stop", None)
                if stop:
                    stop()


def _batch(lab, budget):
    client, address = lab
    targets = [(address, port, "tcp") for port in TRUTH]
    batch = nsthread.call_in(client.name, identify_many, targets, **budget)
    return {v.port: v for v in batch.results}


def _check(verdicts):
    for port, right in TRUTH.items():
        v = verdicts[port]
        d = v.to_dict()
        assert v.protocol not in ("tls", "ssl") and v.service not in ("tls", "ssl"), d
        if v.outcome == IDENTIFIED:
            assert right is not None and {v.protocol, v.service} <= right, d
        elif v.tls is not None:
            # TLS was completed but the inside stayed unknown: the evidence says so, and why
            assert v.extra.get("carrier") == "tls", d
            assert "the service inside TLS was not identified" in v.reason, d


@pytest.mark.parametrize("budget", TIGHT, ids=lambda b: f"timeout{b['timeout']}")
def test_tight_budgets_give_no_wrong_name(tls_lab, budget):
    _check(_batch(tls_lab, budget))


def test_generous_budget_names_every_tls_service(tls_lab):
    verdicts = _batch(tls_lab, GENEROUS)
    _check(verdicts)
    for port, right in TRUTH.items():
        v = verdicts[port]
        d = v.to_dict()
        if right is None:
            assert v.outcome != IDENTIFIED and v.tls is not None, v.to_dict()
            assert v.tls["certificate"]["subject_cn"] == "tls.lab.test"
        else:
            assert v.outcome == IDENTIFIED and v.service in right, json.dumps(d, default=str)[:3000]
