"""The binary and UDP protocol modules against real servers from Debian packages, through the
real driver (portatlas.identify.identify_many), each server on its standard port and on an
unexpected one (PostgreSQL on 103 and with TLS on 5433, MQTT on 8080, DNS on 5353 over UDP and TCP, NTP on 500,
SNMP on 69, memcached/UDP on 1900).

One server namespace holds every daemon; the identification runs in a second namespace
joined by a veth pair, so the traffic crosses a real link to 198.18.x.2 and never leaves the
namespaces.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from support import servers_binary as servers
from support.netns import Netns, available, link
from support.nsthread import call_in

pytestmark = [pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(not available(), reason="needs root and ip netns")]

PORTS = {
    "postgresql": (5432, 103, 5433),
    "mosquitto": (1883, 8080),
    "dnsmasq": (53, 5353),
    "chrony": (123, 500),
    "snmpd": (161, 69),
    "memcached-udp": (11211, 1900),
}


def _version_of(cmd: list[str], pattern: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    found = re.search(pattern, out.stdout + out.stderr)
    assert found, f"cannot read the version from {cmd}"
    return found.group(1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, atlas_db):
    """(client namespace name, server address, {name: Service})"""
    tmp = tmp_path_factory.mktemp("binary-servers")
    with Netns("pa-bsrv") as server, Netns("pa-bcli") as client:
        _, server_addr = link(client, server)
        started = {name: servers.SERVERS[name](server, tmp / name, ports=ports)
                   for name, ports in PORTS.items() if name != "postgresql"}
        # 5433 speaks TLS after the SSLRequest ('S'): the StartupMessage goes inside TLS
        started["postgresql"] = servers.start_postgresql(server, tmp / "postgresql",
                                                         ports=PORTS["postgresql"],
                                                         tls_ports=(5433,))
        yield client.name, server_addr, started


@pytest.fixture(scope="module")
def verdicts(lab):
    """Every port of every server identified in one batch: {(port, transport): Verdict}."""
    from portatlas.identify import Options, identify_many

    client, address, started = lab
    targets = []
    for service in started.values():
        targets += [(address, port, transport) for port, transport in service.ports.items()]
        targets += [(address, port, "tcp") for port in service.facts.get("tcp_ports", ())]
    batch = call_in(client, identify_many, targets, options=Options(timeout=8), deadline=60)
    assert not batch.deadline_reached
    return {(v.port, v.transport): v for v in batch.results}


@pytest.mark.parametrize("name", list(PORTS))
def test_protocol_and_product_on_every_port(lab, verdicts, name):
    service = lab[2][name]
    ports = dict(service.ports)
    ports.update({port: "tcp" for port in service.facts.get("tcp_ports", ())})
    for port, transport in ports.items():
        verdict = verdicts[(port, transport)]
        where = f"{name} on {port}/{transport}: {verdict.to_dict()}"
        assert verdict.outcome == "identified", where
        assert verdict.protocol == service.protocol, where
        assert verdict.product == service.product, where
        assert verdict.confidence >= 0.8, where
        assert verdict.evidence, where


def test_versions_match_the_installed_daemons(verdicts):
    dnsmasq = _version_of(["dnsmasq", "--version"], r"Dnsmasq version (\S+)")
    memcached = _version_of(["memcached", "-V"], r"memcached (\S+)")
    mosquitto = _version_of(["mosquitto", "-h"], r"mosquitto version (\S+)")
    for key in [(53, "udp"), (5353, "udp"), (53, "tcp"), (5353, "tcp")]:
        assert verdicts[key].version == dnsmasq
    assert verdicts[(11211, "udp")].version == verdicts[(1900, "udp")].version == memcached
    assert verdicts[(1883, "tcp")].version == verdicts[(8080, "tcp")].version == mosquitto


def test_facts_reported(verdicts):
    pg = verdicts[(103, "tcp")]
    assert pg.extra["ssl"] is False and pg.extra["error"]["sqlstate"] == "28000"
    assert "gppitnp" in pg.registered  # the registry's claim is kept beside the truth
    tls_pg = verdicts[(5433, "tcp")]
    assert tls_pg.extra["ssl"] is True and tls_pg.extra["error"]["sqlstate"] == "28000"
    assert tls_pg.tls and "postgres.portatlas.test" in str(tls_pg.tls)
    assert verdicts[(5432, "tcp")].tls is None
    ntp = verdicts[(500, "udp")].extra
    assert ntp["stratum"] == 10 and ntp["refid"] == "127.127.1.1" and ntp["origin_echoed"]
    snmp = verdicts[(69, "udp")].extra
    assert snmp["enterprise"] == 8072 and snmp["versions"] == ["v3", "v2c"]
    assert snmp["sys_descr"].startswith("Linux")
    assert verdicts[(8080, "tcp")].extra["connect_result"] == "accepted"
    assert verdicts[(5353, "udp")].extra["version_bind"].startswith("dnsmasq-")


def test_stopped_udp_service_is_closed_not_identified(lab):
    """The same client asking a UDP port nothing listens on gets ICMP unreachable: closed."""
    from portatlas.identify import identify

    client, address, _ = lab
    verdict = call_in(client, identify, address, 4999, "udp", timeout=3)
    assert verdict.outcome == "closed" and verdict.protocol is None
