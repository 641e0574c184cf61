#!/bin/bash
# pokes.sh - which kernel code patches (static keys) happen in the test bed's kernel when ftvmm guests boot and end.
# Run from the repository root: tests/testbed/run.sh tests/testbed/results/pokes.sh  (TESTBED_KVMPIN=0 for the before)
T=/sys/kernel/tracing
mount -t tracefs nodev $T 2>/dev/null
for f in text_poke_bp arch_jump_label_transform_apply arch_jump_label_transform static_key_enable_cpuslocked static_key_disable_cpuslocked; do
  echo "p:p_$f $f" >> $T/kprobe_events || echo "no kprobe $f"
done
for e in $T/events/kprobes/*/; do echo 1 > $e/enable; echo stacktrace > $e/trigger; done
echo 1 > $T/tracing_on
F=$PWD/build/ftvmm; K=$PWD/guest-images/out/bzImage; I=$PWD/guest-images/out/initramfs.cpio.gz
for i in 1 2; do
  echo "=== boot $i"; timeout 40 $F run --kernel $K --initrd $I --mem 128M --cpus 2 --cmdline "console=ttyS0 quiet" > /tmp/g$i.out 2>&1 &
  sleep 30; kill -9 $!; wait
  echo "=== after boot $i: $(grep -c . $T/trace) trace lines"; tail -c 300 /tmp/g$i.out
done
sleep 3
grep -v "^#" $T/trace | head -300
