#!/usr/bin/env python3
"""The README's figure for `bascule health` on a confirmed slot with no checks
configured: the median wall time of N runs (default 31), measured against `true` in
the same run, interleaved.

    cargo build --release && python3 bench/health_figure.py [target/release/bascule] [N]

It makes a device with `bascule demo` (in a temporary directory), drops its [health]
section (no checks), runs `health` once to re-arm the booted slot, then times N runs of
`bascule health` and of `true`. Each probe still appends its record to the history
(one write and one fsync); the env is not written (nothing changes).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(argv, env):
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/bascule")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 31
    with tempfile.TemporaryDirectory() as tmp:
        demo = os.path.join(tmp, "demo")
        subprocess.run([binary, "demo", "--dir", demo], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        config = os.path.join(demo, "system.toml")
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text[: text.index("\n[health]")] + "\n")
        env = dict(os.environ, BASCULE_CONFIG=config, RUST_LOG="warn")
        subprocess.run([binary, "health"], env=env, check=True, stdout=subprocess.DEVNULL)
        health, true = [], []
        for _ in range(runs):
            health.append(timed([binary, "health"], env))
            true.append(timed(["true"], env))
        h, t = statistics.median(health), statistics.median(true)
        print(f"bascule health, confirmed slot, no checks: median {h:.2f} ms over {runs} runs "
              f"(true: {t:.2f} ms; difference {h - t:.2f} ms)")


if __name__ == "__main__":
    main()
