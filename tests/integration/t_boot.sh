#!/usr/bin/env bash
# tests/integration/t_boot.sh - boots the test guest with 1 and 2 vCPUs (256M): CPU count, memory, command line, clean exit on reboot.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_begin boot

for cpus in 1 2; do
	case_begin "boot/${cpus}cpu"
	marker="m${cpus}x$$"
	ft_boot 256M "$cpus" "ftvmm.test=nproc,mem,cmdline ftvmm.expect_cpus=$cpus ftvmm.expect_mem_mb=256 ftvmm.marker=$marker"
	expect_exit 0
	expect_console '^FTVMM-GUEST-INIT uptime=' "the guest init never started"
	expect_result nproc "online=$cpus "
	expect_result mem
	expect_result cmdline "marker=$marker\$"
	expect_console 'FTVMM-GUEST-DONE' "the guest init did not finish"
	up=$(guest_uptime)
	echo "  boot/${cpus}cpu: ftvmm ran ${FT_WALL}s wall; guest init started at uptime ${up:-?}s"
	case_end
done

# RAM above the 3-4 GiB PCI hole: a second memory slot at 4 GiB and a high e820 entry. The guest
# must see (nearly) all of it; MemTotal below 70% would mean the high part was lost.
case_begin "boot/6g-high-memory"
ft_boot 6G 1 "ftvmm.test=mem ftvmm.expect_mem_mb=6144"
expect_exit 0
expect_result mem
case_end

it_end
