"""Reachability where people see it: `portatlas local` (table, --long, --json, --exposed), the
here section of `portatlas PORT`, and the web's machine page and port pages — in a namespace
with a real nftables ruleset and real listeners; without root it says unknown, and why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest

from support import exposure_lab as lab
from support import netns

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "src/portatlas/exposure/schema.json").read_text())
RULES = """
table inet fw {
  chain input { type filter hook input priority 0; policy drop;
    iif lo accept
    tcp dport 7722 accept
    ip saddr 198.18.140.0/24 tcp dport 7732 accept
    meta mark 0x7 tcp dport 7742 accept
  }
}
"""
LISTENERS = [  # (address, port): open to all, own subnet only, closed, marks, loopback, unregistered
    ("0.0.0.0", 7722), ("0.0.0.0", 7732), ("0.0.0.0", 7733), ("0.0.0.0", 7742),
    ("127.0.0.1", 7752), ("0.0.0.0", 7722 + 30000)]


def _validate(reach: dict) -> None:
    jsonschema.validate(reach, {**SCHEMA, "$ref": "#/$defs/reachability"})


@pytest.fixture(scope="module")
def box(atlas_db):
    with lab.Lab() as L:
        L.nft(RULES.replace("7722 accept", "{ 7722, 37722 } accept"))
        specs = [{"id": f"l{p}", "transport": "tcp", "family": "ipv4", "address": a, "port": p}
                 for a, p in LISTENERS]
        L.listen(specs)
        yield L


def local_json(L, *args, env=None):
    r = L.server.portatlas("local", "-t", "7700-7760", *args, "--json", env=env)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def test_local_json_verdicts_and_schema(box):
    data = local_json(box)
    jsonschema.validate(data["packet_filter"], {**SCHEMA, "$ref": "#/$defs/packet_filter"})
    assert data["packet_filter"]["readable"] is True and data["packet_filter"]["rules"] == 4
    by_port = {s["port"]: s["reachability"] for s in data["sockets"]}
    for reach in by_port.values():
        _validate(reach)
    assert by_port[7722]["verdict"] == "exposed"
    assert by_port[7732]["verdict"] == "limited"
    assert by_port[7733]["verdict"] == "local-only"
    assert "policy drop" in by_port[7733]["reason"]
    assert by_port[7742]["verdict"] == "unknown" and "meta mark" in by_port[7742]["reason"]
    assert by_port[7752]["verdict"] == "local-only"
    assert any("nft insert rule inet fw input" in c for c in by_port[7722]["close"])
    assert any("bind python" in c for c in by_port[7722]["close"])
    anywhere = next(c for c in by_port[7722]["classes"] if c["class"] == "anywhere")
    assert anywhere["rule"]["text"].endswith("accept") and anywhere["rule"]["table"] == "fw"


def test_exposed_filter_and_text(box):
    data = local_json(box, "--exposed")
    assert sorted(s["port"] for s in data["sockets"]) == [7722, 7732]
    text = box.server.portatlas("local", "-t", "7700-7760", env={"NO_COLOR": "1"}).stdout
    assert "REACH" in text.splitlines()[2]
    assert "Reachable from other machines" in text and "Reachability unknown" in text
    assert "meta mark" in text
    long = box.server.portatlas("local", "7732", "--long", env={"NO_COLOR": "1"}).stdout
    assert "limited: only from this machine's own subnets" in long
    assert "from anywhere: dropped" in long
    none = box.server.portatlas("local", "7733", "--exposed")
    assert none.returncode == 1 and "nothing is reachable from other machines" in none.stderr
    plain = local_json(box, "--no-exposure")
    assert "packet_filter" not in plain and "reachability" not in plain["sockets"][0]


@pytest.mark.parametrize("args, message", [
    (["--exposed", "--no-exposure"], "--exposed needs the packet filter"),
    (["--exposed", "--watch"], "do not go together"),
])
def test_bad_combinations_are_one_line_errors(box, args, message):
    r = box.server.portatlas("local", *args)
    assert r.returncode == 2 and r.stderr.startswith("portatlas: error:") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unregistered_exposed_port_is_said_plainly(box):
    data = box.server.portatlas("local", "37722", "--json")
    sock = json.loads(data.stdout)["sockets"][0]
    assert sock["reachability"]["verdict"] == "exposed"
    assert any("nobody registered" in n or "no service is registered" in n
               for n in sock["reachability"]["notes"]), sock["reachability"]["notes"]


def test_here_section_of_a_port_answer(box):
    r = box.server.portatlas("7732", "--json")
    here = json.loads(r.stdout)["here"]
    reach = here["sockets"][0]["reachability"]
    _validate(reach)
    assert reach["verdict"] == "limited"
    text = box.server.portatlas("7732", env={"NO_COLOR": "1"}).stdout
    assert "limited: only from this machine's own subnets" in text


def test_without_root_it_is_unknown_and_says_why(box, atlas_db):
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pa14-nobody-"))  # pytest's tmp dirs are root-only
    os.chmod(folder, 0o755)
    db = folder / "portatlas.sqlite3"
    shutil.copy(atlas_db, db)
    os.chmod(db, 0o644)
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/sbin:/usr/bin:/bin", "PORTATLAS_DB": str(db)}
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                 "-m", "portatlas"]
    r = box.server.run(as_nobody + ["local", "7722", "--json"], check=False, env=env)
    data = json.loads(r.stdout)
    assert data["packet_filter"]["readable"] is False and "root" in data["packet_filter"]["reason"]
    assert data["sockets"][0]["reachability"]["verdict"] == "unknown"
    here = box.server.run(as_nobody + ["7722", "--json"], check=False, env=env)
    shutil.rmtree(folder, ignore_errors=True)
    warnings = json.loads(here.stdout)["here"]["warnings"]
    assert any(w["code"] == "reachability-unknown" for w in warnings)


def test_web_machine_page_and_port_page(box, atlas_db, tmp_path):
    from support.web import start_server, thread_in_netns

    proc, info = start_server(box.server, atlas_db, tmp_path / "fb.sqlite3")
    try:
        with thread_in_netns(box.server.name), httpx.Client(base_url=info["url"], timeout=20) as c:
            page = c.get("/local", params={"port": "7700-7760", "transport": "tcp"}).text
            assert "Reachable from other machines" in page
            assert 'reach-exposed' in page and 'reach-limited' in page
            assert "nft insert rule inet fw input" in page
            api = c.get("/api/local", params={"port": "7732"}).json()
            assert api["sockets"][0]["reachability"]["verdict"] == "limited"
            port_page = c.get("/ports/7732").text
            assert "reach-limited" in port_page and "own subnets" in port_page
    finally:
        proc.terminate()
        proc.wait(10)
