"""Log, every 5 s, how many cores the whole machine used and how many a process tree used.

A benchmark that times on a shared machine runs next to this to show how much CPU other
processes took meanwhile ("foreign" = machine-wide busy cores minus the tree's):

    python bench/cpu_monitor.py PID LOGFILE      # stops when PID exits

Reads /proc/stat and /proc/<pid>/stat (Linux); the tree is PID and all its descendants (CPU of
descendants that already exited is not counted).
"""

from __future__ import annotations

import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def busy_jiffies() -> int:
    """Machine-wide CPU time so far, all states but idle and iowait."""
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]


def tree_jiffies(root: int) -> int:
    """utime + stime of ``root`` and its living descendants."""
    kids: dict[int, list[int]] = {}
    cpu: dict[int, int] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(s[1]), []).append(int(p))
        cpu[int(p)] = int(s[11]) + int(s[12])
    total, stack = 0, [root]
    while stack:
        p = stack.pop()
        total += cpu.get(p, 0)
        stack += kids.get(p, [])
    return total


def main() -> None:
    root, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "a") as out:
        print("time total_busy_cores bench_tree_cores foreign_cores", file=out, flush=True)
        b0, t0, w0 = busy_jiffies(), tree_jiffies(root), time.time()
        while os.path.exists(f"/proc/{root}"):
            time.sleep(5)
            b1, t1, w1 = busy_jiffies(), tree_jiffies(root), time.time()
            total = (b1 - b0) / HZ / (w1 - w0)
            mine = max(0, t1 - t0) / HZ / (w1 - w0)
            print(f"{time.strftime('%H:%M:%S')} {total:.2f} {mine:.2f} {max(0.0, total - mine):.2f}",
                  file=out, flush=True)
            b0, t0, w0 = b1, t1, w1


if __name__ == "__main__":
    main()
