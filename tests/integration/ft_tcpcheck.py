#!/usr/bin/env python3
"""ft_tcpcheck.py - host side of ftwork --tcp for the fault-tolerance tests: accepts ONE connection from the guest
and checks the "<seq>\\n" stream it carries across failovers.

usage: ft_tcpcheck.py --listen ADDR:PORT --log FILE [--accept-timeout S]

Every received seq must be the previous one + 1 (the first may be anything >= 1): output commit means the host
never sees a tick that the backup will redo, and never misses one. A second connection, a reset, EOF or a
malformed line is an error (the connection must survive failover). The log (line buffered, one event a line,
times from time.time() so the shell can compare them with `date +%s.%N`):
    listening ADDR:PORT <t>
    connect <peer> <t>
    seq <n> <t>                     every line received, in order
    error <what> <t>                then the checker keeps the connection open (and keeps logging) if it can
    eof <t> | reset <t>
    summary first=<n> last=<n> count=<n> errors=<n> max_gap_s=<s> gap_after=<n>   on SIGTERM/SIGINT or EOF
"""
import argparse
import os
import select
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--accept-timeout", type=float, default=600)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    log = open(a.log, "a", buffering=1)

    def ev(*words):
        log.write(" ".join(str(w) for w in words) + " %.6f\n" % time.time())

    st = {"first": None, "last": None, "count": 0, "errors": 0, "max_gap": 0.0, "gap_after": None, "t_last": None}
    done = {"v": False}

    def summary():
        if done["v"]:
            return
        done["v"] = True
        log.write("summary first=%s last=%s count=%d errors=%d max_gap_s=%.3f gap_after=%s\n" %
                  (st["first"], st["last"], st["count"], st["errors"], st["max_gap"], st["gap_after"]))
        log.flush()

    def on_term(sig, frm):
        summary()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # the TAP's address may appear a moment after we start
    for _ in range(100):
        try:
            ls.bind((host, int(port)))
            break
        except OSError:
            time.sleep(0.1)
    else:
        ev("error", "cannot-bind")
        summary()
        return 1
    ls.listen(4)
    ev("listening", a.listen)
    r, _, _ = select.select([ls], [], [], a.accept_timeout)
    if not r:
        ev("error", "no-connection")
        summary()
        return 1
    conn, peer = ls.accept()
    ev("connect", "%s:%d" % peer)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        r, _, _ = select.select([conn, ls], [], [], 1.0)
        if ls in r:
            c2, p2 = ls.accept()
            st["errors"] += 1
            ev("error", "second-connection-from-%s:%d" % p2)
            c2.close()
        if conn not in r:
            continue
        try:
            data = conn.recv(65536)
        except ConnectionResetError:
            ev("reset")
            st["errors"] += 1
            break
        except OSError as e:
            ev("error", "recv-" + type(e).__name__)
            st["errors"] += 1
            break
        if not data:
            ev("eof")
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            now = time.time()
            try:
                n = int(line)
            except ValueError:
                st["errors"] += 1
                ev("error", "malformed-line-%r" % line[:40])
                continue
            if st["last"] is not None and n != st["last"] + 1:
                st["errors"] += 1
                ev("error", "seq-%d-after-%d" % (n, st["last"]))
            if st["first"] is None:
                st["first"] = n
            if st["t_last"] is not None and now - st["t_last"] > st["max_gap"]:
                st["max_gap"] = now - st["t_last"]
                st["gap_after"] = st["last"]
            st["last"] = n
            st["t_last"] = now
            st["count"] += 1
            log.write("seq %d %.6f\n" % (n, now))
    summary()
    # keep the socket (so a late guest packet gets no RST) until we are told to stop
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
