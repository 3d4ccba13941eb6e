#!/usr/bin/python3
"""Figures of laptop-diff runs, as PNG files (h5py + numpy + matplotlib's Agg backend).

usage: analysis/figures.py FIGURE INPUT... --out FILE.png [--size WxH]

  losses      RUN/run.h5       distillation curves of the three loss terms (/train/loss_task, loss_out,
                               loss_feat) and their weighted sum (/train/loss) over the steps
  imbalance   RUN/run.h5       per-tap feature terms over the steps: raw (/train/feat_raw, plain MSE) and
                               normalized (/train/feat_norm), one line per tap (the imbalance figure)
  scores      RUN/run.h5       per-layer scores (/prune/scores/<criterion>, one panel each) with the
                               plan's layers (/prune/plan) marked  [--criteria a,b,...]
  additivity  RUN/run.h5       predicted (sum of single-layer scores) vs measured output loss of the
                               random removal sets (/prune/additivity), the least-squares fit, pearson_r
  ratio       GRID_OUT         FID and alignment after retraining vs the parameters removed, one line per
                               criterion, error bars = sd over seeds (analysis/grid_table.py's cells)
                               [--metrics fid,alignment]
  samples     RUN_DIR...       sample grids: the teacher's, then each run's student, cut from each run's
                               teacher_vs_student.png (eval), plus samples.png (sample) where present

--size is in pixels (at 100 dpi; default per figure). A part of a figure whose data a run.h5 lacks is
left out with a printed note; a figure with nothing to draw is an error (exit 1, no file written).
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import grid_table  # noqa: E402  (the config parser, the grid's cells)

DPI = 100
PNG_BORDER, PNG_SCALE = 2, 2  # src/io/png_grid.h: eval's and sample's grids


def note(msg):
    print(f"figures.py: note: {msg}")


def fail(msg):
    sys.exit(f"figures.py: {msg}")


def text(a):
    return a.decode() if isinstance(a, bytes) else str(a)


def open_h5(path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        fail(f"{path}: cannot open as HDF5: {err}")


def config(f):
    return grid_table.parse_config(text(f.attrs["config"])) if "config" in f.attrs else {}


def run_label(f, fallback):
    """plan, ratio, KD variant and seed of a run, from its run.h5."""
    cfg = config(f)
    if "/prune/plan" not in f:
        return fallback
    a = f["/prune/plan"].attrs
    crit = text(a.get("criterion", "?"))
    if crit == "handcrafted":
        names = frozenset(text(f["/prune/candidates"][int(i)]["name"]) for i in f["/prune/plan"][()])
        plan = grid_table.handcrafted_names().get(names, f"handcrafted ({len(names)} layers)")
    else:
        plan = f"{crit} {float(a['ratio']):g}"
    return f"{plan}, {grid_table.kd_label(cfg)}, seed {cfg.get('runtime.seed', '?')}"


def series(f, name):
    p = f"/train/{name}"
    if p not in f:
        return None
    return np.asarray(f[p][()], dtype=np.float64)


def new_figure(size, rows=1, cols=1, **kw):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, h = size
    fig, axes = plt.subplots(rows, cols, figsize=(w / DPI, h / DPI), dpi=DPI, squeeze=False, **kw)
    return fig, axes


def save(fig, out):
    """Exactly size pixels (no tight bounding box), written under a temp name, then renamed."""
    import matplotlib.pyplot as plt

    tmp = f"{out}.tmp{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"figures.py: wrote {out}")


def log_if_positive(ax, *arrays):
    v = np.concatenate([np.ravel(a) for a in arrays if a is not None and len(a)])
    if len(v) and np.all(v[np.isfinite(v)] > 0):
        ax.set_yscale("log")


# ---- figures ----

def fig_losses(a):
    f = open_h5(a.inputs[0])
    step = series(f, "step")
    if step is None or not len(step):
        fail(f"{a.inputs[0]}: no /train/step: not a training or distillation run")
    fig, ax = new_figure(a.size or (900, 560))
    ax = ax[0, 0]
    cfg = config(f)
    drawn = []
    for name, lam, style in (("loss_task", "lambda_task", "-"), ("loss_out", "lambda_out", "-"),
                             ("loss_feat", "lambda_feat", "-"), ("loss", None, "--")):
        y = series(f, name)
        if y is None:
            note(f"{a.inputs[0]}: no /train/{name}: left out")
            continue
        n = min(len(y), len(step))  # a killed writer may leave one series a flush longer
        w = f" (weight {cfg[f'distill.{lam}']:g})" if lam and f"distill.{lam}" in cfg else ""
        ax.plot(step[:n], y[:n], style, label=(name if lam else "loss (weighted sum)") + w)
        drawn.append(y[:n])
    if not drawn:
        fail(f"{a.inputs[0]}: none of /train/loss_task, loss_out, loss_feat, loss")
    log_if_positive(ax, *drawn)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean over the global batch)")
    ax.set_title(f"Distillation loss terms: {run_label(f, a.inputs[0])}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, a.out)


def tap_spread(x):
    lo = x.min()
    return float("inf") if lo <= 0 else float(x.max() / lo)


def fig_imbalance(a):
    f = open_h5(a.inputs[0])
    step = series(f, "step")
    if step is None or not len(step):
        fail(f"{a.inputs[0]}: no /train/step")
    panels = []
    for name, what in (("feat_raw", "raw: per-element MSE (BK-SDM)"), ("feat_norm", "normalized: ||F_S-F_T||²/||F_T||² (LAPTOP)")):
        p = f"/train/{name}"
        if p not in f:
            note(f"{a.inputs[0]}: no {p}: panel left out")
            continue
        d = f[p]
        x = np.asarray(d[()], dtype=np.float64)
        cols = [text(c) for c in d.attrs["columns"]] if "columns" in d.attrs else [f"tap {i}" for i in range(x.shape[1])]
        panels.append((name, what, x, cols))
    if not panels:
        fail(f"{a.inputs[0]}: no /train/feat_raw or /train/feat_norm: not a distillation run")
    fig, axes = new_figure(a.size or (1200, 520), 1, len(panels))
    cfg = config(f)
    for ax, (name, what, x, cols) in zip(axes[0], panels):
        n = min(len(x), len(step))
        for j, c in enumerate(cols):
            ax.plot(step[:n], x[:n, j], label=c)
        log_if_positive(ax, x[:n])
        ax.set_xlabel("step")
        ax.set_title(f"/train/{name} — {what}\ntap spread (max/min) at the last step: {tap_spread(x[n - 1]):.3g}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Per-tap feature terms ({cfg.get('distill.feat_norm', '?')} drives training): {run_label(f, a.inputs[0])}",
                 fontsize=9)
    save(fig, a.out)


def fig_scores(a):
    f = open_h5(a.inputs[0])
    if "/prune/candidates" not in f:
        fail(f"{a.inputs[0]}: no /prune/candidates: not a scored run")
    cand = f["/prune/candidates"][()]
    names = [text(c["name"]) for c in cand]
    have = sorted(f["/prune/scores"]) if "/prune/scores" in f else []
    want = a.criteria.split(",") if a.criteria else [c for c in grid_table.CRITERIA if c in have] + \
        [c for c in have if c not in grid_table.CRITERIA]
    crits = []
    for c in want:
        if c in have:
            crits.append(c)
        else:
            note(f"{a.inputs[0]}: no /prune/scores/{c}: panel left out")
    if not crits:
        fail(f"{a.inputs[0]}: no /prune/scores/* to draw")
    plan = set()
    title = "no /prune/plan in this file: nothing marked"
    if "/prune/plan" in f:
        p = f["/prune/plan"]
        plan = {int(i) for i in p[()]}
        pa = p.attrs
        title = (f"plan ({text(pa['criterion'])}, ratio {float(pa['ratio']):g} of the {text(pa['budget'])}) removes "
                 f"{len(plan)} layers, {int(pa['removed']):,} of {int(pa['total']):,} "
                 f"({pa['removed'] / pa['total']:.1%}); measured output loss {float(pa['actual_loss']):.3g}")
    else:
        note(f"{a.inputs[0]}: no /prune/plan: no layer marked")
    fig, axes = new_figure(a.size or (1200, 220 * len(crits) + 240), len(crits), 1, sharex=True)
    x = np.arange(len(names))
    colors = np.array(["tab:red" if i in plan else "tab:gray" for i in range(len(names))])
    for ax, c in zip(axes[:, 0], crits):
        s = np.asarray(f[f"/prune/scores/{c}"][()], dtype=np.float64)
        ax.bar(x, s, color=colors)
        log_if_positive(ax, s)
        ax.set_ylabel(c, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(x)
    axes[-1, 0].set_xticklabels(names, rotation=90, fontsize=6)
    from matplotlib.patches import Patch

    axes[0, 0].legend(handles=[Patch(color="tab:red", label="removed by the plan"), Patch(color="tab:gray", label="kept")],
                      fontsize=7, loc="upper left")
    fig.suptitle(f"Per-layer scores; {title}", fontsize=8)
    h = fig.get_size_inches()[1] * DPI  # fixed pixel margins: the rotated layer names, the title
    fig.subplots_adjust(bottom=min(0.6, 190 / h), top=max(0.4, 1 - 50 / h), hspace=0.15)
    save(fig, a.out)


def fig_additivity(a):
    f = open_h5(a.inputs[0])
    if "/prune/additivity" not in f:
        fail(f"{a.inputs[0]}: no /prune/additivity (plan with prune.additivity_sets > 0 writes it)")
    d = f["/prune/additivity"]
    xy = np.asarray(d[()], dtype=np.float64)
    pred, act = xy[:, 0], xy[:, 1]
    r = float(d.attrs["pearson_r"]) if "pearson_r" in d.attrs else float("nan")
    fig, ax = new_figure(a.size or (700, 640))
    ax = ax[0, 0]
    ax.scatter(pred, act, s=18, label=f"{len(pred)} random removal sets")
    lo, hi = min(pred.min(), act.min()), max(pred.max(), act.max())
    grid = np.linspace(lo, hi, 200) if not (lo > 0) else np.geomspace(lo, hi, 200)
    if len(pred) >= 2 and np.ptp(pred) > 0:
        k, b = np.polyfit(pred, act, 1)  # the linear fit behind pearson_r
        ax.plot(grid, k * grid + b, "tab:orange", label=f"least-squares fit (pearson_r's): actual = {k:.3g} × predicted + {b:.3g}")
    else:
        note(f"{a.inputs[0]}: fewer than 2 distinct predicted values: no fit line")
    if lo > 0 and len(pred) >= 2 and np.ptp(np.log(pred)) > 0:
        # on log axes the linear fit bends; a fit of the logs is the straight line there
        lk, lb = np.polyfit(np.log(pred), np.log(act), 1)
        rl = float(np.corrcoef(np.log(pred), np.log(act))[0, 1])
        ax.plot(grid, np.exp(lb) * grid ** lk, "tab:green", lw=1,
                label=f"fit of the logs: actual = {np.exp(lb):.3g} × predicted^{lk:.3g} (r of the logs {rl:.3f})")
    ax.plot(grid, grid, "k--", lw=0.8, label="actual = predicted")
    if lo > 0:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("predicted output loss (sum of single-layer scores)")
    ax.set_ylabel("measured output loss of the set")
    crit = text(f["/prune/plan"].attrs["criterion"]) if "/prune/plan" in f else "?"
    ax.set_title(f"Additivity of {crit} scores: Pearson r = {r:.3f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, a.out)


def fig_ratio(a):
    runs, notes = grid_table.gather(a.inputs[0], a.handcrafted)
    if not runs:
        fail(f"no complete run under {a.inputs[0]}")
    cs, main_kd = grid_table.cells(runs)
    cs = [c for c in cs if c["main_kd"]]
    want = [m.strip() for m in a.metrics.split(",") if m.strip()]
    labels = {"fid": "FID after retraining (lower is better)", "alignment": "alignment after retraining (higher is better)"}
    panels = []
    for m in want:
        if grid_table.cell_stat({"runs": runs}, f"student_{m}") is None:
            note(f"no /eval/student/{m} in any run under {a.inputs[0]}: panel left out")
            continue
        panels.append(m)
    if not panels:
        fail(f"none of the metrics {', '.join(want)} in any run under {a.inputs[0]}")
    fig, axes = new_figure(a.size or (560 * len(panels) + 100, 520), 1, len(panels))
    plans = sorted({c["plan"] for c in cs}, key=grid_table.plan_order)
    for ax, m in zip(axes[0], panels):
        for plan in plans:
            pts = []
            for c in cs:
                if c["plan"] != plan:
                    continue
                xs, ys = grid_table.cell_stat(c, "params_removed"), grid_table.cell_stat(c, f"student_{m}")
                if xs is None or ys is None:
                    note(f"{plan} {c['ratio']}: no params or {m}: point left out")
                    continue
                pts.append((xs[0], ys[0], 0.0 if not np.isfinite(ys[1]) else ys[1]))
            if not pts:
                continue
            pts.sort()
            px, py, pe = (np.array(v) for v in zip(*pts))
            hand = plan not in grid_table.CRITERIA
            ax.errorbar(px, py, yerr=pe, marker="s" if hand else "o", ls="none" if hand else "-", capsize=3, label=plan)
        t = grid_table.cell_stat({"runs": runs}, f"teacher_{m}")
        if t is not None:
            ax.axhline(t[0], color="k", ls="--", lw=0.8, label=f"teacher ({t[0]:.3g})")
        ax.set_xlabel("fraction of the parameters removed")
        ax.set_ylabel(labels.get(m, m))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    steps = sorted({(r["steps"], r["batch"]) for r in runs})
    fig.suptitle(f"{main_kd}, distillation {', '.join(f'{s} steps x {b}' for s, b in steps)}; "
                 f"error bars: sd over seeds", fontsize=9)
    for ln in notes.lines(len(runs)):
        note(ln)
    save(fig, a.out)


def split_pairs(img, per_class, sample_size):
    """teacher_vs_student.png -> (teacher half, student half) when its width is eval's layout
    (per class row: per_class teacher samples, then per_class student samples); else None."""
    cw = sample_size * PNG_SCALE
    if img.shape[1] != 2 * per_class * cw + (2 * per_class + 1) * PNG_BORDER:
        return None
    cut = PNG_BORDER + per_class * (cw + PNG_BORDER)
    return img[:, :cut], img[:, cut - PNG_BORDER:]


def fig_samples(a):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    panels = []  # (title, image)
    teacher_done = False
    for d in a.inputs:
        if not os.path.isdir(d):
            fail(f"{d}: not a run directory")
        h5 = os.path.join(d, "run.h5")
        label, per_class, size = os.path.basename(os.path.normpath(d)), None, None
        if os.path.exists(h5):
            with open_h5(h5) as f:
                label = run_label(f, label)
                cfg = config(f)
                per_class, size = cfg.get("sample.per_class"), cfg.get("model.sample_size")
        tvs = os.path.join(d, "teacher_vs_student.png")
        if os.path.exists(tvs):
            img = mpimg.imread(tvs)
            halves = split_pairs(img, per_class, size) if per_class and size else None
            if halves is None:
                note(f"{tvs}: not eval's teacher|student layout for sample.per_class={per_class}: shown whole")
                panels.append((f"teacher | student: {label}", img))
            else:
                if not teacher_done:
                    panels.append(("teacher", halves[0]))
                    teacher_done = True
                panels.append((f"student: {label}", halves[1]))
        else:
            note(f"{d}: no teacher_vs_student.png (eval writes it)")
        sp = os.path.join(d, "samples.png")
        if os.path.exists(sp):
            panels.append((f"samples.png: {os.path.basename(os.path.normpath(d))}", mpimg.imread(sp)))
    if not panels:
        fail("no teacher_vs_student.png or samples.png in " + ", ".join(a.inputs))
    fig, axes = new_figure(a.size or (260 * len(panels) + 40, 760), 1, len(panels))
    for ax, (title, img) in zip(axes[0], panels):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title.replace(", ", "\n", 1), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Samples per class row (0 t-shirt ... 9 ankle boot), the same seeds in every panel", fontsize=9)
    save(fig, a.out)


FIGURES = {"losses": fig_losses, "imbalance": fig_imbalance, "scores": fig_scores, "additivity": fig_additivity,
           "ratio": fig_ratio, "samples": fig_samples}


def parse_size(s):
    try:
        w, h = (int(v) for v in s.lower().split("x"))
        if w < 50 or h < 50 or w > 20000 or h > 20000:
            raise ValueError
        return w, h
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {s!r}: expected WIDTHxHEIGHT in pixels, each 50..20000")


def main(argv):
    ap = argparse.ArgumentParser(description="Figures of laptop-diff runs (PNG).", epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure", choices=sorted(FIGURES))
    ap.add_argument("inputs", nargs="+", help="run.h5 (losses, imbalance, scores, additivity), GRID_OUT (ratio), RUN_DIR... (samples)")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--size", type=parse_size, help="WIDTHxHEIGHT in pixels")
    ap.add_argument("--criteria", help="scores: the criteria to draw (default: all in the file)")
    ap.add_argument("--metrics", default="fid,alignment", help="ratio: the /eval/student metrics to draw")
    ap.add_argument("--handcrafted", help="ratio: names of handcrafted plans (default analysis/bksdm_layers.txt)")
    a = ap.parse_args(argv)
    if a.figure not in ("samples",) and len(a.inputs) != 1:
        ap.error(f"{a.figure} takes one input")
    if not a.out.lower().endswith(".png"):
        ap.error(f"--out {a.out}: expected a .png file name")
    try:
        import h5py  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as err:
        fail(f"needs h5py and matplotlib (Debian: python3-h5py python3-matplotlib): {err}")
    FIGURES[a.figure](a)


if __name__ == "__main__":
    main(sys.argv[1:])
