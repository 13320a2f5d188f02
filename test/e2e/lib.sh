# Assertions for e2e scripts. Each check prints "ok" or "FAIL" with what it
# checked; e2e_finish prints a Catch2-style summary line that scripts/test.sh
# counts, and sets the exit status.
E2E_PASSED=0
E2E_FAILED=0

check() {
  local what=$1
  shift
  if "$@" >/tmp/e2e-check.$$ 2>&1; then
    echo "ok:   $what"
    E2E_PASSED=$((E2E_PASSED + 1))
  else
    echo "FAIL: $what"
    sed 's/^/      /' /tmp/e2e-check.$$ | tail -20
    E2E_FAILED=$((E2E_FAILED + 1))
  fi
  rm -f /tmp/e2e-check.$$
}

e2e_finish() {
  echo "test cases: $((E2E_PASSED + E2E_FAILED)) | $E2E_PASSED passed | $E2E_FAILED failed"
  [ "$E2E_FAILED" -eq 0 ]
}

require_root_and_netns() {
  if [ "$(id -u)" -ne 0 ] || ! ip netns list >/dev/null 2>&1; then
    echo "e2e tests need root and network namespaces"
    exit 77
  fi
}

# counter LOG NAME: the sum of "NAME N" over every worker line of dpgate's stats.
counter() {
  grep -oE "(^| )$2[ =][0-9]+" "$1" | grep -oE '[0-9]+$' | awk '{s+=$1} END {print s+0}'
}

# e2e_begin TAG: a work dir ($work), the namespace topology ($TOPO = TAG +
# this shell's pid), and a trap that removes dpgate, the namespaces and the
# work dir on exit, also on failure or Ctrl-C. Source topology.sh first.
e2e_begin() {
  TOPO="$1$$"
  work=$(mktemp -d)
  trap e2e_end EXIT INT TERM
  topo_up
}

e2e_end() {
  topo_stop_dpgate
  topo_down
  rm -rf "$work"
}
