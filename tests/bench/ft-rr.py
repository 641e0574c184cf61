#!/usr/bin/env python3
"""ft-rr.py - TCP request/response client for tests/bench/ft.sh: one connection to an echo server in the guest
(busybox `nc -l -p PORT -e cat`), 16-byte requests one at a time for SECS seconds, each answer checked.

usage: ft-rr.py HOST PORT SECS     prints one line: "RR n=<requests> rps=<per s> p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.."
"""
import socket
import sys
import time


def main():
    host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    deadline = time.time() + 60
    while True:
        try:
            s = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                print("RR error=cannot-connect")
                return 1
            time.sleep(0.2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(30)
    lat = []
    t_end = time.time() + secs
    t0 = time.time()
    i = 0
    while time.time() < t_end:
        req = b"%015d\n" % i
        t = time.perf_counter()
        s.sendall(req)
        got = b""
        while len(got) < len(req):
            d = s.recv(len(req) - len(got))
            if not d:
                print("RR error=eof n=%d" % i)
                return 1
            got += d
        lat.append((time.perf_counter() - t) * 1000)
        if got != req:
            print("RR error=mismatch n=%d" % i)
            return 1
        i += 1
    el = time.time() - t0
    s.close()
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0

    print("RR n=%d rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f" %
          (len(lat), len(lat) / el, pct(0.5), pct(0.9), pct(0.99), lat[-1] if lat else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
