"""Log, every 5 s, how many cores the whole machine used and how many a process tree used.

A benchmark that times on a shared machine runs next to this to show how much CPU other
processes took meanwhile ("foreign" = machine-wide busy cores minus the tree's):

    python bench/cpu_monitor.py PID LOGFILE      # stops when PID exits

Reads /proc/stat and /proc/<pid>/stat (Linux); the tree is PID and all its descendants (CPU of
descendants that already exited is not counted).
"""
import os, sys, time
root = int(sys.argv[1]); out = open(sys.argv[2], "a")
hz = os.sysconf("SC_CLK_TCK")
def busy():
    v = [int(t) for t in open("/proc/stat").readline().split()[1:]]
    return sum(v) - v[3] - v[4]
def tree():
    kids, cpu = {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            s = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(s[1]), []).append(int(p)); cpu[int(p)] = int(s[11]) + int(s[12])
    tot, st = 0, [root]
    while st:
        p = st.pop(); tot += cpu.get(p, 0); st += kids.get(p, [])
    return tot
b0, t0, w0 = busy(), tree(), time.time()
print("time total_busy_cores bench_tree_cores foreign_cores", file=out, flush=True)
while os.path.exists(f"/proc/{root}"):
    time.sleep(5)
    b1, t1, w1 = busy(), tree(), time.time()
    dt = w1 - w0; tb = (b1 - b0) / hz / dt; tt = max(0, t1 - t0) / hz / dt
    print(f"{time.strftime('%H:%M:%S')} {tb:.2f} {tt:.2f} {max(0, tb - tt):.2f}", file=out, flush=True)
    b0, t0, w0 = b1, t1, w1
