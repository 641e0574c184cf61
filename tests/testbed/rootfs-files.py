#!/usr/bin/env python3
"""tests/testbed/rootfs-files.py - the files of the test bed's root image: installed Debian packages and what they need.

Usage: rootfs-files.py PACKAGE... > list
Prints, one per line, every path (files, symlinks, directories) that dpkg lists for the named packages and the
installed packages they depend on (Pre-Depends and Depends, recursively; of alternatives the first installed one),
without documentation, manual pages and translations. A package that is not installed is reported on stderr and
skipped: the image then lacks it, and whatever needs it inside the test bed fails with "command not found".
"""
import re
import subprocess
import sys

SKIP = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/", "/usr/share/lintian/",
        "/usr/share/bug/", "/usr/share/doc-base/")


def installed():
    """{package name (no arch): dependency string} of every installed package."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Status}\t${Pre-Depends}, ${Depends}\n"],
                         check=True, capture_output=True, text=True).stdout
    pkgs = {}
    for line in out.splitlines():
        name, status, deps = (line.split("\t") + ["", ""])[:3]
        if status.endswith(" installed"):
            pkgs[name] = deps
    return pkgs


def dep_names(deps, pkgs):
    """The installed package chosen for each dependency of a Depends string."""
    for group in deps.split(","):
        alts = [re.sub(r"\(.*?\)|\[.*?\]|:\w+", "", a).strip() for a in group.split("|")]
        alts = [a for a in alts if a]
        for a in alts:
            if a in pkgs:
                yield a
                break


def main():
    pkgs = installed()
    want, todo = set(), []
    for p in sys.argv[1:]:
        if p in pkgs:
            todo.append(p)
        else:
            print(f"rootfs: package {p} is not installed: the test bed's root lacks it", file=sys.stderr)
    while todo:
        p = todo.pop()
        if p in want:
            continue
        want.add(p)
        todo.extend(d for d in dep_names(pkgs[p], pkgs) if d not in want)
    out = subprocess.run(["dpkg-query", "-L", *sorted(want)], check=True, capture_output=True, text=True).stdout
    paths = sorted({p for p in out.splitlines() if p.startswith("/") and not p.startswith(SKIP)
                    and p not in ("/", "/.")})
    sys.stdout.write("".join(p + "\n" for p in paths))
    print(f"rootfs: {len(want)} packages, {len(paths)} paths", file=sys.stderr)


if __name__ == "__main__":
    main()
