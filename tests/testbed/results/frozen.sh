#!/bin/bash
# frozen.sh - repro of ft/frozen-primary's "the guest did not go on on the backup" (r2, r10), run inside the test bed:
#   tests/testbed/run.sh env N=15 bash tests/testbed/results/frozen.sh
# Each try: a 1-vCPU guest protected from boot (ftwork: 64 pages, 50 ms ticks, O_DSYNC disk records), the primary
# SIGSTOPped until the backup takes over, then: does the restored guest keep ticking? If not, the evidence, twice 5 s
# apart: the backup's threads (syscall, utime), its vCPU/LAPIC/pending events, UART and disk queue from a snapshot.
F=$PWD/build/ftvmm K=$PWD/guest-images/out/bzImage I=$PWD/guest-images/out/initramfs.cpio.gz
W=/var/tmp/fz
N=${N:-15} TMO=${TMO:-3000}
CL="console=ttyS0 panic=-1 quiet ftvmm.test=ftguest ftvmm.ftargs=--pages,64,--interval-ms,50,--disk,/dev/vda,--count,1000000"
evidence() {
	local pid=$1 sock=$2 tag=$3 t
	for t in /proc/"$pid"/task/*; do
		echo "  thread $(cat "$t"/comm) syscall $(cut -d' ' -f1 "$t"/syscall) state $(awk '/State/{print $2}' "$t"/status) utime $(cut -d' ' -f14 "$t"/stat)"
	done
	"$F" ctl "$sock" snapshot "$W/$tag.snap" >/dev/null
	"$F" inspect "$W/$tag.snap" 2>&1 | grep -E '^  vcpu|RIP|events|LAPIC|ISR|IRR|TSC|mp-state|kvmclock'
	"$F" inspect "$W/$tag.snap" 2>&1 | awk '/^  serial@3f8:/ { on = 1; print; next } /^  [a-z]/ { on = 0 } on'
	"$F" inspect "$W/$tag.snap" 2>&1 | grep -E 'virtio-vq|blk-|virtio-status' | head -8
}
fails=0
for i in $(seq "$N"); do
	rm -rf "$W"; mkdir -p "$W"
	truncate -s 64M "$W/p.img" "$W/b.img"
	port=$((25000 + i))
	"$F" backup --listen "127.0.0.1:$port" --control "$W/b.sock" --ft-timeout "$TMO" --disk "$W/b.img" >"$W/b.out" 2>"$W/b.err" &
	bp=$!
	sleep 1
	"$F" run --kernel "$K" --initrd "$I" --mem 128M --cpus 1 --disk "$W/p.img" --control "$W/p.sock" --epoch 25 \
		--ft-timeout "$TMO" --backup "127.0.0.1:$port" --cmdline "$CL" >"$W/p.out" 2>"$W/p.err" &
	pp=$!
	ok=0
	for _ in $(seq 120); do grep -aq 'FTWORK seq=3 ' "$W/p.out" && grep -aq 'PROTECTED' "$W/p.err" && { ok=1; break; }; sleep 1; done
	if ((!ok)); then
		echo "=== try $i: the primary never ticked protected ($(tail -n1 "$W/p.err"))"
		kill -9 "$pp" "$bp" 2>/dev/null; wait 2>/dev/null; continue
	fi
	sleep "0.$((RANDOM % 10))"
	kill -STOP "$pp"
	took=0
	for _ in $(seq 60); do grep -aq 'taking over from epoch' "$W/b.err" && { took=1; break; }; sleep 0.5; done
	n0=$(grep -ac 'FTWORK seq=' "$W/b.out")
	sleep 20
	n1=$(grep -ac 'FTWORK seq=' "$W/b.out")
	if ((took && n1 >= n0 + 20)); then
		echo "=== try $i: ok ($n0 -> $n1 ticks on the backup in 20 s)"
	else
		fails=$((fails + 1))
		echo "=== try $i: FAIL took=$took ticks on the backup $n0 -> $n1 in 20 s; its console's end:"
		tail -c 300 "$W/b.out"; echo
		tail -n 4 "$W/b.err"
		evidence "$bp" "$W/b.sock" s1
		sleep 5
		echo "  --- 5 s later"
		evidence "$bp" "$W/b.sock" s2
	fi
	kill -CONT "$pp" 2>/dev/null
	kill -9 "$pp" "$bp" 2>/dev/null
	wait 2>/dev/null
done
echo "=== frozen.sh: $fails of $N tries failed"
