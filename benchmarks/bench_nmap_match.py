#!/usr/bin/env python3
"""Matching cost of nmap's match lines in portatlas (no network; no root needed).

For every captured reply of the identification tests (tests/support/capture_corpus.py),
judged as the reply to the nmap probe that elicits it (greetings: NULL; others: the probes
of the corpus table, or GetRequest when none), prints:

  lines   how many match lines the own-probe rule applies (the probe's, its fallbacks', NULL's)
  cold    ms for the first judgement in a fresh database (prefilters computed, the few
          lines that pass them compiled)
  warm    ms for the same judgement again
  plain   ms for trying every applicable line with its compiled regex and no prefilter
          (what matching costs without the literal prefilter), warm

and the totals; plus, for information, the time to parse the whole file and to compile all
of its expressions (what a no-prefilter design would pay per process).

    .venv/bin/python benchmarks/bench_nmap_match.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from portatlas.identify import nmap  # noqa: E402
from portatlas.identify.nmap.db import parse  # noqa: E402
from portatlas.identify.nmap.matching import applicable, match_reply  # noqa: E402
from support import capture_corpus  # noqa: E402


def main() -> int:
    path = nmap.find_db()
    if path is None:
        print("no nmap-service-probes installed (Debian's nmap-common)")
        return 1
    text = Path(path).read_text(encoding="latin-1")
    start = time.perf_counter()
    db = parse(text, path)
    parse_s = time.perf_counter() - start
    corpus = capture_corpus.load()
    rows = []
    for name, data in corpus.items():
        via, _ = capture_corpus.TABLE.get(name, (capture_corpus.OWN, set()))
        if via == capture_corpus.GREETING:
            probe = db.probe("tcp", "NULL")
        elif via == capture_corpus.OWN:
            probe = db.probe("tcp", "GetRequest")
        else:
            probe = db.probe(via[0], via[1])
        lines = [m for p in applicable(db, probe) for m in p.matches]
        t0 = time.perf_counter()
        hit = match_reply(db, probe, data)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        match_reply(db, probe, data)
        warm = time.perf_counter() - t0
        for m in lines:
            m.regex()
        t0 = time.perf_counter()
        for m in lines:
            m.regex().search(data)
        plain = time.perf_counter() - t0
        rows.append((name, probe.name, len(lines), cold, warm, plain,
                     f"{hit.service} (line {hit.line})" if hit else "-"))
    start = time.perf_counter()
    for m in db.match_lines:
        m.regex()
    compile_s = time.perf_counter() - start
    print(f"{'reply':<20} {'probe':<22} {'lines':>6} {'cold ms':>8} {'warm ms':>8} "
          f"{'plain ms':>9}  hit")
    for name, probe, n, cold, warm, plain, hit in rows:
        print(f"{name:<20} {probe:<22} {n:>6} {cold * 1e3:>8.2f} {warm * 1e3:>8.2f} "
              f"{plain * 1e3:>9.2f}  {hit}")
    total = [sum(r[i] for r in rows) for i in (3, 4, 5)]
    print(f"{'total':<20} {'':<22} {'':>6} {total[0] * 1e3:>8.1f} {total[1] * 1e3:>8.1f} "
          f"{total[2] * 1e3:>9.1f}")
    print(f"warm matching with the prefilter: {total[1] / max(total[2], 1e-9):.3f}x the cost "
          "of trying every applicable regex")
    print(f"parse of the whole file: {parse_s * 1e3:.0f} ms; compiling all "
          f"{len(db.match_lines)} expressions: {compile_s * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
