#!/usr/bin/env bash
# tests/integration/run.sh - runs the KVM integration suite (tests/integration/t_*.sh): directly on a working /dev/kvm, else in the nested test bed.
#
# Usage: tests/integration/run.sh [TEST...]     TEST: boot | t_boot | t_boot.sh (default: every t_*.sh)
# Env:
#   FTVMM=build/ftvmm  GUEST_KERNEL=guest-images/out/bzImage  GUEST_INITRD=guest-images/out/initramfs.cpio.gz
#   ITEST_MODE=auto|direct|testbed   auto: direct when kvmcheck can run a guest on /dev/kvm and qemu -accel kvm
#                                    boots the test guest there, else the test bed
#   ITEST_OUT=<dir of FTVMM>/integration   logs (per case: .console, .stderr, .cmd) and the kvmcheck binary
#   ITEST_TEST_TIMEOUT=900   seconds per t_*.sh;  ITEST_BOOT_TIMEOUT=240  seconds per guest boot
#   TESTBED_TIMEOUT (see tests/testbed/run.sh): default here 1800 s per test-bed boot
#   ITEST_GROUPS="ft boot,panic,triplefault,badinput,blk,net,snapshot,ftflood lab,arbiter resume:npt"   tests that share one test-bed boot; a group
#                  written NAME,...:npt runs with the test bed's nested paging on (kvm_amd.npt=1)
#   ITEST_LANES=<CPUs / TESTBED_SMP>   test-bed boots at once (each lane's output is printed when its group ends)
#   ITEST_RERUN=1   rerun the unfinished tests of a group once in a fresh test bed after it hung (0: never)
# Exit status: 0 if every case passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
inside=0
if [[ "${1:-}" == --inside ]]; then
	inside=1
	shift
fi

