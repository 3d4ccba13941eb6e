#!/usr/bin/python3
"""Compare distillation runs that differ in distill.feat_norm ("l2sq" vs "none").

usage: analysis/feat_norm.py RUN_A/run.h5 [RUN_B/run.h5 ...]

For each run prints, as Markdown tables:
  - the spread between taps of the per-tap feature terms, raw (/train/feat_raw,
    plain per-element MSE) and normalized (/train/feat_norm): largest tap /
    smallest tap at the first and the last logged step, and of the per-tap means
    over all logged steps; which taps are largest and smallest;
  - the held-out metrics of /eval (task loss, output MSE to the teacher) for the
    teacher and the student.
Both term families are logged whichever one drives training, so the spread of
each can be read from either run.
"""
import sys

import h5py
import numpy as np


def spread(v):
    v = np.asarray(v, dtype=np.float64)
    lo = v.min()
    return float("inf") if lo <= 0 else float(v.max() / lo)


def text(a):
    return a.decode() if isinstance(a, bytes) else str(a)


def main(paths):
    runs = []
    for p in paths:
        try:
            f = h5py.File(p, "r")
        except OSError as err:
            sys.exit(f"{p}: cannot open as HDF5: {err}")
        for need in ("/train/feat_raw", "/train/feat_norm", "/train/step"):
            if need not in f:
                sys.exit(f"{p}: no {need}: not a distill run log")
        runs.append((p, f))

    print("| run | drives training | term | tap spread, first step | tap spread, last step "
          "| spread of per-tap means | largest tap | smallest tap |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p, f in runs:
        cfg = text(f.attrs.get("config", ""))
        mode = "l2sq" if 'feat_norm = "none"' not in cfg else "none"
        for name in ("feat_raw", "feat_norm"):
            d = f["/train/" + name]
            x = d[...]
            cols = [text(c) for c in d.attrs["columns"]] if "columns" in d.attrs else [str(i) for i in range(x.shape[1])]
            mean = x.mean(axis=0)
            print(f"| {p} | {mode} | {name} | {spread(x[0]):.3g} | {spread(x[-1]):.3g} | {spread(mean):.3g} "
                  f"| {cols[int(mean.argmax())]} ({mean.max():.3g}) | {cols[int(mean.argmin())]} ({mean.min():.3g}) |")

    print()
    print("| run | model | task loss | output MSE to the teacher | final loss_feat | steps |")
    print("| --- | --- | --- | --- | --- | --- |")
    for p, f in runs:
        steps = int(f["/train/step"][-1])
        lf = float(f["/train/loss_feat"][-1]) if "/train/loss_feat" in f else float("nan")
        for m in ("teacher", "student"):
            g = f.get(f"/eval/{m}")
            if g is None:
                continue
            print(f"| {p} | {m} | {float(g['task_loss'][()]):.6f} | {float(g['output_mse'][()]):.3g} "
                  f"| {lf if m == 'student' else float('nan'):.4g} | {steps} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
