#!/bin/bash
# fromboot.sh - run from the repository root inside the test bed (tests/testbed/run.sh tests/testbed/results/fromboot.sh, N=tries).
# repro: 1-vCPU guests protected from boot (and plain ones), does the guest print? If not: its vCPU/LAPIC/UART state.
# Env: N (tries, default 6), MODES (default "ft plain")
F=$PWD/build/ftvmm; K=$PWD/guest-images/out/bzImage; I=$PWD/guest-images/out/initramfs.cpio.gz
W=/var/tmp/fb; mkdir -p $W; N=${N:-6}; MODES=${MODES:-"ft plain"}
CL="console=ttyS0 panic=-1 quiet ftvmm.test=ftguest ftvmm.ftargs=--pages,64,--interval-ms,50,--disk,/dev/vda,--count,1000000"
for i in $(seq $N); do for mode in $MODES; do
  rm -f $W/*; truncate -s 64M $W/p.img $W/b.img; port=$((24000 + i))
  if [ $mode = ft ]; then
    $F backup --listen 127.0.0.1:$port --control $W/b.sock --ft-timeout 3000 --disk $W/b.img > $W/b.out 2> $W/b.err & bp=$!
    sleep 1; extra="--epoch 25 --ft-timeout 3000 --backup 127.0.0.1:$port"
  else extra=""; bp=; fi
  t0=$(date +%s)
  $F run --kernel $K --initrd $I --mem 128M --cpus 1 --disk $W/p.img --control $W/p.sock $extra --cmdline "$CL" > $W/p.out 2> $W/p.err & pp=$!
  ok=0; for s in $(seq 90); do grep -aq "FTWORK seq=" $W/p.out && { ok=1; break; }; sleep 1; done
  echo "=== try $i $mode: $([ $ok = 1 ] && echo "ticking after $(( $(date +%s) - t0 )) s" || echo "NOTHING in 90 s") (console bytes $(wc -c < $W/p.out))"
  if [ $ok = 0 ]; then
    head -c 400 $W/p.out; echo; tail -3 $W/p.err
    for t in /proc/$pp/task/*; do echo "  thread $(cat $t/comm) syscall $(cut -d' ' -f1 $t/syscall) state $(awk '/State/{print $2}' $t/status) utime $(cut -d' ' -f14 $t/stat)"; done
    $F ctl $W/p.sock snapshot $W/s.snap; $F inspect $W/s.snap 2>&1 | grep -E '^  vcpu|RIP|CR0|events|LAPIC|ISR|kvmclock'
    # the UART (a lost THRE interrupt silences the console while the guest runs on) and the disk queue
    $F inspect $W/s.snap 2>&1 | awk '/^  serial@3f8:/ { on = 1; print; next } /^  [a-z]/ { on = 0 } on'
    $F inspect $W/s.snap 2>&1 | grep -E 'virtio-vq|blk-' | head -5
    $F ctl $W/p.sock status
    sleep 5; for t in /proc/$pp/task/*; do echo "  thread $(cat $t/comm) utime $(cut -d' ' -f14 $t/stat)"; done
    $F ctl $W/p.sock snapshot $W/s2.snap; $F inspect $W/s2.snap 2>&1 | grep -E 'RIP|LAPIC|ISR'
  fi
  kill -9 $pp $bp 2>/dev/null; wait 2>/dev/null
done; done
