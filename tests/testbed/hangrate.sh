#!/usr/bin/env bash
# tests/testbed/hangrate.sh - boots the nested test bed N times on the same tests and records how often it hangs, where, and how.
#
# Usage: tests/testbed/hangrate.sh [-n N] [-l LABEL] [TEST...]     (default: -n 10, tests snapshot ft)
# Each run is ONE test-bed boot running TEST... (tests/integration/run.sh, no rerun), so a hang ends the run and
# is counted. The test bed's settings come from the environment as for tests/testbed/run.sh (TESTBED_KSERIES,
# TESTBED_KVM_ARGS, TESTBED_SMP, TESTBED_MEM, TESTBED_IDLE_LIMIT, TESTBED_QUIET_LIMIT); FTVMM_FT_KILLS defaults to
# 8 as in CI. Needs build/ftvmm and the guest images (bash tests/run-tests.sh builds them).
# Results: tests/testbed/results/hangrate-LABEL-STAMP/: runs.csv (one row per boot), summary.md (computed from
# runs.csv by hangrate-report.py), runN.log (the run's output), runN.console.kernel (the test bed's kernel console),
# runN-logs.tar.gz (per-case logs of a run that did not pass).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
n=10 label=""
while getopts n:l: o; do
	case $o in
	n) n=$OPTARG ;;
	l) label=$OPTARG ;;
	*) echo "usage: $0 [-n N] [-l LABEL] [TEST...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
tests=("$@")
((${#tests[@]})) || tests=(snapshot ft)
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "hangrate: -n wants a positive count, not '$n'" >&2; exit 2; }

export TESTBED_KSERIES=${TESTBED_KSERIES:-6.1}
export TESTBED_KVM_ARGS=${TESTBED_KVM_ARGS-"kvm_amd.npt=$([[ "${TESTBED_QEMU:-}" == 10 ]] && echo 1 || echo 0) kvm_amd.vgif=0 transparent_hugepage=never"}
export TESTBED_CLOCK=${TESTBED_CLOCK-"tsc=reliable idle=poll"} TESTBED_KVMPIN=${TESTBED_KVMPIN:-1}
export TESTBED_SMP=${TESTBED_SMP:-2} TESTBED_MEM=${TESTBED_MEM:-3G}
export FTVMM_FT_KILLS=${FTVMM_FT_KILLS:-8}
[[ -n "$label" ]] || label="k${TESTBED_KSERIES}-$(tr ' ' '\n' <<<"$TESTBED_KVM_ARGS" | sed -n 's/^kvm_amd\.npt=/npt/p' | head -n1)-smp$TESTBED_SMP$([[ "$TESTBED_CLOCK" == *tsc=reliable* ]] && echo -tsc)$([[ "$TESTBED_CLOCK" == *idle=poll* ]] && echo -poll)$([[ "$TESTBED_CLOCK" == *highres=off* ]] && echo -periodic)$([[ "$TESTBED_KVMPIN" == 1 ]] && echo -pin)"
res="$here/results/hangrate-$label-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$res"
FTVMM=${FTVMM:-$repo/build/ftvmm}
[[ -x "$FTVMM" ]] || { echo "hangrate: no ftvmm at $FTVMM (run make)" >&2; exit 1; }

{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "outer: $(uname -sr), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	q=${TESTBED_QEMU:-qemu-system-x86_64}
	[[ "$q" == 10 ]] && q=$here/out/qemu/usr/bin/qemu-system-x86_64
	echo "qemu: $("$q" --version | head -n1)"
	echo "test bed: kernel series $TESTBED_KSERIES, $TESTBED_SMP vCPUs, $TESTBED_MEM, args: $TESTBED_CLOCK $TESTBED_KVM_ARGS, kvmpin=$TESTBED_KVMPIN"
	echo "ftvmm: $FTVMM (sha256 $(sha256sum "$FTVMM" | cut -c1-12))"
	echo "tests: ${tests[*]} (FTVMM_FT_KILLS=$FTVMM_FT_KILLS), runs: $n"
} >"$res/env.txt"
cat "$res/env.txt"
one_boot=$(IFS=,; echo "${tests[*]}") # all the tests in one test-bed boot
echo "run,rc,outcome,symptom,where,failed,seconds,load1_before,testbed_kernel" >"$res/runs.csv"

itest="$(dirname "$FTVMM")/hangrate-itest" # per-case logs of the current run
for i in $(seq 1 "$n"); do
	rm -rf "$itest"
	load=$(cut -d' ' -f1 /proc/loadavg)
	t0=$(date +%s)
	rc=0
	ITEST_RERUN=0 ITEST_GROUPS="$one_boot" TESTBED_LOG="$res/run$i.console" \
		FTVMM="$FTVMM" ITEST_OUT="$itest" bash "$repo/tests/integration/run.sh" "${tests[@]}" >"$res/run$i.log" 2>&1 || rc=$?
	secs=$(($(date +%s) - t0))
	log="$res/run$i.log" klog="$res/run$i.console.kernel"
	# outcome: pass (every case passed), fail (the boot completed, some case failed), hang (no end: see symptom)
	symptom="" where=""
	if grep -q '^testbed: FAIL:' "$log"; then
		outcome=hang
		case "$(grep -m1 '^testbed: FAIL:' "$log")" in
		*"printed nothing"*) symptom=quiet ;;
		*stalled*)
			symptom=stall
			grep -aq 'soft lockup' "$klog" 2>/dev/null && symptom="stall:soft-lockup"
			grep -aqE 'rcu_(preempt|sched) detected stalls' "$klog" 2>/dev/null && symptom="$symptom+rcu"
			symptom=${symptom/stall:+rcu/stall:rcu} ;;
		*"used no CPU"*) symptom=idle ;;
		*"timed out"*) symptom=timeout ;;
		*"stopped after"*) symptom=crash ;;
		*) symptom=other ;;
		esac
		grep -aq 'stack guard page was hit\|Kernel panic\|BUG: unable to handle' "$klog" 2>/dev/null && symptom="$symptom:kernel-crash"
		# where: the test that was running and the last case that had finished in it
		cur=$(grep -aoE '^=== [a-z_]+$' "$log" | tail -n1 | cut -c5- || true)
		last=$(grep -aoE '^(PASS|FAIL) [^ :]+' "$log" | tail -n1 | cut -d' ' -f2 || true)
		where="${cur:-boot}${last:+ after $last}"
	elif [[ $rc == 0 ]]; then
		outcome=pass
	else
		outcome=fail
	fi
	failed=$(sed -n '/^===== integration summary/,$p' "$log" | grep -aoE '^  FAIL [^ :]+' | awk '{print $2}' | tr '\n' ' ' | sed 's/ $//' || true)
	tbk=$(grep -aoE 'kernel [0-9][^,]*' "$log" | head -n1 | cut -d' ' -f2 || true)
	# keep the failing run's per-case logs (guest consoles, ftvmm stderr) for the post-mortem
	if [[ $outcome != pass && -d "$itest/logs" ]]; then
		tar -C "$itest" -czf "$res/run$i-logs.tar.gz" logs 2>/dev/null || true
	fi
	echo "$i,$rc,$outcome,$symptom,\"$where\",\"$failed\",$secs,$load,$tbk" >>"$res/runs.csv"
	echo "hangrate: run $i/$n: $outcome${symptom:+ ($symptom at $where)}${failed:+ failed: $failed} in ${secs}s"
done
python3 "$here/hangrate-report.py" "$res" >"$res/summary.md"
cat "$res/summary.md"
