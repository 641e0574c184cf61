#!/usr/bin/env python3
"""ft_peer.py - misbehaving peers for ftvmm's fault-tolerance handshake (bad-input tests).

usage:
  ft_peer.py server ADDR:PORT MODE [--log FILE]   a fake backup, serving every connection per MODE:
      garbage   send an HTTP-looking reply at once, then read and drop whatever comes
      close     close each connection as soon as it is accepted
      silent    accept and read, never answer
      version   answer with a well-formed ftvmm frame header of protocol version 99 (+ 4 bytes)
  ft_peer.py client ADDR:PORT MODE                a fake primary: connect and send per MODE, then close:
      garbage   "GET / HTTP/1.0" and some bytes (not ftvmm)
      version   an ftvmm HELLO header with version 99
      hello-only  a well-formed HELLO with a malformed shape, then wait for the reply (printed)
"""
import socket
import struct
import sys
import threading
import time

HDR = struct.Struct("<IHHQQQ")
MAGIC = 0x50565446


def serve(addr, mode, logf):
    h, p = addr.rsplit(":", 1)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((h, int(p)))
    ls.listen(8)
    log = open(logf, "a", buffering=1) if logf else None
    if log:
        log.write("listening %s %s\n" % (addr, mode))

    def one(c):
        try:
            if mode == "close":
                c.close()
                return
            if mode == "garbage":
                c.sendall(b"HTTP/1.0 400 Bad Request\r\nServer: not-ftvmm\r\nContent-Length: 0\r\n\r\n")
            if mode == "version":
                c.sendall(HDR.pack(MAGIC, 99, 3, 4, 0, 0) + b"\0\0\0\0")
            while c.recv(65536):
                pass
        except OSError:
            pass
        c.close()

    while True:
        c, peer = ls.accept()
        if log:
            log.write("connection from %s:%d\n" % peer)
        threading.Thread(target=one, args=(c,), daemon=True).start()


def client(addr, mode):
    h, p = addr.rsplit(":", 1)
    c = socket.create_connection((h, int(p)), timeout=10)
    if mode == "garbage":
        c.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n" + b"x" * 64)
    elif mode == "version":
        c.sendall(HDR.pack(MAGIC, 99, 1, 0, 1, 0))
    elif mode == "hello-only":
        # a correct frame (checksum and all) is more work than needed: a wrong checksum is -EBADMSG
        c.sendall(HDR.pack(MAGIC, 1, 1, 4, 1, 0) + b"junk")
    try:
        d = c.recv(4096)
        print("reply %d bytes" % len(d))
    except OSError as e:
        print("reply error %s" % e)
    time.sleep(0.2)
    c.close()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "server":
        logf = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--log" else None
        serve(sys.argv[2], sys.argv[3], logf)
    else:
        client(sys.argv[2], sys.argv[3])
