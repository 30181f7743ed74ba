"""Issue 12, failures 3 and 10 on the identification side: a server that accepts and then
resets gets the same answer every time ('reset'), and what a TLS certificate says cannot
drive the terminal when `check` prints it."""

from __future__ import annotations

import datetime
import json
import sys

import pytest

from support.netns import Netns, available

pytestmark = [pytest.mark.netns]

RESETTER = '''
import socket, struct
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 7010)); s.listen(512)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # SO_LINGER 0: a reset, at once
'''


@pytest.fixture()
def ns():
    if not available():
        pytest.skip("needs root and ip netns")
    with Netns("pa12") as n:
        yield n


def _service(stdout: str) -> dict:
    data = json.loads(stdout)
    return data["hosts"][0]["ports"][0]["service"]


def test_accept_then_reset_gets_the_same_answer_every_time(ns, atlas_db):
    ns.popen([sys.executable, "-c", RESETTER])
    ns.wait_for_tcp(7010)
    answers = set()
    for _ in range(8):
        result = ns.portatlas("check", "127.0.0.1", "7010", "--json",
                              env={"PORTATLAS_DB": str(atlas_db)}, timeout=60)
        assert result.returncode == 0, result.stderr
        service = _service(result.stdout)
        answers.add((service["outcome"], service["reason"], service["extra"]["behaviour"]))
    assert answers == {("open-unidentified", "resets connections without sending anything",
                        "reset")}


EVIL_CN = "evil\x1b]0;pwned\x07\x1b[2Jname"


def _evil_cert(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, EVIL_CN),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org\x1b[2J\u009b2J")])
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("a\x1b]0;t\x07.test")]),
                           False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "evil.crt", directory / "evil.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_certificate_names_cannot_drive_the_terminal(ns, atlas_db, tmp_path):
    cert, key = _evil_cert(tmp_path)
    server = f'''
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain({str(cert)!r}, {str(key)!r})
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8443)); s.listen(64)
while True:
    c, _ = s.accept()
    try:
        t = ctx.wrap_socket(c, server_side=True); t.settimeout(2); t.recv(100); t.close()
    except Exception:
        c.close()
'''
    ns.popen([sys.executable, "-c", server])
    ns.wait_for_tcp(8443)
    env = {"PORTATLAS_DB": str(atlas_db), "FORCE_COLOR": "1"}
    text = ns.portatlas("check", "127.0.0.1", "8443", env=env, timeout=60)
    assert text.returncode == 0, text.stderr
    out = text.stdout + text.stderr
    assert "evil" in out  # the name is shown ...
    assert "\x07" not in out and "\x1b]" not in out and "\x1b[2J" not in out  # ... made safe
    assert "\u009b" not in out
    assert "\\x1b]0;pwned\\x07" in out
    # JSON keeps the real value, escaped the JSON way, and stays valid
    raw = ns.portatlas("check", "127.0.0.1", "8443", "--json", env=env, timeout=60)
    assert "\x1b" not in raw.stdout and "\u009b" not in raw.stdout
    assert EVIL_CN in set(_strings(json.loads(raw.stdout)))


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
