#!/usr/bin/env python3
"""Peak memory of a process tree, sampled: usage: rss-sampler.py ROOT_PID [EXTRA_PID ...]

Every 100 ms, sums RssAnon and VmRSS over all descendants of ROOT_PID (not ROOT_PID itself,
which is /usr/bin/time) plus the EXTRA_PIDs (a daemon doing the work, e.g. `rauc service`).
Exits when ROOT_PID is gone and prints "PEAK_ANON_KIB PEAK_RSS_KIB".

VmRSS counts file pages a process maps (RAUC mmaps the image it copies), RssAnon only its
own heap and stacks, which is the memory an updater really takes from the device.
"""
import os
import sys
import time

root = int(sys.argv[1])
extra = [int(p) for p in sys.argv[2:]]


def snapshot():
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            parent[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            pass
    tree, frontier = set(), {root}
    while frontier:
        kids = {p for p, pp in parent.items() if pp in frontier and p not in tree}
        tree |= kids
        frontier = kids
    anon = rss = 0
    for p in tree | set(extra):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        anon += int(line.split()[1])
                    elif line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return anon, rss


peak_anon = peak_rss = 0
while os.path.exists(f"/proc/{root}"):
    try:
        with open(f"/proc/{root}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    except OSError:
        break
    a, r = snapshot()
    peak_anon, peak_rss = max(peak_anon, a), max(peak_rss, r)
    time.sleep(0.1)
print(peak_anon, peak_rss)
