#!/usr/bin/env bash
# Set up (first time only) and run portatlas: ./run.sh 57
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
bash "$root/scripts/setup.sh" run
exec "$root/.venv/bin/portatlas" "$@"
