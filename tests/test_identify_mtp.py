"""Port 57's historic protocol: MTP (RFC 780), told apart from its descendant SMTP.

An RFC 780 server written by the test (tests/support/mtp_server.py: no packaged one exists)
runs on 57 and on an unexpected port; a real Exim runs on 57 in another namespace. Both
greet with '220'; only the MTP one knows MRSQ, only Exim knows HELO.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from portatlas.identify import IDENTIFIED, describe, identify_many
from support import nsthread
from support import servers_text as st
from support.netns import Netns, available, link

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not available(), reason="needs root and ip netns")]

MTP_SERVER = Path(__file__).parent / "support" / "mtp_server.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory, atlas):
    tmp = tmp_path_factory.mktemp("mtp")
    with Netns("pa-mc") as client, Netns("pa-mtp") as old, Netns("pa-smtp") as new:
        _, mtp_address = link(client, old)
        _, smtp_address = link(client, new)
        proc = old.popen([sys.executable, str(MTP_SERVER), "57", "4057"],
                         stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        st.start_exim(new, tmp / "exim", ports=(57,), smtps_port=None)
        atlas.preload()
        batch = nsthread.call_in(client.name, identify_many,
                                 [(mtp_address, 57, "tcp"), (mtp_address, 4057, "tcp"),
                                  (smtp_address, 57, "tcp")], atlas=atlas, timeout=6)
        yield batch.results


def test_mtp_on_port_57(results):
    verdict = results[0]
    assert (verdict.outcome, verdict.protocol) == (IDENTIFIED, "mtp"), verdict.to_dict()
    assert verdict.confidence >= 0.95
    assert verdict.extra["preferred_scheme"].startswith("T")
    assert {"MRSQ", "MRCP", "MAIL"} <= set(verdict.extra["commands"])
    assert verdict.evidence.startswith("220 MTP.PORTATLAS.TEST")
    assert describe(verdict).startswith("57/tcp has no registered service name; "
                                        "what answers here is MTP")


def test_mtp_on_an_unexpected_port(results):
    assert results[1].protocol == "mtp"


def test_smtp_on_port_57_is_not_mtp(results):
    verdict = results[2]
    assert (verdict.protocol, verdict.product) == ("smtp", "Exim"), verdict.to_dict()
