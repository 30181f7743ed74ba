"""The nmap engine over the network: services no portatlas module knows, named from nmap's
probes and match lines; a 220 greeter that is no longer called MTP; a UDP service away
from its port; re-probing inside TLS. Servers: tests/support/fake_services.py, in a
namespace of their own; portatlas in another.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from portatlas.identify import IDENTIFIED, UNIDENTIFIED, identify, identify_many
from portatlas.identify import nmap
from support import nsthread
from support.netns import Netns, available, link
from support.servers_text import make_cert

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not available(), reason="needs root and ip netns"),
              pytest.mark.skipif(nmap.find_db() is None, reason="needs Debian's nmap-common")]

FAKE = Path(__file__).parent / "support" / "fake_services.py"
PORTS = {"epmd": 4369, "epmd-away": 14369, "greeter": 57, "greeter-away": 2057,
         "acap-tls": 6740, "xdmcp-away": 40177}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    cert, key = make_cert(tmp_path_factory.mktemp("fake-tls"), cn="acap.portatlas.test",
                          sans=("acap.portatlas.test",))
    with Netns("pa11-fs") as server, Netns("pa11-fc") as client:
        _, address = link(client, server)
        proc = server.popen([sys.executable, str(FAKE), f"epmd:{PORTS['epmd']}",
                             f"epmd:{PORTS['epmd-away']}", f"greeter:{PORTS['greeter']}",
                             f"greeter:{PORTS['greeter-away']}",
                             f"acap-tls:{PORTS['acap-tls']}:{cert},{key}",
                             f"xdmcp:{PORTS['xdmcp-away']}"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        targets = [(address, PORTS[k], "tcp") for k in ("epmd", "epmd-away", "greeter",
                                                       "greeter-away", "acap-tls")]
        targets.append((address, PORTS["xdmcp-away"], "udp"))
        batch = nsthread.call_in(client.name, identify_many, targets, registered=(),
                                 timeout=5, deadline=30)
        yield client, address, {v.port: v for v in batch.results}


def test_a_service_only_nmap_knows_is_named_with_its_evidence(lab):
    _, _, results = lab
    v = results[PORTS["epmd"]]
    assert (v.outcome, v.protocol, v.product) == (IDENTIFIED, "epmd",
                                                  "Erlang Port Mapper Daemon"), v.to_dict()
    assert v.basis["by"] == "nmap" and v.basis["probe"] == "epmd"
    assert v.basis["text"].startswith("nmap probe epmd, match line ")
    assert v.basis["file"] == nmap.find_db()
    assert v.extra["nmap_engine"]["lines_tried"] >= 1


def test_rarity_keeps_a_rare_probe_to_its_ports_unless_the_intensity_allows(lab):
    client, address, results = lab
    away = results[PORTS["epmd-away"]]
    assert away.outcome == UNIDENTIFIED, away.to_dict()  # epmd's rarity 8 > intensity 7
    assert "epmd" not in away.extra["nmap_engine"]["probes_sent"]
    v = nsthread.call_in(client.name, identify, address, PORTS["epmd-away"], "tcp",
                         registered=(), intensity=9, timeout=8)
    assert v.protocol == "epmd", v.to_dict()


@pytest.mark.parametrize("key", ["greeter", "greeter-away"])
def test_a_220_greeter_is_not_called_mtp(lab, key):
    _, _, results = lab
    v = results[PORTS[key]]
    assert v.outcome == UNIDENTIFIED and v.protocol is None, v.to_dict()
    assert "greets with a 220 line" in v.reason and "rejects unknown commands" in v.reason


def test_a_udp_service_away_from_its_port_gets_its_protocols_payload(lab):
    _, _, results = lab
    v = results[PORTS["xdmcp-away"]]
    assert (v.outcome, v.protocol, v.product) == (IDENTIFIED, "xdmcp", "XDMCP"), v.to_dict()
    assert v.extra["hostname"] == "lab" and "Linux 6" in v.extra["info"]
    assert v.basis["probe"] == "xdmcp"


def test_inside_tls_the_service_is_named_not_the_tunnel(lab):
    _, _, results = lab
    v = results[PORTS["acap-tls"]]
    assert (v.outcome, v.protocol) == (IDENTIFIED, "acap"), v.to_dict()
    assert v.product.startswith("CommuniGate Pro ACAP") and v.version == "6.3.1"
    assert v.extra["carrier"] == "tls" and v.basis["by"] == "nmap"
    assert v.tls and v.tls.get("version", "").startswith("TLS")


def test_without_nmap_the_same_ports_are_unidentified(lab):
    client, address, _ = lab
    v = nsthread.call_in(client.name, identify, address, PORTS["epmd"], "tcp", registered=(),
                         nmap=False, timeout=3)
    assert v.outcome == UNIDENTIFIED and "nmap_engine" not in v.extra


def test_scan_identify_probes_silent_udp_ports_too(lab):
    """A UDP service away from its port is silent to the sweep (open|filtered): scan
    --identify still sends it nmap's UDP probes, and the port becomes open when it answers."""
    import json

    client, address, _ = lab
    result = client.portatlas("scan", address, "--udp", "-p", f"{PORTS['xdmcp-away']},40999",
                              "--identify", "--json", "--no-progress", "--id-timeout", "4")
    assert result.returncode == 0, result.stderr
    ports = {p["port"]: p for h in json.loads(result.stdout)["hosts"] for p in h["ports"]}
    found = ports[PORTS["xdmcp-away"]]
    assert found["state"] == "open" and found["reason"] == "udp-response", found
    assert found["service"]["protocol"] == "xdmcp"
    silent = ports.get(40999)  # nothing there: ICMP port unreachable, closed as before
    assert silent is None or silent["state"] == "closed"
