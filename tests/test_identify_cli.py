"""The identification through the commands: `portatlas check` identifies by default,
`portatlas scan --identify` every open port, `portatlas local --identify` this host's own
listeners. Real servers in a namespace; the CLI runs inside the namespace as a subprocess."""

from __future__ import annotations

import json

import pytest

from support import servers_text as st
from support.netns import Netns, available, link

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not available(), reason="needs root and ip netns")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, atlas_db):
    tmp = tmp_path_factory.mktemp("identify-cli")
    with Netns("pa-icli-s") as server, Netns("pa-icli-c") as client:
        _, address = link(client, server)
        st.start_ssh(server, tmp / "ssh", ports=(103,))
        st.start_nginx(server, tmp / "nginx", http_ports=(57,), https_ports=(8443,))
        st.start_redis(server, tmp / "redis", ports=(8080,))
        yield server, client, address


def test_check_identifies_by_default(lab):
    _, client, address = lab
    result = client.portatlas("check", address, "103")
    assert result.returncode == 0, result.stderr
    assert "registered: gppitnp" in result.stdout
    assert "identified: ssh OpenSSH 9." in result.stdout
    assert "host key types: ssh-ed25519" in result.stdout
    assert "103/tcp is registered to gppitnp; what answers here is SSH, OpenSSH 9." in result.stdout
    assert "(differs)" in result.stdout


def test_check_shows_port_only_registry_records_and_closed_ports(lab):
    _, client, address = lab
    result = client.portatlas("check", address, "57")  # nginx on 57: "any private terminal access"
    assert 'registered: "any private terminal access"' in result.stdout
    assert "is registered to \"any private terminal access\"; what answers here is HTTP" in result.stdout
    result = client.portatlas("check", address, "58")  # closed, still registered to xns-mail
    assert result.returncode == 1
    assert "closed" in result.stdout and "registered: xns-mail (XNS Mail)" in result.stdout


def test_check_json_and_tls(lab):
    _, client, address = lab
    result = client.portatlas("check", address, "8443", "--json", "--sni", "www.portatlas.test")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    port = doc["hosts"][0]["ports"][0]
    service = port["service"]
    assert (service["outcome"], service["protocol"], service["service"]) == \
        ("identified", "http", "https")
    assert service["tls"]["certificate"]["subject_cn"] == "www.portatlas.test"
    assert service["tls"].get("sni") == "www.portatlas.test"


def test_check_without_identification(lab):
    _, client, address = lab
    result = client.portatlas("check", address, "57", "--no-identify", "--json")
    port = json.loads(result.stdout)["hosts"][0]["ports"][0]
    assert port["state"] == "open" and not port.get("service")


def test_scan_identify(lab):
    _, client, address = lab
    result = client.portatlas("scan", address, "-p", "57,103,8080,9", "--identify", "--json",
                              "--no-progress")
    assert result.returncode == 0, result.stderr
    ports = {p["port"]: p for p in json.loads(result.stdout)["hosts"][0]["ports"]}
    assert ports[57]["service"]["protocol"] == "http"
    assert ports[103]["service"]["protocol"] == "ssh"
    assert ports[8080]["service"]["product"] == "Redis"


def test_local_identify_only_touches_own_listeners(lab):
    server, _, _ = lab
    result = server.portatlas("local", "-t", "--identify", "--json")
    assert result.returncode == 0, result.stderr
    sockets = json.loads(result.stdout)["sockets"]
    found = {(s["port"], s["identified"]["protocol"]) for s in sockets if s.get("identified")}
    assert {(103, "ssh"), (57, "http"), (8443, "http"), (8080, "redis")} <= found
    text = server.portatlas("local", "-t", "--identify")
    assert "Identified" in text.stdout and "ssh OpenSSH" in text.stdout


@pytest.mark.parametrize("args,words", [
    (["--id-timeout", "0"], "--id-timeout must be between"),
    (["--banner-wait=-1"], "--banner-wait must be between"),
    (["--nmap-db", "/nonexistent/probes"], "cannot read nmap's service probes"),
    (["--nmap-probes", "/nonexistent/probes"], "cannot read nmap's service probes"),
    (["--intensity", "10"], "--intensity must be between 0 and 9"),
    (["--nmap-parallel", "0"], "--nmap-parallel must be between 1 and 64"),
])
def test_bad_options_are_one_line_errors(lab, args, words):
    _, client, address = lab
    result = client.portatlas("check", address, "57", *args)
    assert result.returncode in (2, 3)
    assert result.stderr.startswith("portatlas: error: ") and words in result.stderr
    assert "Traceback" not in result.stderr


def test_nmap_engine_runs_by_default_and_the_module_decides(lab):
    # changed deliberately (issue 11): --nmap-probes used to be an opt-in refinement of the
    # bytes our modules had seen; nmap's engine now runs by default beside the modules, and
    # a module's full exchange decides (the evidence says which source did)
    _, client, address = lab
    result = client.portatlas("check", address, "103", "--json")
    service = json.loads(result.stdout)["hosts"][0]["ports"][0]["service"]
    assert (service["protocol"], service["product"]) == ("ssh", "OpenSSH")
    assert service["basis"]["by"] == "portatlas"
    assert service["basis"]["text"].startswith("portatlas ssh module")
    assert "nmap_engine" in service["extra"]
    text = client.portatlas("check", address, "103")
    assert "how:" in text.stdout and "portatlas ssh module" in text.stdout


def test_without_the_nmap_database_a_note_says_so(lab, tmp_path):
    _, client, address = lab
    result = client.portatlas("check", address, "103", "--json",
                              env={"PORTATLAS_NMAP_DB": str(tmp_path / "absent")})
    assert result.returncode == 0, result.stderr
    assert "nmap's service database was not found" in result.stderr
    service = json.loads(result.stdout)["hosts"][0]["ports"][0]["service"]
    assert service["protocol"] == "ssh" and "nmap_engine" not in service["extra"]
    assert any("not found" in n for n in service["extra"]["notes"])
    off = client.portatlas("check", address, "103", "--json", "--no-nmap")
    assert "note:" not in off.stderr
