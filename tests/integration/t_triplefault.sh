#!/usr/bin/env bash
# tests/integration/t_triplefault.sh - a guest triple fault (reboot=t + reboot -f) makes ftvmm exit non-zero with a register dump.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_begin triplefault

# reboot=t selects Linux's "triple fault" reboot method (empty IDT + int3), so `reboot -f` triple-faults
# the vCPU: KVM reports a shutdown exit, which ftvmm must treat as a crash, not as a reboot.
case_begin triplefault/reboot-t
ft_boot 256M 1 "reboot=t ftvmm.test=triplefault"
expect_console 'FTVMM-TRIGGER triplefault' "the guest never reached the triple-fault trigger"
expect_exit 2   # documented: triple fault
expect_stderr "triple fault"
expect_stderr 'RIP'
expect_no_console 'FTVMM-GUEST-DONE' "the guest survived"
case_end

it_end