abspath() { [[ "$1" == /* ]] && echo "$1" || echo "$PWD/$1"; }
FTVMM=$(abspath "${FTVMM:-$repo/build/ftvmm}")
GUEST_KERNEL=$(abspath "${GUEST_KERNEL:-$repo/guest-images/out/bzImage}")
GUEST_INITRD=$(abspath "${GUEST_INITRD:-$repo/guest-images/out/initramfs.cpio.gz}")
ITEST_OUT=$(abspath "${ITEST_OUT:-$(dirname "$FTVMM")/integration}")
export FTVMM GUEST_KERNEL GUEST_INITRD ITEST_OUT
export ITEST_BOOT_TIMEOUT=${ITEST_BOOT_TIMEOUT:-240}
ITEST_TEST_TIMEOUT=${ITEST_TEST_TIMEOUT:-900}
ITEST_MODE=${ITEST_MODE:-auto}
# longest first: with two lanes, ft runs beside the short groups
ITEST_GROUPS=${ITEST_GROUPS:-"ft boot,panic,triplefault,badinput,blk,net,snapshot,ftflood lab,arbiter resume:npt"}

# Which tests.
tests=()
# Not in the default suite (run them by name): resume is the nested-paging study (README, the test bed), floodchain
# a repro (many takeovers of a flooding guest)
ITEST_NOT_DEFAULT=${ITEST_NOT_DEFAULT-"resume floodchain"}
if [[ $# -eq 0 ]]; then
	for t in "$here"/t_*.sh; do
		n=${t##*/t_}
		[[ " $ITEST_NOT_DEFAULT " == *" ${n%.sh} "* ]] && { echo "integration: skipping t_${n} (not in the default suite; run it by name)"; continue; }
		tests+=("$t")
	done
else
	for a in "$@"; do
		a=${a%.sh}
		a=${a#t_}
		[[ -f "$here/t_$a.sh" ]] || { echo "integration: no such test: $a (have: $(cd "$here" && ls t_*.sh | tr '\n' ' '))" >&2; exit 2; }
		tests+=("$here/t_$a.sh")
	done
fi
names=()
for t in "${tests[@]}"; do n=${t##*/t_}; names+=("${n%.sh}"); done

if [[ ! -x "$FTVMM" ]]; then
	echo "integration: FAIL: no ftvmm binary at $FTVMM (run make first)" >&2
	exit 1
fi
if [[ $inside == 0 && ( ! -f "$GUEST_KERNEL" || ! -f "$GUEST_INITRD" ) ]]; then
	echo "integration: building the guest images" >&2
	bash "$repo/guest-images/build.sh" >&2
fi
for f in "$GUEST_KERNEL" "$GUEST_INITRD"; do
	[[ -f "$f" ]] || { echo "integration: FAIL: missing guest image $f (run guest-images/build.sh)" >&2; exit 1; }
done

if ! mkdir -p "$ITEST_OUT" 2>/dev/null || [[ ! -w "$ITEST_OUT" ]]; then
	ITEST_OUT=/tmp/ftvmm-integration
	mkdir -p "$ITEST_OUT"
fi

# kvmcheck: can this machine run a KVM guest at all?
kvmcheck="$ITEST_OUT/kvmcheck"
if [[ ! -x "$kvmcheck" || "$here/kvmcheck.c" -nt "$kvmcheck" ]]; then
	gcc -O2 -Wall -o "$kvmcheck.tmp" "$here/kvmcheck.c" && mv -f "$kvmcheck.tmp" "$kvmcheck"
fi
kvm_ok=0
kvm_msg=$("$kvmcheck" 2>&1) && kvm_ok=1

# KVM-level restore checks (t_snapshot: pvkick.c, pitedge.c), linked with ftvmm's own library (beside FTVMM);
# built outside the test bed, whose root has no compiler
export ITEST_KVMTESTS=${ITEST_KVMTESTS:-$ITEST_OUT/kvmtests}
lib=$(dirname "$FTVMM")/libftvmm.a
if [[ $inside == 0 && -f "$lib" ]]; then
	mkdir -p "$ITEST_KVMTESTS"
	for t in pvkick pitedge; do
		bin=$ITEST_KVMTESTS/$t
		[[ ! -x "$bin" || "$here/$t.c" -nt "$bin" || "$here/kvmtest.h" -nt "$bin" || "$lib" -nt "$bin" ]] || continue
		gcc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$bin.tmp" "$here/$t.c" "$lib" \
			-luring -lfdt -lgnutls -lcurl -ljson-c -llz4 -lzstd -pthread && mv -f "$bin.tmp" "$bin"
	done
fi

# A host whose /dev/kvm passes kvmcheck can still fail to boot a real Linux guest (seen on a nested
# Firecracker host); in auto mode, also boot the test guest under qemu -accel kvm as an independent reference.
kvm_boots_linux() {
	command -v qemu-system-x86_64 >/dev/null || return 0
	local out
	out=$(timeout -k 5 60 qemu-system-x86_64 -accel kvm -cpu host -m 256M -smp 1 -nodefaults -no-user-config \
		-display none -serial stdio -no-reboot -nic none -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
		-append "console=ttyS0 panic=-1 quiet ftvmm.test=nproc ftvmm.expect_cpus=1" </dev/null 2>&1) || true
	grep -q 'FTVMM-RESULT nproc PASS' <<<"$out"
}

# print_summary WHAT RESULT...: the PASS/FAIL lines and their count; true when all passed (and there were some)
print_summary() {
	local what="$1" l npass=0 nfail=0
	shift
	for l in "$@"; do
		case "$l" in PASS*) npass=$((npass + 1)) ;; FAIL*) nfail=$((nfail + 1)) ;; esac
	done
	echo
	echo "===== integration summary ($what, logs in $ITEST_OUT/logs)"
	(($#)) && printf '  %s\n' "$@"
	echo "===== $npass passed, $nfail failed"
	((nfail == 0 && $# > 0))
}

# testbed_group NAME...: run these tests in one fresh test-bed boot; their PASS/FAIL lines go to
# $ITEST_OUT/group-NAME.results, test-bed hangs to group-NAME.hangs (NAME: the group's first test).
# The test bed's own host (Debian under TCG's emulated SVM) can die or hang under nested load: a fault of the
# emulation, not of a test (README: the test bed). Then, once (ITEST_RERUN=1), the tests of this group that had
# not finished run again in a fresh test bed; finished ones keep their results, a failed one is never rerun,
# and the log says which ran again and why.
testbed_group() {
	local todo=("$@") attempt rc tblog n why rest r failed_unfinished
	local res="$ITEST_OUT/group-$1.results" hangs="$ITEST_OUT/group-$1.hangs"
	: >"$res"
	: >"$hangs"
	for attempt in 1 2; do
		echo "integration: running ${todo[*]} inside the nested test bed (one boot$( ((attempt > 1)) && echo ", attempt $attempt"))"
		tblog="$ITEST_OUT/testbed-${todo[0]}-attempt$attempt.log"
		rc=0
		TESTBED_TIMEOUT=${TESTBED_TIMEOUT:-1800} TESTBED_QUIET_LIMIT=${TESTBED_QUIET_LIMIT:-300} \
			TESTBED_LOG="${TESTBED_LOG:-$ITEST_OUT/testbed-${todo[0]}-attempt$attempt.console}" \
			TESTBED_PASSENV="FTVMM GUEST_KERNEL GUEST_INITRD ITEST_OUT ITEST_BOOT_TIMEOUT ITEST_TEST_TIMEOUT ITEST_GUEST_VERBOSE ITEST_TMP" \
			bash "$repo/tests/testbed/run.sh" bash "$here/run.sh" --inside "${todo[@]}" 2>&1 | tee "$tblog" || rc=${PIPESTATUS[0]}
		rest=() failed_unfinished=()
		case $rc in 124) why="timed out" ;; 126) why="hung: stalled, silent or idle" ;; 125) why="its kernel died" ;; *) why="status $rc" ;; esac
		for n in "${todo[@]}"; do
			mapfile -t r < <(awk -v n="$n" '$0 == "=== " n { on = 1; next } on && /^=== / { on = 0 } on && /^(PASS|FAIL) /' "$tblog")
			if grep -aqE "^=== $n: [0-9]+s$" "$tblog"; then
				((${#r[@]})) || r=("FAIL $n: reported no results")
				printf '%s\n' "${r[@]}" >>"$res"
			elif printf '%s\n' "${r[@]}" | grep -q '^FAIL '; then
				# a case that failed stays failed: the test is not run again, its results so far stand
				printf '%s\n' "${r[@]}" "FAIL $n: did not finish: the test bed $why" >>"$res"
				failed_unfinished+=("$n")
			else
				rest+=("$n")
			fi
		done
		((${#failed_unfinished[@]})) && echo "integration: not rerun (a case had failed before the test bed stopped): ${failed_unfinished[*]}"
		if [[ $rc == 124 || $rc == 125 || $rc == 126 ]]; then
			echo "${todo[0]}: $why (attempt $attempt, unfinished: ${failed_unfinished[*]} ${rest[*]})" >>"$hangs"
		fi
		((${#rest[@]})) || return 0
		echo "integration: the test bed did not complete (status $rc: $why); unfinished: ${rest[*]}"
		if [[ $rc != 124 && $rc != 125 && $rc != 126 ]]; then
			for n in "${rest[@]}"; do echo "FAIL $n: did not run to its end in the test bed (status $rc)"; done >>"$res"
			return 1
		fi
		if ((attempt == 1 && ${ITEST_RERUN:-1})); then
			echo "integration: rerunning the unfinished tests once in a fresh test bed: ${rest[*]}"
			todo=("${rest[@]}")
			continue
		fi
		for n in "${rest[@]}"; do echo "FAIL $n: the test bed did not complete ($why)"; done >>"$res"
		return 1
	done
}

# testbed_suite: the chosen tests in groups (ITEST_GROUPS, one test-bed boot each, so a hang costs one group);
# tests named in no group run in a boot of their own. ITEST_LANES test beds run at once (default: this machine's
# CPUs / TESTBED_SMP): each lane's output goes to its log and is printed when its group ends. Prints the summary.
testbed_suite() {
	local g n t0=$(date +%s) first
	local -A placed=() gopt=()
	local groups=() results=() hangs=() pids=()
	for g in $ITEST_GROUPS; do
		local members=() opt=""
		[[ "$g" == *:* ]] && opt=${g#*:} g=${g%%:*}
		for n in ${g//,/ }; do
			[[ " ${names[*]} " == *" $n "* ]] && members+=("$n") && placed[$n]=1
		done
		((${#members[@]})) && groups+=("${members[*]}") && gopt[${members[0]}]=$opt
	done
	for n in "${names[@]}"; do [[ -n "${placed[$n]:-}" ]] || groups+=("$n"); done
	local lanes=${ITEST_LANES:-$(($(nproc) / ${TESTBED_SMP:-2}))}
	((lanes >= 1)) || lanes=1
	((lanes <= ${#groups[@]})) || lanes=${#groups[@]}
	echo "integration: ${#groups[@]} test-bed boots ($(printf '[%s] ' "${groups[@]}")), $lanes at a time"
	for g in "${groups[@]}"; do
		first=${g%% *}
		# a group marked :npt runs on the test bed's KVM with nested paging on (what every real host has)
		local kargs=${TESTBED_KVM_ARGS-"kvm_amd.npt=0 kvm_amd.vgif=0 transparent_hugepage=never"}
		# QEMU 10 as the test bed (TESTBED_QEMU=10) runs nested guests only with nested paging
		[[ "${TESTBED_QEMU:-}" == 10 && -z "${TESTBED_KVM_ARGS+x}" ]] && kargs=${kargs//kvm_amd.npt=0/kvm_amd.npt=1}
		[[ "${gopt[$first]:-}" == npt ]] && kargs=${kargs//kvm_amd.npt=0/kvm_amd.npt=1}
		if ((lanes == 1)); then
			# shellcheck disable=SC2086
			TESTBED_KVM_ARGS=$kargs testbed_group $g || true
			continue
		fi
		while (($(jobs -rp | wc -l) >= lanes)); do wait -n || true; done
		echo "integration: [$first] started: $g ($(date -u +%T))"
		# shellcheck disable=SC2086
		(TESTBED_KVM_ARGS=$kargs testbed_group $g >"$ITEST_OUT/lane-$first.log" 2>&1 || true
			echo "integration: [$first] ended ($(date -u +%T)); its output:"
			sed "s/^/[$first] /" "$ITEST_OUT/lane-$first.log") &
		pids+=($!)
	done
	((${#pids[@]} == 0)) || wait "${pids[@]}" || true
	for g in "${groups[@]}"; do
		first=${g%% *}
		[[ -f "$ITEST_OUT/group-$first.results" ]] && mapfile -t -O "${#results[@]}" results <"$ITEST_OUT/group-$first.results"
		[[ -s "$ITEST_OUT/group-$first.hangs" ]] && mapfile -t -O "${#hangs[@]}" hangs <"$ITEST_OUT/group-$first.hangs"
		[[ -s "$ITEST_OUT/group-$first.results" ]] || results+=("FAIL $first: its test-bed group reported nothing")
	done
	((${#hangs[@]})) && printf 'integration: test-bed hang: %s\n' "${hangs[@]}"
	print_summary "$(($(date +%s) - t0))s, ${#groups[@]} test-bed boots, $lanes at a time" "${results[@]}"
}

if [[ $inside == 0 ]]; then
	case "$ITEST_MODE" in
	auto)
		mode=testbed
		if [[ $kvm_ok == 1 ]]; then
			if kvm_boots_linux; then
				mode=direct
			else
				kvm_msg="$kvm_msg; but qemu -accel kvm cannot boot the test guest here, so KVM is not trusted"
			fi
		fi
		;;
	direct | testbed) mode=$ITEST_MODE ;;
	*) echo "integration: bad ITEST_MODE=$ITEST_MODE" >&2; exit 2 ;;
	esac
	echo "integration: $kvm_msg"
	if [[ $mode == testbed ]]; then
		testbed_suite
		exit $?
	fi
	if [[ $kvm_ok == 0 ]]; then
		echo "integration: FAIL: ITEST_MODE=direct but KVM does not work here" >&2
		exit 1
	fi
else
	echo "integration: inside the test bed: $kvm_msg"
	if [[ $kvm_ok == 0 ]]; then
		echo "integration: FAIL: KVM does not work inside the test bed; not running ${names[*]}"
		exit 1
	fi
	# As little 9p as possible while the tests run. TCG's emulated SVM now and then delivers an interrupt with
	# IF=0 (README: the test bed); when it lands inside 9p's request path, with the channel lock held, its handler
	# spins on that same lock and the test bed deadlocks (both CPUs in native_queued_spin_lock_slowpath: r9, r10,
	# lab1; r20: the log mirror's `cp` stat-ing every log file on 9p every 2 s). The chance grows with the 9p
	# requests made, so:
	# 1. the tests run from a copy on the scratch disk (ext4 on virtio-blk): scripts (bash reads them as it goes),
	#    ftvmm, the guest images (read at every boot), the headers t_ftflood reads. ITEST_LOCAL_REPO=0: from 9p.
	if [[ "${ITEST_LOCAL_REPO:-1}" == 1 && -z "${ITEST_FROM_SCRATCH:-}" && -d /var/tmp && -w /var/tmp ]]; then
		lr=$(mktemp -d /var/tmp/itest-repo.XXXXXX)
		gk=$(dirname "$GUEST_KERNEL")
		if mkdir -p "$lr/build" "$lr/guest" &&
			tar -C "$repo" --exclude=tests/testbed/out --exclude='tests/*/results' --exclude=__pycache__ \
				-cf - tests $(cd "$repo" && echo ft/*.h) | tar -C "$lr" -xf - &&
			cp "$FTVMM" "$lr/build/ftvmm" && cp "$GUEST_KERNEL" "$GUEST_INITRD" "$lr/guest/" &&
			{ [[ ! -d "$ITEST_KVMTESTS" ]] || cp -r "$ITEST_KVMTESTS" "$lr/build/kvmtests"; } &&
			{ [[ ! -f "$gk/kernel-version" ]] || cp "$gk/kernel-version" "$lr/guest/"; }; then
			echo "integration: running from a copy on the scratch disk: $lr ($(du -sh "$lr" | cut -f1))"
			export ITEST_FROM_SCRATCH=$lr FTVMM=$lr/build/ftvmm ITEST_KVMTESTS=$lr/build/kvmtests
			export GUEST_KERNEL=$lr/guest/${GUEST_KERNEL##*/} GUEST_INITRD=$lr/guest/${GUEST_INITRD##*/}
			exec bash "$lr/tests/integration/run.sh" --inside "${names[@]}"
		fi
		echo "integration: could not copy the tests to the scratch disk: running them from 9p"
	fi
	# 2. logs go to the scratch disk, and one process copies to the shared ITEST_OUT (9p) every 5 s only the files
	#    written since its last pass (found on the scratch disk: no 9p request for a file that did not change)
	if [[ "${ITEST_LOCAL_LOGS:-1}" == 1 && -d /var/tmp && -w /var/tmp ]]; then
		shared_out=$ITEST_OUT
		ITEST_OUT=$(mktemp -d /var/tmp/itest-out.XXXXXX)
		export ITEST_OUT
		# every copy bounded: a 9p request whose completion never comes (r11's boot group: every test done, then
		# the test bed idle for 300 s at exit) must cost the logs' last seconds, not the group. A file written
		# while a pass runs is newer than the stamp taken before it: the next pass copies it again.
		mirror_logs() {
			local st="$ITEST_OUT/.mirror-stamp" newer=()
			[[ -f "$st" ]] && newer=(-newer "$st")
			touch "$st.new"
			(cd "$ITEST_OUT" && find . -type f ! -name '.mirror-stamp*' "${newer[@]}" -print0 |
				timeout -k 5 60 tar --null -T - -cf - | timeout -k 5 60 tar -C "$shared_out" -xf -) 2>/dev/null || true
			mv -f "$st.new" "$st"
		}
		(trap 'exit 0' TERM; while sleep 5; do mirror_logs; done) &
		mirror_pid=$!
		# (no wait for the loop: its copy in progress, if any, is bounded too)
		trap 'kill "$mirror_pid" 2>/dev/null; mirror_logs' EXIT
		echo "integration: logs are written to $ITEST_OUT (scratch disk) and copied to $shared_out every 5 s (what changed)"
	fi
fi

# Run each test script; collect its PASS/FAIL lines.
mkdir -p "$ITEST_OUT/logs"
results=()
suite_start=$(date +%s)
for i in "${!tests[@]}"; do
	t=${tests[$i]} n=${names[$i]}
	echo "=== $n"
	log="$ITEST_OUT/logs/$n.log"
	t0=$(date +%s)
	rc=0
	timeout -k 10 "$ITEST_TEST_TIMEOUT" bash "$t" </dev/null 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
	mapfile -t lines < <(grep -E '^(PASS|FAIL) ' "$log" || true)
	if [[ $rc != 0 ]] && ! printf '%s\n' "${lines[@]}" | grep -q '^FAIL '; then
		if [[ $rc == 124 || $rc == 137 ]]; then
			lines+=("FAIL $n: timed out after ${ITEST_TEST_TIMEOUT}s")
		else
			lines+=("FAIL $n: script exited $rc")
		fi
		echo "${lines[-1]}"
	fi
	[[ ${#lines[@]} == 0 ]] && lines+=("FAIL $n: reported no results") && echo "${lines[-1]}"
	results+=("${lines[@]}")
	echo "=== $n: $(($(date +%s) - t0))s"
done

print_summary "$(($(date +%s) - suite_start))s" "${results[@]}"
