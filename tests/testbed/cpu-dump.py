#!/usr/bin/env python3
"""tests/testbed/cpu-dump.py - where a hung test bed's CPUs are: qemu's `info registers -a`, each RIP named from kallsyms.

Usage: cpu-dump.py MONITOR_SOCKET KALLSYMS   (text symbols the test bed's init saved from /proc/kallsyms)
Prints one line per CPU (RIP and the kernel symbol+offset, or 'user' / 'guest' where it is not kernel text), then
the raw register dump and each CPU's `info lapic`.
"""
import bisect
import re
import socket
import sys
import time


def monitor(path, cmd, wait=3.0):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(wait)
    s.connect(path)
    out = b""
    s.sendall(cmd.encode() + b"\n")
    end = time.time() + wait
    while time.time() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out.decode(errors="replace")


def load_map(path):
    addrs, names = [], []
    try:
        for line in open(path):
            f = line.split()
            if len(f) >= 3 and f[1] in "tTwW":
                addrs.append(int(f[0], 16))
                names.append(" ".join(f[2:]))
    except OSError:
        pass
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    return [addrs[i] for i in order], [names[i] for i in order]


def main():
    text = monitor(sys.argv[1], "info registers -a")
    addrs, names = load_map(sys.argv[2]) if len(sys.argv) > 2 else ([], [])
    cpu = 0
    for m in re.finditer(r"(?:CPU#(\d+)\s+)?RAX=.*?RIP=([0-9a-f]+)", text, re.S):
        cpu = int(m.group(1)) if m.group(1) else cpu
        rip = int(m.group(2), 16)
        where = "user or guest" if rip < 0xffff800000000000 else "?"
        i = bisect.bisect_right(addrs, rip) - 1
        if rip >= 0xffff800000000000 and i >= 0:
            where = f"{names[i]}+0x{rip - addrs[i]:x}"
        print(f"testbed cpu {cpu}: RIP {rip:016x} {where}")
        cpu += 1
    print(text.strip())
    # each CPU's local APIC (timer mode and counts, TSC deadline, IRR/ISR): a CPU whose timer interrupt was
    # lost shows an expired timer with nothing in its ISR, or a vector waiting in IRR that never got in
    for n in range(cpu):
        print(f"== info lapic {n}")
        print(monitor(sys.argv[1], f"info lapic {n}").strip())


if __name__ == "__main__":
    main()
