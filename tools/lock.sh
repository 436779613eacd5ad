#!/usr/bin/env bash
# Refreshes requirements/constraints.txt: installs the project with every extra into a fresh virtual
# environment, with no constraints (the newest releases that setup.cfg's ranges admit), and writes down
# exactly what was installed. Run `make test` afterwards and commit the lock with the change that needed it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
lock=requirements/constraints.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip setuptools
"$tmp/venv/bin/python" -m pip install -q --no-build-isolation -e ".[dev,deploy,app,opensmile]"
{
    sed -n '1,3p' "$lock"
    "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | LC_ALL=C sort -f
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" "$lock"
echo "lock: wrote $lock ($(grep -c '==' "$lock") packages); now run: make test"
