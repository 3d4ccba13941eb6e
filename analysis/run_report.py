#!/usr/bin/python3
"""Markdown report of a LAPTOP run's run.h5: per-layer scores, the plan, the
additivity check and the evaluation (whichever of them the file holds).

usage: analysis/run_report.py RUN/run.h5 [CRITERION]     (default output_loss)
"""
import sys

import h5py


def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def main(path, crit):
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        sys.exit(f"{path}: cannot open as HDF5: {err}")
    if "/prune/candidates" in f and f"/prune/scores/{crit}" in f:
        cands = f["/prune/candidates"][:]
        sc = f[f"/prune/scores/{crit}"]
        plan = set(int(i) for i in f["/prune/plan"][:]) if "/prune/plan" in f else set()
        a = sc.attrs
        print(f"Scores `/prune/scores/{crit}` ({a.get('calib_samples', '?')} calibration samples, "
              f"{a.get('ranks', '?')} ranks, {float(a.get('seconds', float('nan'))):.1f} s); * = removed by the plan\n")
        print(f"| idx | layer | kind | params | {crit} |")
        print("| --- | --- | --- | --- | --- |")
        for i, (c, v) in enumerate(zip(cands, sc[:])):
            mark = " *" if i in plan else ""
            print(f"| {i} | {s(c['name'])}{mark} | {s(c['kind'])} | {int(c['params']):,} | {v:.3g} |")
        print()
    if "/prune/plan" in f:
        p = f["/prune/plan"]
        a = p.attrs
        names = [s(f["/prune/candidates"][int(i)]["name"]) for i in p[:]]
        print(f"Plan ({s(a['criterion'])}, ratio {float(a['ratio'])}, budget {s(a['budget'])}): removes {len(names)} "
              f"layers, {int(a['removed']):,} of {int(a['total']):,} ({a['removed'] / a['total']:.1%}); predicted "
              f"output loss {a['predicted_loss']:.3g}, measured {a['actual_loss']:.3g}: {', '.join(names)}\n")
    if "/prune/additivity" in f:
        d = f["/prune/additivity"]
        x = d[:]
        print(f"Additivity: {len(x)} random removal sets, Pearson r {float(d.attrs['pearson_r']):.3f} between the sum "
              f"of single-layer scores and the measured output loss (predicted {x[:, 0].min():.3g}..{x[:, 0].max():.3g},"
              f" actual {x[:, 1].min():.3g}..{x[:, 1].max():.3g})\n")
    if "/eval" in f:
        print("| model | task loss | output MSE to the teacher | parameters | MACs/sample | ms/sample |")
        print("| --- | --- | --- | --- | --- | --- |")
        t = f["/eval/teacher"]
        for m in ("teacher", "student"):
            g = f[f"/eval/{m}"]
            pp, mm = float(g["params"][()]), float(g["macs"][()])
            rel = "" if m == "teacher" else f" ({pp / float(t['params'][()]):.1%})"
            relm = "" if m == "teacher" else f" ({mm / float(t['macs'][()]):.1%})"
            print(f"| {m} | {float(g['task_loss'][()]):.6f} | {float(g['output_mse'][()]):.3g} | {int(pp):,}{rel} "
                  f"| {int(mm):,}{relm} | {1000 * float(g['seconds_per_sample'][()]):.1f} |")
    if "/train/step" in f:
        st = f["/train/step"][:]
        print(f"\nTraining log: {len(st)} rows, last step {int(st[-1])}, final loss {float(f['/train/loss'][-1]):.5f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "output_loss")
