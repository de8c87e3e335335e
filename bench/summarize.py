#!/usr/bin/env python3
"""Summarise a bench/compare CSV: per method MB/s median (min-max), wall, CPU s/GiB, peak RSS,
then bascule/peer ratios of the median MB/s (and the median of the per-round ratios).
usage: summarize.py RUNS.csv IMAGE_BYTES"""
import csv
import statistics as st
import sys
from collections import OrderedDict, defaultdict

path, image_bytes = sys.argv[1], int(sys.argv[2])
gib = image_bytes / 2**30
rows = OrderedDict()
labels = {}
per_round = defaultdict(dict)
failed = defaultdict(int)
order = ["bascule-raw", "bascule-zstd", "bascule-raw-full", "bascule-zstd-full", "bascule-stdin", "bascule-xz", "dd", "zstd-dd", "rauc-plain", "rauc-zstd", "swu-raw", "swu-zstd"]
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

bascule = [m for m in ("bascule-raw", "bascule-zstd", "bascule-raw-full", "bascule-zstd-full", "bascule-stdin", "bascule-xz") if m in med]
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
