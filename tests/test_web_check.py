"""Remote checks from the browser: off by default, an exact allow-list when on."""

from __future__ import annotations

import sys

import httpx
import pytest

from support.netns import Netns, available, link
from support.web import client, form_token, make_app, start_server, thread_in_netns

LISTEN = ("import socket,time\n"
          "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('0.0.0.0', 8080)); s.listen(16)\n"
          "time.sleep(300)\n")


def test_checks_are_off_by_default(atlas_db, tmp_path):
    app = make_app(atlas_db, tmp_path / "fb.sqlite3")
    c = client(app)
    try:
        page = c.get("/check")
        assert page.status_code == 200 and "Remote checks are off" in page.text
        assert "/check" not in c.get("/").text.split("<main")[0]  # no nav entry
        token = form_token(c.get("/ports/22").text)
        r = c.post("/api/check", json={"host": "198.18.0.2", "ports": [22]},
                   headers={"x-csrf-token": token})
        assert r.status_code == 403 and "--allow-check" in r.json()["error"]
        assert c.post("/check", data={"csrf": token, "host": "198.18.0.2",
                                      "ports": "22"}).status_code == 403
    finally:
        c.close()


@pytest.mark.parametrize("spec", ["198.18.0.0/24", "@/etc/hosts", "a b"])
def test_allow_list_takes_single_hosts_only(atlas_db, tmp_path, spec):
    from portatlas.errors import UsageError

    with pytest.raises(UsageError):
        make_app(atlas_db, tmp_path / "fb.sqlite3", allow_check=[spec])


@pytest.mark.netns
def test_allow_listed_host_is_checked_and_nothing_else(atlas_db, tmp_path):
    if not available():
        pytest.skip("needs root and ip netns")
    with Netns("chk-srv") as server_ns, Netns("chk-dst") as target_ns:
        _, target = link(server_ns, target_ns)
        target_ns.popen([sys.executable, "-c", LISTEN])
        target_ns.wait_for_tcp(8080, host=target)
        proc, info = start_server(server_ns, atlas_db, tmp_path / "fb.sqlite3",
                                  "--allow-check", f"{target},localhost")
        assert info["allow_check"] == [target, "localhost"]
        with thread_in_netns(server_ns.name), httpx.Client(base_url=info["url"], timeout=30) as c:
            assert "Check" in c.get("/").text
            token = form_token(c.get("/ports/22").text)

            def check(body):
                return c.post("/api/check", json=body, headers={"x-csrf-token": token})

            r = check({"host": target, "ports": [8080, 8081]})
            assert r.status_code == 200, r.text
            states = {x["port"]: x["state"] for x in r.json()["results"]}
            assert states == {8080: "open", 8081: "closed"}
            assert r.json()["scan"]["schema"] == "portatlas.scan/1"
            # the same identification as `portatlas check` (issue 11): what answers, and how
            # that was decided (this listener accepts and never speaks)
            service = {x["port"]: x.get("service") for x in r.json()["results"]}
            assert service[8080]["outcome"] == "open-unidentified", service[8080]
            assert service[8080]["basis"]["by"] == "none" and service[8081] is None
            # refused: other hosts, this machine by another name, tricks, too many ports
            for body, status in [
                ({"host": "198.18.0.77", "ports": [22]}, 403),
                ({"host": "127.0.0.2", "ports": [22]}, 403),
                ({"host": "@/etc/passwd", "ports": [22]}, 403),
                ({"host": f"{target}/24", "ports": [22]}, 403),
                ({"host": target, "ports": list(range(1, 18))}, 400),
                ({"host": target, "ports": [0]}, 400),
                ({"host": target, "ports": [22], "transport": "udp"}, 400),
            ]:
                got = check(body)
                assert got.status_code == status, (body, got.text)
            # the name on the list is resolved and matched address by address
            local = check({"host": "localhost", "ports": [8357]})
            assert local.status_code == 200
            assert {x["state"] for x in local.json()["results"]} == {"open"}
            assert check({"host": "127.0.0.1", "ports": [8357]}).status_code == 200
            # the form without JavaScript
            page = c.post("/check", data={"csrf": token, "host": target, "ports": "8080,8082"})
            assert page.status_code == 200 and "open" in page.text and "8082/tcp" in page.text
            # a few checks a minute per client
            codes = [check({"host": target, "ports": [8080]}).status_code for _ in range(8)]
            assert 429 in codes
        proc.terminate()
