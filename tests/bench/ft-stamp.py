#!/usr/bin/env python3
"""ft-stamp.py - copy stdin to a file, each line prefixed with the time.time() it arrived (for failover timings).

usage: CMD | ft-stamp.py OUT     lines: "<seconds.micro> <line>"; a line cut short at EOF is kept too
"""
import os
import sys
import time

out = open(sys.argv[1], "ab", buffering=0)
fd = sys.stdin.fileno()
buf = b""
while True:
    d = os.read(fd, 65536)
    now = time.time()
    if not d:
        break
    buf += d
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        out.write(b"%.6f " % now + line + b"\n")
if buf:
    out.write(b"%.6f " % time.time() + buf + b"\n")
