#!/usr/bin/env bash
# tests/integration/t_panic.sh - a guest kernel panic with panic=-1 makes ftvmm exit non-zero (not hang, not exit 0).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_begin panic

case_begin panic/sysrq-c
ft_boot 256M 1 "ftvmm.test=panic"
expect_console 'FTVMM-TRIGGER panic' "the guest never reached the panic trigger"
expect_exit 3   # documented: guest panic reported through pvpanic
expect_stderr "panicked"
expect_no_console 'FTVMM-GUEST-DONE' "the guest survived the panic"
[[ -s "$FT_ERR" ]] && echo "  panic: ftvmm exited $FT_RC; stderr: $(grep -m1 . "$FT_ERR")"
case_end

it_end
