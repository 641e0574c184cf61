#!/usr/bin/env python3
"""ft_tcpcheck.py - host side of ftwork --tcp for the fault-tolerance tests: accepts ONE connection from the guest
and checks the stream it carries across failovers.

usage: ft_tcpcheck.py --listen ADDR:PORT --log FILE [--accept-timeout S] [--chain]

Lines are "<seq>\\n" (plain ftwork --tcp) or "<seq> <nonce> <chain>\\n" (ftwork --tcp --tcp-chain; nonce and chain
16 hex digits each); both are accepted, --chain requires the second kind on every line. Checked:
  - every received seq is the previous one + 1 (the first may be anything >= 1): output commit means the host
    never sees a tick that the backup will redo, and never misses one;
  - chained lines: <chain> is the 64-bit FNV-1a of every byte the guest sent before this line; the checker
    hashes every byte it received before it. They differ when the host received bytes the sending copy of the
    guest did not send: output of an epoch that the surviving copy re-executed (its nonce differs), i.e. a
    SPLICE. A re-executed line has the same length as the one it replaces, so seq numbers alone never show it.
    After a splice the checker adopts the sender's chain (one error per splice, not one per later line).
A second connection, a reset, EOF or a malformed line is an error (the connection must survive failover). The log
(line buffered, one event a line, times from time.time() so the shell can compare them with `date +%s.%N`):
    listening ADDR:PORT <t>
    connect <peer> <t>
    seq <n> <t>                     every line received, in order
    error <what> <t>                then the checker keeps the connection open (and keeps logging) if it can;
                                    a splice: "error SPLICE at seq <n>: ..." (the first line whose chain
                                    disagrees; the foreign bytes lie before it, after the last line that agreed)
    eof <t> | reset <t>
    summary first=<n> last=<n> count=<n> errors=<n> max_gap_s=<s> gap_after=<n> chained=<n> splices=<n>
                                    on SIGTERM/SIGINT or EOF
"""
import argparse
import os
import select
import signal
import socket
import sys
import time

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
M64 = (1 << 64) - 1


def fnv1a(h, data):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & M64
    return h


def parse_line(line):
    """(seq, chain or None) of one line without its newline, or None if malformed."""
    parts = line.split(b" ")
    try:
        if len(parts) == 1:
            return int(parts[0]), None
        if len(parts) == 3 and len(parts[1]) == 16 and len(parts[2]) == 16:
            int(parts[1], 16)
            return int(parts[0]), int(parts[2], 16)
    except ValueError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--accept-timeout", type=float, default=600)
    ap.add_argument("--chain", action="store_true",
                    help="every line must be chained (ftwork --tcp-chain): a plain line is an error")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    log = open(a.log, "a", buffering=1)

    def ev(*words):
        log.write(" ".join(str(w) for w in words) + " %.6f\n" % time.time())

    st = {"first": None, "last": None, "count": 0, "errors": 0, "max_gap": 0.0, "gap_after": None, "t_last": None,
          "chained": 0, "splices": 0, "good": None, "hash": FNV_OFFSET, "bytes": 0}
    done = {"v": False}

    def summary():
        if done["v"]:
            return
        done["v"] = True
        log.write("summary first=%s last=%s count=%d errors=%d max_gap_s=%.3f gap_after=%s chained=%d splices=%d\n" %
                  (st["first"], st["last"], st["count"], st["errors"], st["max_gap"], st["gap_after"],
                   st["chained"], st["splices"]))
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
            before = st["hash"]  # FNV-1a of every byte received before this line
            st["hash"] = fnv1a(before, line + b"\n")
            st["bytes"] += len(line) + 1
            parsed = parse_line(line)
            if parsed is None:
                st["errors"] += 1
                ev("error", "malformed-line-%r" % line[:40])
                continue
            n, chain = parsed
            if chain is None and a.chain:
                st["errors"] += 1
                ev("error", "unchained-line-seq-%d (--chain wants ftwork --tcp-chain)" % n)
            if chain is not None:
                st["chained"] += 1
                if chain != before:
                    st["splices"] += 1
                    st["errors"] += 1
                    since = ("the start of the stream" if st["good"] is None
                             else "the start of seq %d's line" % st["good"])
                    ev("error", "SPLICE at seq %d: the guest's chain %016x, the %d bytes received before it hash to "
                       "%016x: bytes between %s (its chain agreed) and this line are output the sending copy of the "
                       "guest did not produce" % (n, chain, st["bytes"] - len(line) - 1, before, since))
                    # go on from the sender's view of the stream: the next splice is reported on its own
                    st["hash"] = fnv1a(chain, line + b"\n")
                else:
                    st["good"] = n
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
