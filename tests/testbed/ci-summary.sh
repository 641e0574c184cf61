#!/usr/bin/env bash
# tests/testbed/ci-summary.sh - the lines that matter in a log of `bash .ci/run` (or tests/run-tests.sh): steps and
# their times, every test-bed boot's verdict (hangs with where its CPUs were), a test-bed CPU's timers running late
# (TESTBED-TIMER-LATE), every failed case, the totals.
# Usage: tests/testbed/ci-summary.sh LOG...
set -euo pipefail
for log in "$@"; do
	echo "== $log"
	grep -aE '^(######## summary|  (PASS|FAIL|SKIP) [a-z-]+ \(|######## (ALL PASSED|FAILED))' "$log" || true
	grep -aE '^(integration: [0-9]+ test-bed boots|integration: test-bed hang|integration: not rerun|integration: rerunning|testbed: hung:|testbed: FAIL|testbed\| TESTBED-TIMER-LATE|FAIL |===== [0-9]+ passed)' "$log" |
		cut -c1-300 || true
done
