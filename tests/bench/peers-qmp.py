#!/usr/bin/env python3
"""peers-qmp.py - the QEMU side of tests/bench/peers-snapshot.sh: a snapshot to a file over QMP, timed.

Usage: peers-qmp.py SOCK stop|live FILE | peers-qmp.py SOCK resume
  stop  stop the guest, migrate it to FILE ("exec:cat >FILE"), wait for completion, cont: what `ftvmm ctl snapshot`
        does (pause, write, resume). Prints wall_ms (stop sent to cont answered) and total_ms (QEMU's total-time).
  live  migrate to FILE while the guest runs (QEMU's pre-copy), then cont (the source stops for the last round).
        Prints wall_ms (migrate sent to cont answered), total_ms and downtime_ms (QEMU's own figures).
  resume  on a QEMU started with -incoming: wait for the socket and for the incoming migration to complete, then cont
        if the guest is paused (a file saved from a stopped guest restores paused; a live one runs by itself).
stop and live first lift QEMU's migration bandwidth cap (128 MiB/s by default): a snapshot to a local file is not a network
migration, and ftvmm's writer has no cap either.
"""
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("peers-qmp: QEMU closed the QMP socket")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args} if args else {"execute": name}) + "\n")
        self.f.flush()
        msg = self._read()
        if "error" in msg:
            raise SystemExit("peers-qmp: %s: %s" % (name, msg["error"].get("desc", msg["error"])))
        return msg.get("return")


def wait_done(q, limit_s=600):
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        st = q.cmd("query-migrate")
        status = st.get("status")
        if status == "completed":
            return st
        if status in ("failed", "cancelled"):
            raise SystemExit("peers-qmp: migration %s: %s" % (status, st.get("error-desc", "")))
        time.sleep(0.002)
    raise SystemExit("peers-qmp: migration did not complete in %d s" % limit_s)


def resume(sock, limit_s=300):
    end = time.monotonic() + limit_s
    while True:
        try:
            q = Qmp(sock)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > end:
                raise SystemExit("peers-qmp: no QMP socket at %s" % sock)
            time.sleep(0.005)
    wait_done(q, limit_s)
    if not q.cmd("query-status").get("running"):
        q.cmd("cont")


def main():
    if len(sys.argv) == 3 and sys.argv[2] == "resume":
        return resume(sys.argv[1])
    if len(sys.argv) != 4 or sys.argv[2] not in ("stop", "live"):
        raise SystemExit(__doc__.strip().splitlines()[2])
    sock, mode, path = sys.argv[1:]
    if any(c in path for c in "'\"\\ $`;&|<>"):
        raise SystemExit("peers-qmp: FILE %r: only plain paths (it goes into a shell command)" % path)
    q = Qmp(sock)
    q.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
    t0 = time.monotonic()
    if mode == "stop":
        q.cmd("stop")
    q.cmd("migrate", uri="exec:cat >%s" % path)
    st = wait_done(q)
    q.cmd("cont")
    wall = (time.monotonic() - t0) * 1000
    out = "wall_ms=%.1f total_ms=%s" % (wall, st.get("total-time", ""))
    if mode == "live":
        out += " downtime_ms=%s" % st.get("downtime", "")
    print(out)


if __name__ == "__main__":
    main()
