"""Issue 12, failures 2, 5 and 7, and the README's exit-code table for every command: bad
input gets one line on stderr ('portatlas: error: ...') and the documented code; no
traceback, no unbounded read, no hang on a FIFO or a device."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from conftest import IANA_XML
from support import netns

ERR = "portatlas: error: "


def one_line_error(result, code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERR), result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- failure 5: databases that claim the schema but are not whole -----------------------------
@pytest.fixture(scope="module")
def hollow_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("hollow") / "hollow.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def no_history_db(tmp_path_factory, atlas_db):
    path = tmp_path_factory.mktemp("nohist") / "nohist.sqlite3"
    path.write_bytes(atlas_db.read_bytes())
    conn = sqlite3.connect(path)
    for table in ("history_release", "history_record", "history_people", "history_note"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("args", [["57"], ["6000-6010"], ["http"], ["search", "mail"],
                                  ["data", "info"], ["history", "57"], ["data", "history"]])
def test_hollow_database_is_one_line(cli, hollow_db, args):
    result = cli(*args, "--db", str(hollow_db))
    one_line_error(result, 3, "damaged database", "no entries", "portatlas data update")


@pytest.mark.parametrize("args", [["57"], ["history", "57"]])
def test_database_without_history_tables_is_one_line(cli, no_history_db, args):
    result = cli(*args, "--db", str(no_history_db))
    one_line_error(result, 3, "history_release", "portatlas data update")


def test_unwritable_database_location_is_one_line(cli, tmp_path):
    # a folder that cannot be made (in /proc), and a "folder" that is a file
    result = cli("data", "update", "--from", str(IANA_XML), "--db", "/proc/pa12-none/x.sqlite3")
    one_line_error(result, 4, "cannot create the database folder")
    plain = tmp_path / "plain"
    plain.write_text("x")
    result = cli("data", "update", "--from", str(IANA_XML), "--db", str(plain / "x.sqlite3"))
    one_line_error(result, 2, "Not a directory")


@pytest.mark.skipif(not netns.available() or not os.path.exists("/usr/bin/unshare"),
                    reason="needs root and unshare")
def test_read_only_database_folder_is_one_line(tmp_path, atlas_db):
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount -t tmpfs -o ro tmpfs {ro} && exec {sys.executable} -m portatlas data update "
              f"--from {IANA_XML} --db {ro}/x.sqlite3")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=120)
    one_line_error(result, 4, "cannot write the database", "Read-only file system")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300"])
def test_watch_interval_must_be_finite(cli, value):
    result = cli("local", "--watch", "--interval", value, "--count", "1")
    one_line_error(result, 2, "--interval")


def test_malformed_url_is_one_line(cli, tmp_path):
    result = cli("data", "update", "--from", "http://[::1/x", "--db", str(tmp_path / "x.sqlite3"))
    one_line_error(result, 2, "not a usable URL")


# --- failure 2: every input read with a byte limit, whatever kind of file ----------------------
def _guarded(atlas_db, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The CLI under a 1 GiB address-space limit: if a regression read a device without end,
    it would fail fast instead of taking the machine's memory."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = dict(os.environ, PORTATLAS_DB=str(atlas_db), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "portatlas", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, preexec_fn=limit)


@pytest.fixture()
def zero_device(tmp_path):
    """A device node of our own that reads like /dev/zero: a regression that wrote over the
    'database' it names replaces this node, never the system's /dev/zero."""
    node = tmp_path / "zero"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
        with open(node, "rb") as stream:
            assert stream.read(4) == b"\0\0\0\0"
    except (PermissionError, OSError, AssertionError):
        pytest.skip("cannot make a device node here")
    return node


@pytest.mark.parametrize("args, code, words", [
    (["data", "update", "--from", "ZERO", "--db", "TMP/x.sqlite3"], 3, ["character device"]),
    (["scan", "@ZERO"], 2, ["character device"]),
    (["check", "127.0.0.1", "1", "--nmap-probes", "ZERO"], 3, ["character device"]),
    (["57", "--db", "ZERO"], 3, ["character device"]),
    (["data", "update", "--from", "XML", "--db", "ZERO"], 2, ["character device"]),
])
def test_devices_are_refused_at_once(atlas_db, tmp_path, zero_device, args, code, words):
    args = [a.replace("ZERO", str(zero_device)).replace("TMP", str(tmp_path))
            .replace("XML", str(IANA_XML)) for a in args]
    started = time.monotonic()
    result = _guarded(atlas_db, *args)
    one_line_error(result, code, *words)
    assert time.monotonic() - started < 20
    assert stat.S_ISCHR(os.stat(zero_device).st_mode)  # not replaced by a database


