#!/usr/bin/env bash
# One entry point that needs only Python 3.10+ and bash (no make, Docker or system Redis).
#   ./dev.sh run    set up .venv, then `stalwart dev` (embedded Redis, worker, Flower, demo)
#   ./dev.sh test   set up .venv and the browser (Debian's chromium), then ruff, mypy and pytest;
#                   with no arguments, the Celery/kombu seam's tests then run again on the oldest
#                   supported pair (celery 5.5.3, kombu 5.5.4) in .venv-oldest
#   ./dev.sh lint   ruff and mypy only
#   ./dev.sh oldest the Celery/kombu seam's tests on the oldest supported pair only
#   ./dev.sh bench  bench/throughput.py (plain Celery vs the Stalwart envelope)
# Setup is idempotent and quiet: the venv is created once, and `pip install -e '.[dev]'` reruns
# only when pyproject.toml changes. PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1

quiet_pip() {
  # pip's output goes to a log, shown only when pip fails.
  if ! "$VENV/bin/python" -m pip "$@" > "$VENV/pip.log" 2>&1; then
    cat "$VENV/pip.log" >&2
    echo "dev.sh: pip $* failed (log above, also in $VENV/pip.log)" >&2
    exit 2
  fi
}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      echo "dev.sh: needs Python 3.10+ as \$PYTHON (now: $PYTHON)" >&2
      exit 2
    fi
    echo "dev.sh: creating $VENV" >&2
    if ! "$PYTHON" -m venv "$VENV"; then
      echo "dev.sh: '$PYTHON -m venv' failed (on Debian/Ubuntu: apt install python3-venv)" >&2
      exit 2
    fi
    quiet_pip install --upgrade pip
  fi
  local stamp="$VENV/.stalwart-installed" want
  want=$("$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' < pyproject.toml)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$VENV/bin/stalwart" ]; then
    echo "dev.sh: installing stalwart and its dev tools into $VENV" >&2
    quiet_pip install -e '.[dev]'
    echo "$want" > "$stamp"
  fi
}

ensure_browser() {
  # The console's browser tests drive Debian's Chromium (never a browser downloaded from elsewhere).
  # Installed here when missing and possible (root with apt-get, as CI is); under CI=true a
  # missing browser fails the run, so the browser tests never skip there.
  local browser=/usr/bin/chromium
  if [ -x "$browser" ]; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
    echo "dev.sh: installing Debian's chromium for the console's browser tests" >&2
    if apt-get update -q > "$VENV/apt.log" 2>&1 &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >> "$VENV/apt.log" 2>&1 &&
       [ -x "$browser" ]; then
      return 0
    fi
    echo "dev.sh: installing chromium failed (log: $VENV/apt.log)" >&2
  fi
  if [ "${CI:-}" = "true" ]; then
    echo "dev.sh: CI=true and no browser at $browser: the console's browser tests must run" >&2
    exit 2
  fi
  echo "dev.sh: no browser at $browser (needs root and apt-get to install it); the browser tests will skip" >&2
}

# The oldest Celery/kombu pair Stalwart supports (broker/compat.py, pyproject.toml): the tests
# that exercise the Celery/kombu seam run again on it, in a virtual environment of its own.
OLDEST_VENV=${OLDEST_VENV:-.venv-oldest}
OLDEST_PINS=("celery[redis]==5.5.3" "kombu==5.5.4" "redis[hiredis]==5.2.1")  # kombu 5.5 allows redis <= 5.2.1
SEAM_TESTS=(
  tests/unit/test_transport.py tests/unit/test_compat.py tests/unit/test_delivery.py
  tests/integration/test_bad_messages.py tests/integration/test_bad_message_signals.py
  tests/integration/test_delayed.py tests/integration/test_fetch_and_commit.py
  tests/integration/test_envelope.py tests/integration/test_chaos.py
)

setup_oldest() {
  local stamp="$OLDEST_VENV/.stalwart-installed" want
  if [ ! -x "$OLDEST_VENV/bin/python" ]; then
    echo "dev.sh: creating $OLDEST_VENV (${OLDEST_PINS[*]})" >&2
    "$PYTHON" -m venv "$OLDEST_VENV"
  fi
  want=$( (cat pyproject.toml; echo "${OLDEST_PINS[*]}") | "$OLDEST_VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "dev.sh: installing stalwart with ${OLDEST_PINS[*]} into $OLDEST_VENV" >&2
    VENV=$OLDEST_VENV quiet_pip install -e '.[dev]' "${OLDEST_PINS[@]}"
    echo "$want" > "$stamp"
  fi
}

run_oldest() {
  setup_oldest
  echo "dev.sh: the Celery/kombu seam's tests on the oldest supported pair (${OLDEST_PINS[*]})" >&2
  "$OLDEST_VENV/bin/python" -m pytest -q -n 2 --dist loadfile "${SEAM_TESTS[@]}"
}

lint() {
  local rc=0
  "$VENV/bin/ruff" check . || rc=1
  "$VENV/bin/mypy" || rc=1
  return "$rc"
}

run_tests() {
  local lint_rc=0 test_rc=0
  lint || lint_rc=$?
  local parallel=()
  if [ "$#" -eq 0 ]; then  # the whole suite: two pytest processes, one test file each at a time
    parallel=(-n 2 --dist loadfile)  # the integration tests mostly wait on their workers
  fi
  "$VENV/bin/python" -m pytest "${parallel[@]}" "$@" || test_rc=$?
  if [ "$test_rc" -eq 5 ]; then
    echo "dev.sh: pytest collected no tests; that is a failure" >&2
  fi
  if [ "$test_rc" -ne 0 ]; then
    exit "$test_rc"
  fi
  if [ "$lint_rc" -ne 0 ]; then
    echo "dev.sh: tests passed but ruff or mypy failed" >&2
    exit 1
  fi
  if [ "$#" -eq 0 ]; then  # the whole suite: the seam again on the oldest supported Celery/kombu
    run_oldest
  fi
}

command=${1:-}
shift || true
case "$command" in
  run)   setup; exec "$VENV/bin/stalwart" dev "$@" ;;
  test)  setup; ensure_browser; run_tests "$@" ;;
  lint)  setup; lint ;;
  oldest) run_oldest ;;
  bench) setup; exec "$VENV/bin/python" bench/throughput.py "$@" ;;
  *)     echo "usage: ./dev.sh run|test|lint|oldest|bench [args...]" >&2; exit 2 ;;
esac
