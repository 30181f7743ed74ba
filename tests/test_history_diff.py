"""`portatlas data diff`: its counts equal an independent count made with xml.etree."""

from __future__ import annotations

import collections
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import HISTORY, IANA_XML

NS = "{http://www.iana.org/assignments}"
OLD_2017 = HISTORY / "service-names-port-numbers-2017-03-10.xml"
OLD_2024 = HISTORY / "service-names-port-numbers-2024-03-18.xml"
SCHEMA = Path(__file__).resolve().parents[1] / "src" / "portatlas" / "history" / "diff.schema.json"


# An independent implementation of the documented comparison (docs/history.md), on raw XML:
# a record's content is its whole XML subtree, order-free; a record without <assignee> is
# assigned to its first person xref (the contact); "Unassigned" rows are not records.
def _text(element) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _deep(e) -> tuple:
    return (e.tag, tuple(sorted(e.attrib.items())), " ".join((e.text or "").split()),
            " ".join((e.tail or "").split()), tuple(_deep(c) for c in e))


def _records(path: Path) -> list[tuple]:
    out = []
    for r in ET.parse(path).getroot().findall(NS + "record"):
        name = " ".join((r.findtext(NS + "name") or "").split()) or None
        description = _text(r.find(NS + "description"))
        note = _text(r.find(NS + "note"))
        if not name and description.lower().startswith("unassigned") and "de-assigned" not in note.lower():
            continue
        number = (r.findtext(NS + "number") or "").strip()
        if number:
            lo_text, _, hi_text = number.partition("-")
            lo, hi = int(lo_text), int(hi_text or lo_text)
        else:
            lo = hi = None
        proto = (r.findtext(NS + "protocol") or "").strip().lower() or None
        kids = [_deep(c) for c in r]
        if r.find(NS + "assignee") is None:
            people = [x for x in r.findall(NS + "xref") if x.get("type") == "person"]
            if people:
                kids.append((NS + "assignee", (), "", "",
                             ((NS + "xref", tuple(sorted(people[0].attrib.items())), "", "", ()),)))
        content = tuple(sorted(kids)) + tuple(sorted(r.attrib.items()))
        out.append(((name or "").lower(), lo, hi, proto, content))
    return out


def _range_class(lo) -> str:
    if lo is None:
        return "none"
    return "system" if lo <= 1023 else "user" if lo <= 49151 else "dynamic"


def independent_diff(old_path: Path, new_path: Path) -> dict:
    def keyed(records):
        seen: collections.Counter = collections.Counter()
        out = {}
        order = lambda r: (r[0], -1 if r[1] is None else r[1], -1 if r[2] is None else r[2], r[3] or "", r[4])
        for r in sorted(records, key=order):
            out[r[:4] + (seen[r[:4]],)] = r
            seen[r[:4]] += 1
        return out

    old, new = keyed(_records(old_path)), keyed(_records(new_path))
    gone = [old[k] for k in old if k not in new]
    came = [new[k] for k in new if k not in old]
    groups_gone = collections.Counter((r[1], r[2], r[3]) for r in gone if r[1] is not None)
    groups_came = collections.Counter((r[1], r[2], r[3]) for r in came if r[1] is not None)
    renamed = {g: min(n, groups_came[g]) for g, n in groups_gone.items() if groups_came[g]}
    by_class = {c: {"added": 0, "removed": 0, "changed": 0} for c in ("system", "user", "dynamic", "none")}
    changed = 0
    for k in old:
        if k in new and old[k][4] != new[k][4]:
            changed += 1
            by_class[_range_class(k[1])]["changed"] += 1
    for (lo, _, _), n in renamed.items():
        changed += n
        by_class[_range_class(lo)]["changed"] += n
    left_gone, left_came = dict(renamed), dict(renamed)
    removed = added = 0
    for r in gone:
        g = (r[1], r[2], r[3])
        if left_gone.get(g):
            left_gone[g] -= 1
            continue
        removed += 1
        by_class[_range_class(r[1])]["removed"] += 1
    for r in came:
        g = (r[1], r[2], r[3])
        if left_came.get(g):
            left_came[g] -= 1
            continue
        added += 1
        by_class[_range_class(r[1])]["added"] += 1
    return {"counts": {"added": added, "removed": removed, "changed": changed}, "by_range_class": by_class}


@pytest.fixture(scope="module")
def expected():
    return {
        ("2017-03-10", "2024-03-18"): independent_diff(OLD_2017, OLD_2024),
        ("2024-03-18", "2026-08-17"): independent_diff(OLD_2024, IANA_XML),
        ("2017-03-10", "2026-08-17"): independent_diff(OLD_2017, IANA_XML),
    }


def _diff(cli, *args) -> dict:
    result = cli("data", "diff", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("old, new", [("2017-03-10", "2024-03-18"), ("2024-03-18", "2026-08-17"),
                                      ("2017-03-10", "2026-08-17")])
def test_counts_equal_independent_count(cli, expected, old, new):
    data = _diff(cli, old, new)
    want = expected[(old, new)]
    got = {k: data["counts"][k] for k in ("added", "removed", "changed")}
    assert got == want["counts"]
    assert data["by_range_class"] == want["by_range_class"]
    assert len(data["added"]) == got["added"] and len(data["removed"]) == got["removed"]
    assert len(data["changed"]) == got["changed"]
    assert data["old"]["label"] == old and data["new"]["label"] == new


def test_files_and_database_labels_agree(cli):
    from_files = _diff(cli, str(OLD_2017), str(OLD_2024))
    from_db = _diff(cli, "oldest", "2024-03-18")
    assert from_files["counts"] == from_db["counts"]
    assert from_files["by_range_class"] == from_db["by_range_class"]
    assert from_files["old"]["from"] == "file" and from_db["old"]["from"] == "database"
    mixed = _diff(cli, "2024-03-18", str(IANA_XML))
    assert mixed["counts"] == _diff(cli, "2024-03-18", "current")["counts"]


def test_diff_json_schema_and_details(cli):
    import jsonschema

    data = _diff(cli, "2024-03-18", "current")
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    # the de-assignment of compressnet shows up as status changes on ports 2 and 3
    deassigned = [c for c in data["changed"] if c["ports"] in ("2", "3")]
    assert len(deassigned) == 4 and all(c["status"] == "deassigned" for c in deassigned)
    assert data["status_changes"].get("assigned->deassigned", 0) >= 4
    assert data["counts"]["unchanged"] + data["counts"]["changed"] + data["counts"]["removed"] \
        == data["old"]["records"]


def test_same_release_has_no_differences(cli):
    data = _diff(cli, "current", str(IANA_XML))
    assert data["counts"]["added"] == data["counts"]["removed"] == data["counts"]["changed"] == 0


def test_diff_text_output(cli):
    result = cli("data", "diff", "2017-03-10", "2024-03-18", "--limit", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Registry diff 2017-03-10 → 2024-03-18" in out
    assert "range class" in out and "system" in out and "total" in out
    assert "more (--all" in out


@pytest.mark.parametrize("args, code, message", [
    (("1999-01-01", "current"), 2, "neither a file nor a release"),
    (("current",), 2, "give two releases"),
    (("/nonexistent/old.xml", "current"), 3, "no such file"),
    (("current", "current", "--limit", "-1"), 2, "--limit"),
])
def test_diff_bad_input(cli, args, code, message):
    result = cli("data", "diff", *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("portatlas: error:") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_diff_malformed_file(cli, tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<registry><record><name>x</name>")
    result = cli("data", "diff", str(bad), "current")
    assert result.returncode == 3
    assert "not a well-formed registry XML file" in result.stderr
