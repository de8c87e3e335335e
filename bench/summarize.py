#!/usr/bin/env python3
"""Summarise a bench/compare CSV: per method MB/s median (min-max), wall, CPU s/GiB, peak RSS,
then bascule/peer ratios of the median MB/s (and the median of the per-round ratios), then,
from STAGES.jsonl, where each bascule method's time went, stage by stage.
usage: summarize.py RUNS.csv IMAGE_BYTES [STAGES.jsonl]
       summarize.py --stages-line JSON    (one run's stages, on one line)"""
import csv
import json
import statistics as st
import sys
from collections import OrderedDict, defaultdict

# The stages of `bascule install --stats`, in pipeline order: JSON key and name.
STAGES = [("read", "read"), ("check", "check"), ("write", "writer"), ("lanes", "write lanes")]


def stage_line(s):
    """One run's stages as one short line: % busy / starved / blocked of each stage."""
    cells = []
    for key, name in STAGES:
        if key in s:
            t = s[key]
            cells.append(f"{name}({t['threads']}) {t['busy_pct']:.0f}/{t['starved_pct']:.0f}/{t['blocked_pct']:.0f}")
    d = s["device"]
    return (f"    stages (% busy/starved/blocked): {', '.join(cells)}; slot busy {d['busy_pct']:.0f}% "
            f"idle {d['idle_pct']:.0f}%; sync {s['sync']['busy_s']:.2f} s of {s['wall_s']:.2f} s")


def stage_table(path, labels):
    """Per method, the medians over its runs of each stage's share of its thread time."""
    runs = defaultdict(list)
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            runs[r["method"]].append(r["stages"])
    if not runs:
        return
    print()
    print("where the time went (bascule install --stats; medians over the runs): % of each stage's")
    print("thread time (threads x pipeline wall); the slot is busy while at least one write is in flight")
    for m, v in runs.items():
        med = lambda f: st.median(f(s) for s in v)
        print(f"{labels.get(m, m)} ({len(v)} runs, pipeline wall {med(lambda s: s['wall_s']):.2f} s)")
        print(f"  {'stage':12s} {'threads':>7s} {'busy':>6s} {'starved':>8s} {'blocked':>8s} {'other':>6s}")
        for key, name in STAGES:
            if key not in v[0]:
                continue
            pct = lambda part: med(lambda s: s[key][part + "_pct"])
            other = med(lambda s: 100 * s[key]["other_s"] / max(s["wall_s"] * s[key]["threads"], 1e-9))
            print(f"  {name:12s} {v[0][key]['threads']:7d} {pct('busy'):5.0f}% {pct('starved'):7.0f}% "
                  f"{pct('blocked'):7.0f}% {other:5.0f}%")
        print(f"  slot: busy {med(lambda s: s['device']['busy_pct']):.0f}%, idle {med(lambda s: s['device']['idle_pct']):.0f}% "
              f"({med(lambda s: s['device']['idle_s']):.3f} s); final sync {med(lambda s: s['sync']['busy_s']):.3f} s "
              f"({med(lambda s: s['sync']['busy_pct']):.0f}%)")


if sys.argv[1] == "--stages-line":
    s = json.loads(sys.argv[2])
    print(stage_line(s))
    sys.exit(0)

path, image_bytes = sys.argv[1], int(sys.argv[2])
stages_path = sys.argv[3] if len(sys.argv) > 3 else None
gib = image_bytes / 2**30
rows = OrderedDict()
labels = {}
per_round = defaultdict(dict)
failed = defaultdict(int)
order = ["bascule-raw", "bascule-zstd", "bascule-raw-full", "bascule-zstd-full", "bascule-provision", "bascule-stdin", "bascule-xz", "dd", "zstd-dd", "rauc-plain", "rauc-zstd", "swu-raw", "swu-zstd"]
for r in csv.DictReader(open(path)):
    labels[r["method"]] = r["label"]
    if r["ok"] != "1":
        failed[r["method"]] += 1
        continue
    rows.setdefault(r["method"], []).append(r)
    per_round[r["round"]][r["method"]] = float(r["mb_per_s"])

methods = [m for m in order if m in rows] + [m for m in rows if m not in order]
print(f"{'method':30s} {'n':>2s} {'MB/s':>6s} {'(min-max)':>11s} {'wall s':>7s} {'CPU s/GiB':>9s} {'peak RSS MiB':>12s} {'anon MiB':>8s}")
med = {}
for m in methods:
    v = rows[m]
    mbs = [float(x["mb_per_s"]) for x in v]
    med[m] = st.median(mbs)
    wall = st.median(float(x["wall_s"]) for x in v)
    cpu = st.median(float(x["cpu_s"]) for x in v) / gib
    rss = max(int(x["rss_kib"]) for x in v) / 1024
    anon = max(int(x.get("anon_kib") or 0) for x in v) / 1024
    note = f"  ({failed[m]} failed)" if failed[m] else ""
    print(f"{labels[m]:30s} {len(v):2d} {med[m]:6.0f} {f'({min(mbs):.0f}-{max(mbs):.0f})':>11s} {wall:7.2f} {cpu:9.2f} {rss:12.1f} {anon:8.1f}{note}")
for m in failed:
    if m not in rows:
        print(f"{labels[m]:30s}  0  all {failed[m]} runs failed")

bascule = [m for m in methods if m.startswith("bascule-")]
peers = [m for m in methods if not m.startswith("bascule-")]
if bascule and peers:
    print()
    print("ratio bascule/peer (MB/s, >1 = bascule faster): ratio of medians [median of per-round ratios]")
    print(f"{'peer':30s}" + "".join(f"{labels[b]:>24s}" for b in bascule))
    for p in peers:
        cells = []
        for b in bascule:
            rr = [rd[b] / rd[p] for rd in per_round.values() if b in rd and p in rd]
            cells.append(f"{med[b] / med[p]:.2f} [{st.median(rr):.2f}]" if rr else f"{med[b] / med[p]:.2f}")
        print(f"{labels[p]:30s}" + "".join(f"{c:>24s}" for c in cells))
elif not bascule:
    print("\n(no bascule runs: no bascule/peer ratios)")
if stages_path:
    stage_table(stages_path, labels)
