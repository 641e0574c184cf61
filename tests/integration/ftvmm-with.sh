#!/usr/bin/env bash
# tests/integration/ftvmm-with.sh - ftvmm with FTVMM_WITH's options added to every run, restore and backup: a suite in another mode (FTVMM_WITH="--checkpoint cow").
# lib.sh puts it in FTVMM's place when FTVMM_WITH is set; FTVMM_REAL is the binary. exec: the test's pid is ftvmm's.
real=${FTVMM_REAL:?FTVMM_REAL must name the ftvmm binary}
case "${1:-}" in
run | restore | backup)
	sub=$1
	shift
	# shellcheck disable=SC2086 # FTVMM_WITH is a list of options
	exec "$real" "$sub" $FTVMM_WITH "$@"
	;;
esac
exec "$real" "$@"
