#!/usr/bin/env python3
"""Aggregates perf/tuner_check.sh's runs: median out-of-place time per size and algorithm."""
import glob
import re
import statistics
import sys

out, algos, ranks = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
for n in ranks:
    times = {}  # (algo, size) -> [us]
    # size -> algorithm the tuner logged for it. The log line only appears when the choice for
    # all-reduce changes, and the driver runs an 8-byte all-reduce (its timing sync) between
    # sizes: a size without a line of its own got the same algorithm as those 8 bytes.
    picks = {}
    for a in algos:
        for path in glob.glob(f"{out}/{n}.{a}.*"):
            for line in open(path):
                m = re.match(r"\[0\]\s+(\d+)\s+\d+\s+\S+\s+\S+\s+-?\d+\s+([\d.]+)", line)
                if m:
                    times.setdefault((a, int(m.group(1))), []).append(float(m.group(2)))
                m = re.search(r"tuner: allreduce of (\d+) bytes on \d+ ranks -> (\S+)", line)
                if m and a == "tuned" and line.startswith("[0]"):
                    picks[int(m.group(1))] = m.group(2)
    sizes = sorted({s for (_, s) in times})
    forced = [a for a in algos if a != "tuned"]
    print(f"\n{n} ranks: median out-of-place time (us)")
    print(f"{'size':>10} " + " ".join(f"{a[:12]:>12}" for a in forced) + f" {'best':>18} {'tuner pick':>18} {'tuner':>10} {'ratio':>6} {'pick':>6}")
    worst = worstPick = 0.0
    for s in sizes:
        pick = picks.get(s, picks.get(8, "?"))
        med = {a: statistics.median(times[(a, s)]) for a in algos if (a, s) in times}
        best = min(forced, key=lambda a: med.get(a, float("inf")))
        ratio = med["tuned"] / med[best]
        # The picked algorithm's forced time against the best: the choice alone, without the
        # run-to-run noise between the tuned run and the forced ones.
        pickRatio = med[pick] / med[best] if pick in med else float("nan")
        worst = max(worst, ratio)
        worstPick = max(worstPick, pickRatio)
        print(f"{s:>10} " + " ".join(f"{med.get(a, float('nan')):>12.2f}" for a in forced) +
              f" {best:>18} {pick:>18} {med['tuned']:>10.2f} {ratio:>6.2f} {pickRatio:>6.2f}")
    print(f"worst tuner/best ratio at {n} ranks: {worst:.2f} (tuned run); {worstPick:.2f} (picked algorithm forced)")
