#!/usr/bin/env bash
# tests/integration/ftvmm-with.sh - ftvmm with FTVMM_WITH's options added to every run, restore and backup (FTVMM_WITH_RUN's to run and restore only): a suite in another mode.
# e.g. FTVMM_WITH="--checkpoint cow", FTVMM_WITH_RUN="--delta-cache 64M" (a primary's option: its backup takes it
# from the primary's HELLO). lib.sh puts this script in FTVMM's place when either is set; FTVMM_REAL is the binary.
# exec: the test's pid is ftvmm's.
real=${FTVMM_REAL:?FTVMM_REAL must name the ftvmm binary}
case "${1:-}" in
run | restore)
	sub=$1
	shift
	# shellcheck disable=SC2086 # lists of options
	exec "$real" "$sub" ${FTVMM_WITH:-} ${FTVMM_WITH_RUN:-} "$@"
	;;
backup)
	shift
	# shellcheck disable=SC2086
	exec "$real" backup ${FTVMM_WITH:-} "$@"
	;;
esac
exec "$real" "$@"
