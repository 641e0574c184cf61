#!/usr/bin/env bash
# tests/run-tests.sh - the one test command (`make test`): installs missing packages, builds, runs unit, valgrind, fuzz smoke and integration tests.
#
# On a fresh Debian 12 machine as root this installs what is missing (apt-get, only when dpkg says so),
# builds with make, runs `make test-unit`, `make test-valgrind`, `make fuzz` (when the Makefile has that
# rule), builds the guest images and runs tests/integration/run.sh (directly on a working /dev/kvm, else
# inside the nested test bed: one TCG boot for the whole suite). Each step's output streams to stdout;
# a summary comes last. Exit status: 0 only if every step passed.
# Env: B=build (build dir)  RUN_TESTS_SKIP="valgrind fuzz ..." (steps to skip)  JOBS=<make -j, default nproc>
#      TEST_JOBS=<unit tests at once, default 2 x JOBS>
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
B=${B:-build}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
# unit tests mostly wait (real etcd, sockets, timeouts): twice as many at once as CPUs
TEST_JOBS=${TEST_JOBS:-$((JOBS * 2))}
RUN_TESTS_SKIP=${RUN_TESTS_SKIP:-}


summary=()
failed=0
t_all=$(date +%s)

# step NAME CMD...: run one step, record PASS/FAIL/SKIP with its duration.
step() {
	local name="$1" t0 rc=0
	shift
	if [[ " $RUN_TESTS_SKIP " == *" $name "* ]]; then
		summary+=("SKIP $name (RUN_TESTS_SKIP)")
		return 0
	fi
	echo
	echo "######## $name: $*"
	t0=$(date +%s)
	"$@" || rc=$?
	if [[ $rc == 0 ]]; then
		summary+=("PASS $name ($(($(date +%s) - t0))s)")
	else
		summary+=("FAIL $name (exit $rc, $(($(date +%s) - t0))s)")
		failed=1
	fi
	return "$rc"
}

source "$repo/tests/deps.sh" # install_deps

has_make_rule() { grep -qE "^$1:" Makefile; }

step deps install_deps || true
build_ok=0
step build make -j"$JOBS" B="$B" && build_ok=1
if [[ $build_ok == 1 ]]; then
	step unit make -k -j"$TEST_JOBS" B="$B" test-unit || true
	step valgrind make -k -j"$JOBS" B="$B" test-valgrind || true
	if has_make_rule fuzz; then
		step fuzz make B="$B" fuzz || true
	else
		summary+=("SKIP fuzz (no fuzz rule in the Makefile yet)")
	fi
fi
guest_ok=0
step guest-images bash guest-images/build.sh && guest_ok=1
if [[ $build_ok == 1 && $guest_ok == 1 ]]; then
	[[ "$B" == /* ]] && bdir=$B || bdir=$repo/$B
	# The FT chain runs 8 failovers here (20 when t_ft is run by name: tests/integration/run.sh ft): the
	# nested test bed's emulated SVM sometimes loses its own interrupts under that load (README).
	step integration env FTVMM="$bdir/ftvmm" FTVMM_FT_KILLS="${FTVMM_FT_KILLS:-8}" bash tests/integration/run.sh || true
else
	summary+=("SKIP integration (build or guest images failed)")
	failed=1
fi

echo
echo "######## summary ($(($(date +%s) - t_all))s)"
printf '  %s\n' "${summary[@]}"
if [[ $failed == 0 ]]; then
	echo "######## ALL PASSED"
else
	echo "######## FAILED"
fi
exit "$failed"
