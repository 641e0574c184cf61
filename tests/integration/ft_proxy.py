#!/usr/bin/env python3
"""ft_proxy.py - a TCP proxy between an ftvmm primary and its backup that can corrupt one epoch on the wire.

usage: ft_proxy.py --listen 127.0.0.1:PORT --to 127.0.0.1:PORT --log FILE [--trigger FILE] [--mode M]

Both of the primary's connections (data and heartbeat) go through it. The primary-to-backup direction is parsed
as ftvmm frames (32-byte header: magic u32, version u16, type u16, len u64, seq u64, checksum u64) only to find
frame boundaries; bytes are forwarded unchanged until FILE (--trigger) exists. Then the next FT_EPOCH frame of
the data connection is damaged according to --mode and the proxy logs it:
    payload  flip one byte in the middle of the payload (the checksum no longer matches)   [default]
    magic    flip a byte of the frame's magic (the stream stops looking like ftvmm)
Log lines: "conn N type=T", "corrupted conn=N epoch=SEQ len=L at=OFF mode=M", "closed conn=N".
"""
import argparse
import os
import socket
import struct
import sys
import threading

HDR = struct.Struct("<IHHQQQ")
FT_HELLO, FT_EPOCH = 1, 7


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--trigger")
    ap.add_argument("--mode", default="payload", choices=["payload", "magic"])
    a = ap.parse_args()
    log = open(a.log, "a", buffering=1)
    lock = threading.Lock()
    state = {"done": False, "n": 0}

    def say(s):
        with lock:
            log.write(s + "\n")

    def recv_exact(s, n):
        b = bytearray()
        while len(b) < n:
            d = s.recv(n - len(b))
            if not d:
                return None
            b += d
        return b

    def pump_raw(src, dst):
        try:
            while True:
                d = src.recv(1 << 16)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pump_frames(cid, src, dst):
        try:
            while True:
                h = recv_exact(src, HDR.size)
                if h is None:
                    break
                magic, ver, typ, ln, seq, csum = HDR.unpack(h)
                corrupt = False
                if typ == FT_EPOCH and a.trigger and not state["done"] and os.path.exists(a.trigger):
                    with lock:
                        corrupt = not state["done"]
                        state["done"] = True
                if corrupt and a.mode == "magic":
                    h[1] ^= 0x40
                    say("corrupted conn=%d epoch=%d len=%d at=1 mode=magic" % (cid, seq, ln))
                dst.sendall(h)
                left, off = ln, 0
                at = ln // 2 if ln else None
                while left:
                    d = src.recv(min(left, 1 << 16))
                    if not d:
                        raise EOFError
                    if corrupt and a.mode == "payload" and at is not None and off <= at < off + len(d):
                        d = bytearray(d)
                        d[at - off] ^= 0x5A
                        say("corrupted conn=%d epoch=%d len=%d at=%d mode=payload" % (cid, seq, ln, at))
                    dst.sendall(d)
                    off += len(d)
                    left -= len(d)
        except (OSError, EOFError):
            pass
        say("closed conn=%d" % cid)
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle(cid, c):
        th, tp = a.to.rsplit(":", 1)
        try:
            b = socket.create_connection((th, int(tp)))
        except OSError as e:
            say("conn %d cannot reach %s: %s" % (cid, a.to, e))
            c.close()
            return
        for s in (c, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # peek the first header to tell the data connection (HELLO) from the heartbeat one
        first = recv_exact(c, HDR.size)
        if first is None:
            c.close()
            b.close()
            return
        typ = HDR.unpack(first)[2]
        say("conn %d type=%d" % (cid, typ))
        # the header goes on through the frame parser: hand it back by prepending
        b.sendall(first)
        _, _, _, ln, _, _ = HDR.unpack(first)
        rest = recv_exact(c, ln) if ln else b""
        if rest is None:
            c.close()
            b.close()
            return
        b.sendall(rest)
        threading.Thread(target=pump_raw, args=(b, c), daemon=True).start()
        if typ == FT_HELLO:
            pump_frames(cid, c, b)
        else:
            pump_raw(c, b)

    lh, lp = a.listen.rsplit(":", 1)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((lh, int(lp)))
    ls.listen(8)
    say("listening %s -> %s" % (a.listen, a.to))
    while True:
        c, _ = ls.accept()
        state["n"] += 1
        threading.Thread(target=handle, args=(state["n"], c), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
