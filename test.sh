#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, Python packages) and run the whole suite.
set -uo pipefail
root=$(cd "$(dirname "$0")" && pwd)
bash "$root/scripts/setup.sh" test || exit 1
cd "$root"
"$root/.venv/bin/python" -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit $rc
