# tests/integration/lib.sh - helpers for the t_*.sh integration tests: run ftvmm with a timeout, assert on its results; sourced.
#
# A test script does:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   it_begin boot                     # test name: logs go to $ITEST_OUT/logs/boot/
#   case_begin boot/1cpu              # one PASS/FAIL line per case
#   ft_boot 256M 1 "ftvmm.test=nproc ftvmm.expect_cpus=1"   # or ft_run TIMEOUT ARGS...
#   expect_exit 0; expect_result nproc
#   case_end
#   it_end                            # exit status: 0 if every case passed
# Env in: FTVMM, GUEST_KERNEL, GUEST_INITRD (set by run.sh), ITEST_OUT (logs), ITEST_BOOT_TIMEOUT (s, per boot),
#         ITEST_GUEST_VERBOSE=1 (drop `quiet` from guest command lines to see the whole boot log).

: "${FTVMM:?FTVMM must point to the ftvmm binary}"
# FTVMM_WITH="OPTION..." (e.g. "--checkpoint cow"): every run, restore and backup of the suite gets those options;
# FTVMM_WITH_RUN="OPTION..." (e.g. "--delta-cache 64M"): every run and restore (ftvmm-with.sh)
if [[ -n "${FTVMM_WITH:-}${FTVMM_WITH_RUN:-}" && -z "${FTVMM_REAL:-}" ]]; then
	export FTVMM_REAL=$FTVMM
	FTVMM=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/ftvmm-with.sh
	export FTVMM
fi
: "${GUEST_KERNEL:?GUEST_KERNEL must point to the guest bzImage}"
: "${GUEST_INITRD:?GUEST_INITRD must point to the guest initramfs}"
ITEST_OUT=${ITEST_OUT:-/tmp/ftvmm-integration}
ITEST_BOOT_TIMEOUT=${ITEST_BOOT_TIMEOUT:-240}
ITEST_TMP=${ITEST_TMP:-${TMPDIR:-/tmp}}

IT_NAME=""
IT_LOGDIR=""
IT_FAILED=0
IT_CASES=0
CASE_NAME=""
CASE_ERRORS=()
FT_ENV=()     # extra VAR=value words for the next ft_run (cleared by case_begin)
FT_RC=""      # exit status of the last ft_run (124: timed out)
FT_OUT=""     # its stdout (the guest console) log
FT_ERR=""     # its stderr log
FT_WALL=""    # its wall time in seconds

it_begin() {
	IT_NAME="$1"
	IT_LOGDIR="$ITEST_OUT/logs/$IT_NAME"
	mkdir -p "$IT_LOGDIR"
}

it_end() {
	if [[ $IT_CASES == 0 ]]; then
		echo "FAIL $IT_NAME: no test cases ran"
		exit 1
	fi
	[[ $IT_FAILED == 0 ]]
	exit $?
}

case_begin() {
	CASE_NAME="$1"
	CASE_ERRORS=()
	FT_ENV=()
	FT_RC="" FT_OUT="" FT_ERR="" FT_WALL=""
}

# Record one failed expectation of the current case (the case goes on, to report everything at once).
case_error() { CASE_ERRORS+=("$*"); }

