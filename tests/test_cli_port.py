"""`portatlas PORT|RANGE|SERVICE`, `search` and `data info` from the outside."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "src/portatlas/schemas/port.schema.json").read_text())


def test_port_57_human(cli):
    r = cli("57", "--no-local", "--no-history")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Port 57" in out and "any private terminal access" in out and "Jon Postel" in out
    assert "TCP" in out and "UDP" in out and "system" in out
    assert "56" in out and "xns-auth" in out and "58" in out  # neighbours
    assert "ss -tlnp 'sport = :57'" in out and "Test-NetConnection" in out and "lsof" in out
    assert "\x1b[" not in out  # piped: no colour


def test_colour_only_when_asked(cli):
    assert "\x1b[" in cli("57", "--no-local", env={"NO_COLOR": "", "FORCE_COLOR": "1"}).stdout
    assert "\x1b[" not in cli("57", "--no-local", env={"NO_COLOR": "1", "FORCE_COLOR": "1"}).stdout


def test_port_103_json_matches_schema_and_names_neighbour_102(cli):
    r = cli("103", "--json", "--no-local")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["entries"]["tcp"][0]["service"] == "gppitnp"
    assert data["entries"]["tcp"][0]["description"] == "Genesis Point-to-Point Trans Net"
    (n102,) = [n for n in data["neighbours"] if n["port"] == 102]
    assert n102["entries"][0]["service"] == "iso-tsap"
    assert data["range_class"]["name"] == "system"


@pytest.mark.parametrize("query", ["25", "80/tcp", "443", "2", "79", "57/udp", "49152", "1023", "0"])
def test_json_schema_holds_for_many_ports(cli, query):
    r = cli(query, "--json", "--no-local")
    jsonschema.validate(json.loads(r.stdout), SCHEMA)


def test_deassigned_and_unauthorized_shown(cli):
    data = json.loads(cli("2/tcp", "--json", "--no-local").stdout)
    assert data["status"] == {"tcp": "deassigned"}
    assert data["entries"]["tcp"][0]["previously"] == "compressnet"
    out = cli("79", "--no-local").stdout
    assert "unauthorized use reported" in out and "RFC4146" in out


def test_trojans_shown_as_history_with_caveat(cli):
    data = json.loads(cli("31337", "--json", "--no-local").stdout)
    assert "Back Orifice" in " ".join(data["trojans"]["by_transport"].get("udp", []) +
                                      data["trojans"]["by_transport"].get("tcp", []))
    assert "says nothing about whether a listener here is malicious" in data["trojans"]["caveat"]
    out = " ".join(cli("31337", "--no-local").stdout.split())
    assert "Historic trojan associations" in out and "says nothing" in out


def test_number_inside_a_registry_range_finds_the_range(cli):
    data = json.loads(cli("6010/tcp", "--json", "--no-local").stdout)
    assert any(e["service"] == "x11" and e["ports"] == "6000-6063" for e in data["entries"]["tcp"])


def test_range_query(cli):
    r = cli("6000-6010", "--json")
    data = json.loads(r.stdout)
    assert data["schema"] == "portatlas.range/1"
    assert any(e["service"] == "x11" for e in data["entries"])


def test_unassigned_port_is_not_found_exit_1(atlas, cli):
    # find an unassigned port independently of the CLI
    port = next(p for p in range(1024, 49151) if not atlas.entries(p)
                or all(e.status == "unassigned" for e in atlas.entries(p)))
    r = cli(str(port), "--json", "--no-local")
    data = json.loads(r.stdout)
    assert set(data["status"].values()) == {"unassigned"}
    jsonschema.validate(data, SCHEMA)


def test_service_queries_and_aliases(cli):
    data = json.loads(cli("HTTP", "--json").stdout)
    assert data["schema"] == "portatlas.service/1"
    assert {e["port_lo"] for e in data["entries"]} >= {80}
    data = json.loads(cli("whois++", "--json").stdout)
    assert data["entries"][0]["alias_of"] == "whoispp"
    # the alias target finds the alias too
    data = json.loads(cli("whoispp", "--json").stdout)
    assert {e["service"] for e in data["entries"]} >= {"whoispp", "whois++"}


def test_search_ranks_mail_transfer(cli):
    r = cli("search", "mail transfer", "--json")
    assert r.returncode == 0
    results = json.loads(r.stdout)["results"]
    assert results[0]["service"] == "smtp" and results[0]["port_lo"] == 25
    assert cli("search", "zzzqqqxxx").returncode == 1


@pytest.mark.parametrize("args, code, words", [
    (["65536"], 2, "out of range"),
    (["-1"], 2, "negative"),
    (["abc/tcp"], 1, "no service named"),
    (["57/xyz"], 2, "unknown transport"),
    ([""], 2, "empty"),
    (["1-65535"], 2, "spans"),
    (["100-50"], 2, "backwards"),
    (["57", "--bogus"], 2, "unrecognized"),
    (["search"], 2, "required"),
    (["search", "x" * 500], 2, "too long"),
    (["data", "frobnicate"], 2, "unknown data command"),
    (["57", "-t", "quic"], 2, "unknown transport"),
])
def test_bad_input_is_one_line_and_nonzero(cli, args, code, words):
    r = cli(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert r.stderr.startswith("portatlas: error:") and r.stderr.count("\n") == 1, r.stderr
    assert words in r.stderr
    assert "Traceback" not in r.stderr


def test_data_info(cli, atlas_db):
    data = json.loads(cli("data", "info", "--json").stdout)
    assert data["database"] == str(atlas_db)
    kinds = {p["kind"] for p in data["provenance"]}
    assert {"iana-registry", "trojans"} <= kinds
    assert data["counts"]["entries"] > 14000 and data["counts"]["trojans"] == 801
    assert "days old" in cli("data", "info").stdout


def test_help_and_version(cli):
    assert "usage: portatlas" in cli("--help").stdout
    assert cli().returncode == 2
    assert cli("--version").stdout.startswith("portatlas ")


def test_python_api(atlas_db):
    import portatlas
    from portatlas.atlas import Atlas

    answer = portatlas.lookup(57)
    assert [e.description for e in answer.entries] == ["any private terminal access"] * 2
    assert portatlas.service("gppitnp").entries[0].port_lo == 103
    assert portatlas.search("mail transfer")[0].entry.service == "smtp"
    assert isinstance(portatlas.Atlas, type) and portatlas.Atlas is Atlas
    with pytest.raises(ValueError):
        portatlas.lookup(70000)


def test_api_functions_are_not_shadowed_by_submodules(atlas_db):
    """Importing every part of portatlas must leave portatlas.search/query/... callable."""
    import importlib
    import pkgutil

    import portatlas

    for info in pkgutil.walk_packages(portatlas.__path__, "portatlas."):
        if ".web" in info.name or info.name.endswith("__main__"):
            continue  # needs the optional web extra; checked by the web tests
        importlib.import_module(info.name)
    for name in ("lookup", "search", "service", "query"):
        assert callable(getattr(portatlas, name)), name
    assert portatlas.query("57").port == 57
