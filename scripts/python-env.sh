#!/usr/bin/env bash
# Creates (once) the Python venv .tern/python/<name> with the pinned packages of scripts/python/<name>.txt and prints
# the path of its python on stdout; progress goes to stderr.
#
#   scripts/python-env.sh tritonclient      # -> /path/to/repo/.tern/python/tritonclient/bin/python
#   scripts/python-env.sh mlserver          # MLServer 1.7.1 for agents of server type mlserver (a few minutes first)
#
# The venv is rebuilt only when the requirements file changes (its sha256 is kept in the venv), so the first call
# downloads from PyPI (about a minute) and later calls return at once. Concurrent calls wait for each other (flock).
# Needs python3 3.10+ with the venv module (TERN_PYTHON names another interpreter). A new environment is one more
# scripts/python/<name>.txt.
set -euo pipefail

name="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$root/scripts/python/$name.txt"
if [[ -z "$name" || ! -f "$requirements" ]]; then
  echo "usage: scripts/python-env.sh <name>, with <name> one of: $(cd "$root/scripts/python" && ls *.txt | sed 's/\.txt$//' | tr '\n' ' ')" >&2
  exit 2
fi

python="${TERN_PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "python-env: $python not found: the $name environment needs Python 3.10+ (install python3, or set TERN_PYTHON)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "python-env: $("$python" --version 2>&1) is too old: the $name environment needs Python 3.10+ (or set TERN_PYTHON)" >&2
  exit 1
fi
# An environment may narrow the range with a line `# python: MIN MAX` (e.g. `# python: 3.11 3.12`) in its file.
read -r py_min py_max < <(sed -n 's/^# python: *//p' "$requirements" | head -1; echo)
if [[ -n "${py_min:-}" ]] && ! "$python" -c "import sys
lo = tuple(map(int, '$py_min'.split('.'))); hi = tuple(map(int, '${py_max:-9.99}'.split('.')))
sys.exit(0 if lo <= sys.version_info[:2] <= hi else 1)"; then
  echo "python-env: $("$python" --version 2>&1) cannot run the $name environment: it needs Python $py_min to ${py_max:-any later} (set TERN_PYTHON to one)" >&2
  exit 1
fi

base="$root/.tern/python"
venv="$base/$name"
mkdir -p "$base"
exec 9>"$base/$name.lock"
# flock (util-linux) is on every Linux machine and in CI; without it (macOS) concurrent first calls are not serialised.
if command -v flock >/dev/null 2>&1; then flock 9; fi

if command -v sha256sum >/dev/null 2>&1; then
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
else
  want="$(shasum -a 256 "$requirements" | cut -d' ' -f1)"
fi
if [[ -x "$venv/bin/python" && "$(cat "$venv/.requirements.sha256" 2>/dev/null)" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

echo "python-env: creating $venv with $("$python" --version 2>&1) from scripts/python/$name.txt" >&2
rm -rf "$venv"
if ! "$python" -m venv "$venv" >&2; then
  echo "python-env: '$python -m venv' failed: install the venv module (e.g. apt-get install python3-venv)" >&2
  rm -rf "$venv"
  exit 1
fi
# An environment may add pip options with a line `# pip: OPTIONS` (e.g. `# pip: --no-deps` for a file that pins its
# whole closure and swaps a package for a drop-in one that pip's resolver would not accept).
read -r -a pip_options < <(sed -n 's/^# pip: *//p' "$requirements" | head -1; echo)
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar on ${pip_options[@]+"${pip_options[@]}"} -r "$requirements" >&2; then
  echo "python-env: pip install -r scripts/python/$name.txt failed (see above)" >&2
  rm -rf "$venv"
  exit 1
fi
echo "$want" >"$venv/.requirements.sha256"
echo "python-env: $name ready" >&2
echo "$venv/bin/python"