# Print PASS/FAIL for the current case; on failure show the tail of its logs.
case_end() {
	IT_CASES=$((IT_CASES + 1))
	if [[ ${#CASE_ERRORS[@]} == 0 ]]; then
		echo "PASS $CASE_NAME${FT_WALL:+ (${FT_WALL}s)}"
		return 0
	fi
	IT_FAILED=$((IT_FAILED + 1))
	local msg
	printf -v msg '%s; ' "${CASE_ERRORS[@]}"
	echo "FAIL $CASE_NAME: ${msg%; }"
	if [[ -n "$FT_OUT" && -s "$FT_OUT" ]]; then
		echo "  --- last console lines ($FT_OUT):"
		tail -n 25 "$FT_OUT" | sed 's/\r$//; s/^/  | /'
	fi
	if [[ -n "$FT_ERR" && -s "$FT_ERR" ]]; then
		echo "  --- last stderr lines ($FT_ERR):"
		tail -n 25 "$FT_ERR" | sed 's/^/  | /'
	fi
	return 0
}

# ft_run TIMEOUT ARG...: run "$FTVMM" ARG... (env: FT_ENV) with stdin from /dev/null, stdout and stderr to
# logs named after the current case. Sets FT_RC, FT_OUT, FT_ERR, FT_WALL. Never fails itself.
ft_run() {
	local tmo="$1" base start
	shift
	base="$IT_LOGDIR/${CASE_NAME//\//_}"
	FT_OUT="$base.console"
	FT_ERR="$base.stderr"
	start=$(date +%s.%N)
	FT_RC=0
	env ${FT_ENV[@]+"${FT_ENV[@]}"} timeout -k 5 "$tmo" "$FTVMM" "$@" </dev/null >"$FT_OUT" 2>"$FT_ERR" || FT_RC=$?
	FT_WALL=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
	printf '%s\n' "ftvmm $*" "exit $FT_RC after ${FT_WALL}s" >"$base.cmd"
}

# guest_cmdline EXTRA: the command line for a test guest: console, panic=-1, quiet (unless ITEST_GUEST_VERBOSE=1).
guest_cmdline() {
	local q="quiet"
	[[ "${ITEST_GUEST_VERBOSE:-0}" == 1 ]] && q=""
	echo "console=ttyS0 panic=-1${q:+ $q} $*"
}

# ft_boot MEM CPUS EXTRA_CMDLINE [MORE_FTVMM_ARGS...]: boot the test guest with ITEST_BOOT_TIMEOUT.
ft_boot() {
	local mem="$1" cpus="$2" extra="$3"
	shift 3
	ft_run "$ITEST_BOOT_TIMEOUT" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
		--mem "$mem" --cpus "$cpus" --cmdline "$(guest_cmdline "$extra")" "$@"
}

# The last run ended by itself (not killed by our timeout, not by a signal).
_ft_ended_cleanly() {
	if [[ "$FT_RC" == 124 || "$FT_RC" == 137 ]]; then
		case_error "ftvmm timed out (killed after its timeout, ${FT_WALL}s)"
		return 1
	fi
	if [[ "$FT_RC" -gt 128 ]]; then
		case_error "ftvmm died of signal $((FT_RC - 128))"
		return 1
	fi
	return 0
}

# expect_exit 0 | nonzero | N: the exit status of the last ft_run.
expect_exit() {
	_ft_ended_cleanly || return 0
	case "$1" in
	nonzero) [[ "$FT_RC" != 0 ]] || case_error "ftvmm exited 0, expected a non-zero exit" ;;
	*) [[ "$FT_RC" == "$1" ]] || case_error "ftvmm exited $FT_RC, expected $1" ;;
	esac
}

# expect_console REGEX [WHAT]: some console line matches (extended regex).
expect_console() {
	grep -aqE -- "$1" "$FT_OUT" 2>/dev/null || case_error "no console line matching /$1/${2:+ ($2)}"
}

# expect_no_console REGEX [WHAT]: no console line matches.
expect_no_console() {
	! grep -aqE -- "$1" "$FT_OUT" 2>/dev/null || case_error "unexpected console line matching /$1/${2:+ ($2)}"
}

# expect_result CHECK [DETAIL_REGEX]: the guest printed "FTVMM-RESULT CHECK PASS <detail>".
expect_result() {
	local check="$1" detail="${2:-}" line
	line=$(grep -aE "FTVMM-RESULT $check (PASS|FAIL)" "$FT_OUT" 2>/dev/null | tail -n1 | tr -d '\r' || true)
	if [[ -z "$line" ]]; then
		case_error "guest printed no result for check '$check'"
	elif [[ "$line" != *"FTVMM-RESULT $check PASS"* ]]; then
		case_error "guest check failed: ${line#*FTVMM-RESULT }"
	elif [[ -n "$detail" ]] && ! grep -qE -- "$detail" <<<"$line"; then
		case_error "guest check '$check' passed but its detail does not match /$detail/: ${line#*FTVMM-RESULT }"
	fi
}

# expect_stderr REGEX: some stderr line matches (extended regex, case-insensitive).
expect_stderr() {
	grep -qiE -- "$1" "$FT_ERR" 2>/dev/null || case_error "no stderr line matching /$1/"
}

# expect_stderr_one_line REGEX: stderr is exactly one non-empty line, "ftvmm: ..." matching REGEX (case-insensitive).
expect_stderr_one_line() {
	local n first
	n=$(grep -c . "$FT_ERR" 2>/dev/null || true)
	first=$(grep -m1 . "$FT_ERR" 2>/dev/null || true)
	if [[ "$n" != 1 ]]; then
		case_error "expected exactly one stderr line, got ${n:-0}${first:+ (first: $first)}"
		return 0
	fi
	[[ "$first" == "ftvmm: "* ]] || case_error "stderr line does not start with 'ftvmm: ': $first"
	grep -qiE -- "$1" <<<"$first" || case_error "stderr line does not match /$1/: $first"
}

# guest_uptime: the guest's uptime (s) when its init started, from the FTVMM-GUEST-INIT line ("" if none).
guest_uptime() {
	grep -aoE 'FTVMM-GUEST-INIT uptime=[0-9.]+' "$FT_OUT" 2>/dev/null | head -n1 | sed 's/.*uptime=//' || true
}
