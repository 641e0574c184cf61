# tests/bench/ftwork-wait.sh - sourced by the benchmarks that time a guest to its next ftwork tick (snapshot.sh,
# peers-snapshot.sh). Needs $tmp (a scratch directory) set before sourcing; first_ftwork reads $VM_PID.

mkfifo "$tmp/nap.fifo"
exec {NAP_FD}<>"$tmp/nap.fifo" # a read on it with -t is a 10 ms nap that forks nothing
# first_ftwork FILE TIMEOUT_S: wait for a complete FTWORK seq line, polling every 10 ms with builtins only (a
# polling loop that forks would compete with the VM it times for the test bed's 2 CPUs). 1 when the VM ($VM_PID)
# ended or the time ran out first.
first_ftwork() {
	local end=$((${EPOCHREALTIME%.*} + $2)) fd line pending=""
	exec {fd}<"$1"
	while [[ ${EPOCHREALTIME%.*} -lt $end ]]; do
		while line=""; IFS= read -r -u "$fd" line; do
			line="$pending$line" pending=""
			if [[ "$line" == *"FTWORK seq="*" sum="*" ok "* ]]; then
				exec {fd}<&-
				return 0
			fi
		done
		pending+=$line
		kill -0 "$VM_PID" 2>/dev/null || break
		read -r -t 0.01 -u "$NAP_FD" _ || true
	done
	exec {fd}<&-
	return 1
}
