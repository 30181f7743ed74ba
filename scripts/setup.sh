#!/usr/bin/env bash
# Idempotent set-up shared by run.sh and test.sh: a virtualenv in .venv with portatlas
# installed in editable mode. Pass "test" to also install the Debian packages and Python
# extras the test suite needs (CI runs on a fresh machine, so nothing may be assumed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-run}

install_debian_packages() {
    local wanted missing=()
    wanted=$(cat "$root"/.ci/apt/*.txt | sed 's/#.*//' | tr -s ' \n' '\n' | sort -u)
    for pkg in $wanted; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root to install Debian packages: ${missing[*]}" >&2
        return 1
    fi
    # Packaged daemons must not start on this machine's own loopback during install:
    # tests start them themselves, inside network namespaces.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
    fi
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

if [ ! -x "$root/.venv/bin/python" ]; then
    python3 -m venv "$root/.venv"
fi
py="$root/.venv/bin/python"
stamp="$root/.venv/.portatlas-$mode"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    "$py" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    if [ "$mode" = test ]; then
        "$py" -m pip install -q --disable-pip-version-check -e "$root[web,tls,test]" >&2
    else
        "$py" -m pip install -q --disable-pip-version-check -e "$root[web,tls]" >&2
    fi
    touch "$stamp"
fi
if [ "$mode" = test ]; then
    install_debian_packages
fi
