#!/usr/bin/env bash
# Run the test suite in the project's environment (see setup_env.sh); extra arguments go to
# pytest. Fails if no test ran (pytest exit 5).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/env.sh
python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$rc"
