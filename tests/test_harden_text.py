"""Issue 12, failure 3: whatever came from the network or a file is made safe for a terminal
at output, by one function (portatlas.textsafe.terminal_safe) and a backstop on stdout and
stderr that lets through only portatlas's own colour sequences."""

from __future__ import annotations

import io
import json

import pytest

from portatlas.textsafe import SafeStream, own, terminal_safe

NASTY = ["\x1b]0;retitled\x07", "\x1b[2J", "\x1b[1;1H", "\x9b2J", "\x1b]52;c;aGk=\x07",
         "a\rb", "nul\x00", "bidi\u202eevil", "line\u2028sep", "\x7f"]


@pytest.mark.parametrize("text", NASTY)
def test_terminal_safe_leaves_nothing_a_terminal_acts_on(text):
    safe = terminal_safe(text)
    assert safe.isprintable(), repr(safe)
    assert "\x1b" not in safe and "\x07" not in safe


def test_terminal_safe_keeps_ordinary_text_and_lines_when_asked():
    assert terminal_safe("Mail Transfer Protocol é ✓") == "Mail Transfer Protocol é ✓"
    assert terminal_safe("a\nb\tc", multiline=True) == "a\nb\tc"
    assert terminal_safe("a\nb") == "a\\nb"
    assert terminal_safe(None) == ""


def test_backstop_passes_our_own_sequences_only():
    out = io.StringIO()
    stream = SafeStream(out)
    stream.write(own("\x1b[1m") + "bold" + own("\x1b[0m") + " " + own("\x1b[K") + own("\r") + "\n")
    stream.write("cert \x1b]0;x\x07 \x1b[2J \x1b[31mred \x9b2J a\rb\n")
    assert out.getvalue() == ("\x1b[1mbold\x1b[0m \x1b[K\r\n"
                              "cert \\x1b]0;x\\x07 \\x1b[2J \\x1b[31mred \\u009b2J a\\rb\n")


def test_a_forged_tag_is_not_obeyed():
    from portatlas.textsafe import END

    out = io.StringIO()
    SafeStream(out).write("\ue000deadbeefE[2J" + END)  # the right shape, a wrong nonce
    assert "\x1b" not in out.getvalue()


def test_backstop_keeps_json_valid():
    out = io.StringIO()
    SafeStream(out).write(json.dumps({"x": "a\x9bb\u202e"}, ensure_ascii=False))
    assert json.loads(out.getvalue()) == {"x": "a\x9bb\u202e"}
    assert "\x9b" not in out.getvalue()


@pytest.fixture(scope="module")
def tainted_db(tmp_path_factory):
    """A database holding control characters (as one built before the importers refused
    them would): the renderers must still not pass them on."""
    from portatlas.kb.store import BuildInput, write_database
    from portatlas.model import Entry, Person

    who = Person("Evil_Person", "Evil\x1b]0;who\x07", None, None, None)
    entries = [Entry("evil\x1b[2J", 57, 57, "tcp", "mail\x1b]0;retitled\x07 transfer",
                     assignee=who, notes="note\x1b[31m red\x9b2J"),
               Entry("fine", 58, 58, "tcp", "just mail")]
    db = tmp_path_factory.mktemp("tainted") / "tainted.sqlite3"
    write_database(db, BuildInput(entries, {who.id: who}, [
        {"kind": "iana-registry", "location": "test\x1b[2J", "format": "csv", "sha256": "x",
         "registry_date": "2026-01-01", "records": 2}]))
    return db


@pytest.mark.parametrize("args", [["57"], ["57/tcp"], ["50-60"], ["evil\x1b[2J"], ["evil"],
                                  ["search", "mail"], ["data", "info"]])
def test_registry_text_is_safe_on_the_terminal(cli, tainted_db, args):
    result = cli(*args, "--db", str(tainted_db), "--no-local", "--no-history") \
        if args[0] not in ("search", "data") else cli(*args, "--db", str(tainted_db))
    assert result.returncode in (0, 1, 2), result.stderr
    out = result.stdout + result.stderr
    assert "\x1b]" not in out and "\x07" not in out and "\x1b[2J" not in out
    assert "\x9b" not in out and "\x1b[31m" not in out


def test_json_output_is_valid_and_keeps_the_value(cli, tainted_db):
    result = cli("57", "--json", "--no-local", "--db", str(tainted_db))
    data = json.loads(result.stdout)
    assert data["entries"]["tcp"][0]["description"] == "mail\x1b]0;retitled\x07 transfer"


def test_the_ascii_fast_path_gives_what_the_regular_expression_gives():
    # terminal_safe skips the regular expression for plain ASCII: every ASCII character, in a
    # one-line and a multiline text, must come out exactly as the expression would make it
    from portatlas import textsafe

    # (short texts and long ones, which take another way: one search per unsafe character)
    for code in range(128):
        for multiline in (False, True):
            for pad in ("", "x" * (textsafe._LONG + 1)):
                text = f"ab{chr(code)}\ncd\t{pad}" if multiline else f"{pad}ab{chr(code)}cd"
                pattern = textsafe._UNSAFE_MULTILINE if multiline else textsafe._UNSAFE
                assert textsafe.terminal_safe(text, multiline=multiline) == \
                    pattern.sub(textsafe._escape, text), (code, multiline, len(pad))
