"""benchenv.py - what the benchmark reports share: a results directory's env.txt (KEY=VALUE lines) as a dict."""
import os


def env_of(d):
    """a results directory's env.txt as a dict (empty when there is none)"""
    env = {}
    p = os.path.join(d, "env.txt")
    if os.path.exists(p):
        for line in open(p):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env