def test_fifo_given_as_source_or_database_does_not_hang(cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = cli("data", "update", "--from", str(fifo), "--db", str(tmp_path / "x.sqlite3"),
                 timeout=30)
    one_line_error(result, 3, "FIFO")
    result = cli("57", "--db", str(fifo), timeout=30)
    one_line_error(result, 3, "FIFO")
    result = cli("scan", f"@{fifo}", timeout=30)
    one_line_error(result, 2, "FIFO")


def _feed_zero(args: list[str], atlas_db, limit_bytes: int) -> tuple[subprocess.CompletedProcess, int]:
    """Run the CLI with /dev/zero as standard input; return the result and its peak RSS (KiB)."""
    env = dict(os.environ, PORTATLAS_DB=str(atlas_db), NO_COLOR="1")
    code = ("import resource, subprocess, sys\n"
            "lim = lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "r = subprocess.run(sys.argv[1:], stdin=open('/dev/zero','rb'), capture_output=True,"
            " text=True, preexec_fn=lim, timeout=60)\n"
            "sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + '\\n' + str(r.returncode) + '\\n')\n"
            "sys.stderr.write(r.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "portatlas", *args],
                            capture_output=True, text=True, timeout=120, env=env)
    peak, rc = result.stdout.split()
    return subprocess.CompletedProcess(args, int(rc), "", result.stderr), int(peak)


@pytest.mark.parametrize("args, code, limit_mib", [
    (["data", "update", "--from", "/dev/stdin"], 3, 64),
    (["data", "update", "--from", "-"], 3, 64),
    (["scan", "-iL", "-"], 2, 8),
])
def test_endless_standard_input_is_cut_at_the_limit(atlas_db, tmp_path, args, code, limit_mib):
    if args[0] == "data":
        args = args + ["--db", str(tmp_path / "x.sqlite3")]
    result, peak_kib = _feed_zero(args, atlas_db, limit_mib)
    one_line_error(result, code, "standard input", f"more than {limit_mib} MiB")
    # the read is bounded: peak memory stays near the limit, nowhere near a runaway read
    assert peak_kib < (limit_mib * 3 + 120) * 1024, peak_kib


def test_registry_from_standard_input_still_works(cli, tmp_path):
    db = tmp_path / "stdin.sqlite3"
    result = subprocess.run([sys.executable, "-m", "portatlas", "data", "update", "--from", "-",
                             "--db", str(db)], stdin=IANA_XML.open("rb"), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "standard input" in result.stdout


# --- failure 7 and the README's exit-code table -----------------------------------------------
def test_no_arguments_prints_usage_to_stderr_and_exits_2(cli):
    for args in ([], ["data"]):
        result = cli(*args)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.startswith("usage: portatlas")
    for args in (["--help"], ["data", "--help"]):
        result = cli(*args)
        assert result.returncode == 0 and result.stdout.startswith("usage: portatlas")


EXIT_TABLE = [
    # (arguments, code, a word of the message)            README: 0 ok, 1 not found, 2 usage,
    (["70000"], 2, "out of range"),                        # 3 data problem, 4 network/system
    (["57/xyz"], 2, "transport"),
    (["57", "--bogus"], 2, "unrecognized"),
    (["nosuchservicexyz"], 1, "no service named"),
    (["search"], 2, "required"),
    (["search", "mail", "--limit", "x"], 2, "invalid"),
    (["data", "bogus"], 2, "unknown data command"),
    (["data", "update", "--from", "/nonexistent/registry.xml"], 3, "no such file"),
    (["data", "info", "--db", "/nonexistent/db.sqlite3"], 3, "no database"),
    (["data", "diff", "bogus1", "bogus2"], 2, "neither a file nor a release"),
    (["data", "history", "--db", "/dev/null"], 3, "no database"),
    (["local", "--interval", "nan", "--watch"], 2, "--interval"),
    (["local", "--bogus"], 2, "unrecognized"),
    (["free", "70000"], 2, "out of range"),
    (["check"], 2, "usage"),
    (["check", "198.18.0.1", "70000"], 2, "70000"),
    (["scan"], 2, "name the hosts"),
    (["scan", "198.18.0.1", "-p", "0-99999"], 2, "99999"),
    (["serve", "--port", "99999"], 2, "out of range"),
    (["serve", "--workers", "0"], 2, "--workers"),
    (["history", "70000"], 2, "out of range"),
    (["history", "57", "--db", "/dev/null"], 3, "character device"),
    (["changes", "--since", "soon"], 2, "--since"),
    (["changes", "--snapshots", "/nonexistent/s.sqlite3"], 1, "no snapshots yet"),
    (["changes", "--snapshots", "/dev/null"], 3, "not a regular file"),
]


@pytest.mark.parametrize("args, code, word", EXIT_TABLE)
def test_exit_code_table(cli, args, code, word):
    result = cli(*args, timeout=60)
    one_line_error(result, code, word)


def test_exit_code_table_covers_every_command():
    from portatlas.cli import COMMANDS

    covered = {args[0] if args[0] in COMMANDS else "port" for args, _, _ in EXIT_TABLE}
    assert covered >= set(COMMANDS)


@pytest.mark.skipif(not netns.available(), reason="needs root for a network namespace")
def test_refused_download_exits_4(tmp_path):
    with netns.Netns("pa12") as ns:
        result = ns.portatlas("data", "update", "--from", "http://127.0.0.1:9/registry.xml",
                              "--db", str(tmp_path / "x.sqlite3"), timeout=60)
    one_line_error(result, 4, "download failed", "refused")


@pytest.mark.skipif(not netns.available(), reason="needs root for a network namespace")
def test_interrupted_exits_130(atlas_db):
    """An interrupted command exits 130 (a scan prints what it has so far)."""
    env = dict(os.environ, PORTATLAS_DB=str(atlas_db), NO_COLOR="1")
    with netns.Netns("pa12") as ns:
        ns.run(["iptables", "-A", "INPUT", "-i", "lo", "-p", "tcp", "-j", "DROP"])
        proc = subprocess.Popen(ns.argv([sys.executable, "-m", "portatlas", "scan", "127.0.0.1",
                                         "-p", "1-65535"]), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(2.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out[-500:], err[-500:])
    assert "Traceback" not in err and "interrupted" in out


def test_watch_ends_with_ctrl_c_and_exit_0(atlas_db):
    """Ctrl-C is how --watch is meant to end: exit 0, as the README says."""
    env = dict(os.environ, PORTATLAS_DB=str(atlas_db), NO_COLOR="1")
    proc = subprocess.Popen([sys.executable, "-m", "portatlas", "local", "--watch", "--interval",
                             "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_fifos_among_the_optional_sources_do_not_hang(cli, tmp_path):
    """nmap-services and history folders are read too: a FIFO there is skipped, not waited on."""
    history = tmp_path / "history"
    history.mkdir()
    os.mkfifo(history / "release.xml")
    os.mkfifo(tmp_path / "nmap-services")
    result = cli("data", "update", "--from", str(IANA_XML), "--db", str(tmp_path / "x.sqlite3"),
                 env={"PORTATLAS_NMAP_SERVICES": str(tmp_path / "nmap-services"),
                      "PORTATLAS_HISTORY": str(history)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "FIFO" in result.stderr and "Traceback" not in result.stderr


def test_read_limited_rules(tmp_path):
    from portatlas.errors import DataError, UsageError
    from portatlas.io_limits import read_limited

    small = tmp_path / "small"
    small.write_bytes(b"x" * 100)
    assert read_limited(str(small), limit=100, what="a file") == b"x" * 100
    with pytest.raises(DataError, match="too large"):
        read_limited(str(small), limit=99, what="a file")
    with pytest.raises(UsageError, match="is a directory"):
        read_limited(str(tmp_path), limit=10, what="a file", error=UsageError)
    with pytest.raises(DataError, match="no such file"):
        read_limited(str(tmp_path / "none"), limit=10, what="a file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(DataError, match="FIFO"):
        read_limited(str(fifo), limit=10, what="a file")
    assert time.monotonic() - started < 2

