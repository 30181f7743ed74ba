"""Registry history and real-world use of ports.

- releases.py: find, read and normalise registry releases (the current one and older ones)
- compare.py: the record identity and what counts as a change between two releases
- store.py: the history tables in the registry database (written at build time, read per query)
- timeline.py: a port's timeline across releases, with the dates inside the records
- diff.py: the summary of what changed between two releases (`portatlas data diff`)
- notes.py + notes.json: our curated notes (origin, history, de-facto uses), each with sources
- section.py: the "history" section of a port answer
docs/history.md describes the decisions.
"""
