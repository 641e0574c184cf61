#!/bin/bash
# manual snapshot/restore experiment (scratch)
F=build-me/ftvmm
K="--kernel guest-images/out/bzImage --initrd guest-images/out/initramfs.cpio.gz"
rm -f /tmp/in; mkfifo /tmp/in; exec 3<>/tmp/in
$F run $K --mem 256M --cpus 2 --control /tmp/c.sock --cmdline "ftvmm.noreboot quiet" </tmp/in >/tmp/out1 2>/tmp/err1 &
P=$!
for i in $(seq 60); do grep -q FTVMM-GUEST-DONE /tmp/out1 && break; sleep 1; done
echo booted after $i
sleep 2
echo 'i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo CNT $i $(cat /proc/uptime); sleep 1; done; reboot -f' >&3
sleep 6
$F ctl /tmp/c.sock status
$F ctl /tmp/c.sock snapshot /tmp/snap1; echo ctl rc=$?
kill -9 $P; wait $P 2>/dev/null
echo "--- before kill:"; grep CNT /tmp/out1 | tail -3
ls -la /tmp/snap1
$F inspect /tmp/snap1 | head -30
timeout 120 $F restore /tmp/snap1 </dev/null >/tmp/out2 2>/tmp/err2; echo restore rc=$?
echo "--- after restore:"; grep -a CNT /tmp/out2 | head -5; grep -a CNT /tmp/out2 | tail -2
cat /tmp/err1 /tmp/err2
