#!/usr/bin/env bash
# tests/layers.sh - fails when a lower layer includes a higher one: vmm/ <- devices/ <- ft/ <- cmd/.
#
# Each layer may include its own headers and those of the layers below it, never above: vmm/ (KVM,
# memory, vCPUs, irq, boot, bus, ioloop, util) nothing from devices/, ft/ or cmd/; devices/ (device
# models and the board) nothing from ft/ or cmd/; ft/ (state capture, stream, primary, backup,
# snapshot file) nothing from cmd/. Run by `make` (the `layers` target). Prints one line per
# offending include, `file:line: ...`, and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

layers=(vmm devices ft cmd)
files=()
for l in "${layers[@]}"; do
	for f in "$l"/*.c "$l"/*.h; do
		[[ -e "$f" ]] && files+=("$f")
	done
done

# Each quoted include is resolved against its file's folder; its first path component is the layer
# it lives in (something outside the four layers, e.g. a system header, is not judged here).
awk -v order="${layers[*]}" '
BEGIN {
	n = split(order, l, " ")
	for (i = 1; i <= n; i++) {
		rank[l[i]] = i
		stack = i == 1 ? l[i] : stack " <- " l[i]
	}
	bad = 0
}
/^[ \t]*#[ \t]*include[ \t]*"/ {
	inc = $0
	sub(/^[^"]*"/, "", inc)
	sub(/".*$/, "", inc)
	dir = FILENAME
	sub(/\/[^\/]*$/, "", dir)
	m = split(dir "/" inc, parts, "/")
	depth = 0
	for (i = 1; i <= m; i++) {
		if (parts[i] == "" || parts[i] == ".")
			continue
		if (parts[i] == "..") {
			if (depth > 0)
				depth--
			continue
		}
		path[++depth] = parts[i]
	}
	from = FILENAME
	sub(/\/.*$/, "", from)
	to = depth > 1 ? path[1] : ""
	if (to in rank && rank[to] > rank[from]) {
		printf "layers: %s:%d includes \"%s\": %s/ must not include %s/ (%s)\n", FILENAME, FNR, inc,
		       from, to, stack
		bad = 1
	}
}
END { exit bad }
' "${files[@]}"
