#!/usr/bin/python3
"""Gather every run.h5 under a grid directory (analysis/grid.sh, slurm/grid.sbatch) into one table.

usage: analysis/grid_table.py GRID_OUT [--md OUT.md] [--csv OUT.csv]

One row per cell, a cell being the runs that differ only in runtime.seed: the plan (criterion or
handcrafted plan), the ratio asked, the distillation (KD) variant, the seeds; the one-shot output loss
(/prune/plan attribute actual_loss), the parameters and MACs removed, the post-retraining alignment and
FID of student and teacher, the student's latency; mean +- sample standard deviation over the seeds.
Everything is read from the run.h5 files: the cell's settings from the job config stored as the
attribute `config` of `/`, never from directory names. A path a run.h5 lacks (an older run, an eval
without the quality metrics) leaves that entry empty with a note; nothing is filled in.

Below the table: the distillation budget (train.steps x train.batch), and the Spearman rank correlation
(ties get their average rank) between one-shot output loss and post-retraining FID (and alignment)
across the plans: does a low loss right after pruning predict quality after retraining?
Markdown goes to stdout (and to --md); --csv writes one row per cell.
"""
import argparse
import csv
import io
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CRITERIA = ["output_loss", "random", "magnitude", "feature_loss", "taylor"]


def text(a):
    return a.decode() if isinstance(a, bytes) else str(a)


# ---- the job config stored in run.h5 (laptop-diff writes it normalized: every key, one per line) ----

def _value(s):
    s = s.strip()
    if s.startswith("["):
        inner = s[1:-1].strip()
        return [_value(x) for x in inner.split(",")] if inner else []
    if s.startswith('"'):
        return s[1:-1]
    if s in ("true", "false"):
        return s == "true"
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def parse_config(cfg):
    """{"section.key": value} of laptop-diff's effective job config text."""
    out, section = {}, None
    for line in cfg.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):  # the normalized text has comments on lines of their own only
            continue
        m = re.match(r"^(\w+)\s*=\s*\{$", line)
        if m:
            section = m.group(1)
            continue
        if line.startswith("}"):
            section = None
            continue
        m = re.match(r"^(\w+)\s*=\s*(.*);$", line)
        if m and section:
            out[f"{section}.{m.group(1)}"] = _value(m.group(2))
    return out


# ---- statistics ----

def rankdata(x):
    """Ranks 1..n of x; tied values share the average of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0  # average of ranks i+1 .. j+1
        i = j + 1
    return ranks


def spearman(x, y):
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks; nan if undefined (n < 3,
    or all of x or all of y equal)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError("spearman: x and y differ in length")
    if len(x) < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    d = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / d) if d > 0 else float("nan")


def mean_sd(v):
    v = np.asarray(v, dtype=np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else float("nan"))


# ---- reading runs ----

def handcrafted_names(path=os.path.join(HERE, "bksdm_layers.txt")):
    """{frozenset(layer names): plan name} of analysis/bksdm_layers.txt (empty if absent)."""
    known = {}
    if os.path.exists(path):
        for line in open(path):
            w = line.split()
            if len(w) == 2 and not w[0].startswith("#"):
                known[frozenset(w[1].split(","))] = w[0]
    return known


def kd_label(cfg):
    """The distillation variant: the loss terms with a nonzero weight (weights other than 1 shown)."""
    terms = []
    for key, name in (("lambda_task", "task"), ("lambda_out", "out"), ("lambda_feat", "feat")):
        w = float(cfg.get(f"distill.{key}", 1.0))
        if w > 0:
            if name == "feat":
                name = f"feat({cfg.get('distill.feat_norm', 'l2sq')})"
            terms.append(name if w == 1 else f"{w:g}*{name}")
    return "+".join(terms) if terms else "none"


EVAL = {  # column: (path under /eval/<model>/, scale for display)
    "alignment": ("alignment", 1.0),
    "fid": ("fid", 1.0),
    "ms_per_image_b1": ("seconds_per_image_b1", 1e3),
    "ms_per_image_bN": ("seconds_per_image_bN", 1e3),
    "ms_per_sample": ("seconds_per_sample", 1e3),
}


class Notes:
    """What was missing where: printed under the table instead of invented numbers."""

    def __init__(self):
        self.missing = {}  # path -> [run names]
        self.other = []
        self.unplanned = []

    def miss(self, path, run):
        self.missing.setdefault(path, []).append(run)

    def lines(self, n_runs):
        out = []
        for p, runs in sorted(self.missing.items()):
            who = ", ".join(runs) if len(runs) <= 4 else f"{', '.join(runs[:3])}, ... ({len(runs)} runs)"
            out.append(f"no `{p}` in {len(runs)} of {n_runs} runs ({who}): left out")
        return out + self.other


def read_run(path, grid_out, notes, known):
    """A dict of one run's settings and results, or None (with a note) if it is not a complete run."""
    import h5py

    name = os.path.relpath(os.path.dirname(path), grid_out)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        notes.other.append(f"{path}: cannot open as HDF5 ({err}): skipped")
        return None
    with f:
        if "config" not in f.attrs:
            notes.other.append(f"{path}: no job config attribute on `/`: skipped")
            return None
        if "/prune/plan" not in f:
            notes.unplanned.append(name)  # a scoring run (score_s<seed>/), or a cell that failed before its plan
            return None
        cfg = parse_config(text(f.attrs["config"]))
        if "/eval/student" not in f:
            notes.other.append(f"{name}: no /eval/student (the cell did not finish): skipped")
            return None
        plan = f["/prune/plan"]
        a = plan.attrs
        cand = f["/prune/candidates"][()] if "/prune/candidates" in f else None
        idx = [int(i) for i in plan[()]]
        r = {"run": name, "path": path, "cfg": cfg, "seed": int(cfg.get("runtime.seed", -1)),
             "steps": int(cfg.get("train.steps", 0)), "batch": int(cfg.get("train.batch", 0)),
             "budget": text(a.get("budget", cfg.get("prune.budget", "params"))),
             "weights": cfg.get("model.weights", ""), "eval_samples": cfg.get("eval.samples")}
        crit = text(a.get("criterion", "?"))
        if crit == "handcrafted":
            names = frozenset(text(cand[i]["name"]) for i in idx) if cand is not None else frozenset()
            r["plan"] = known.get(names, f"handcrafted ({len(idx)} layers)")
            r["ratio"] = "-"
        else:
            r["plan"] = crit
            r["ratio"] = f"{float(a.get('ratio', cfg.get('prune.ratio', float('nan')))):g}"
        r["kd"] = kd_label(cfg)
        r["oneshot_loss"] = float(a["actual_loss"]) if "actual_loss" in a else None
        if r["oneshot_loss"] is None:
            notes.miss("/prune/plan@actual_loss", name)
        r["last_step"] = int(f["/train/step"][-1]) if "/train/step" in f and len(f["/train/step"]) else None
        ev = {m: f[f"/eval/{m}"] for m in ("teacher", "student") if f"/eval/{m}" in f}

        def get(m, key):
            p = f"/eval/{m}/{key}"
            if m in ev and key in ev[m]:
                return float(ev[m][key][()])
            notes.miss(p, name)
            return None

        tp, sp = get("teacher", "params"), get("student", "params")
        tm, sm = get("teacher", "macs"), get("student", "macs")
        r["params_removed"] = 1 - sp / tp if tp and sp is not None else None
        r["macs_removed"] = 1 - sm / tm if tm and sm is not None else None
        for col, (key, scale) in EVAL.items():
            for m in ("teacher", "student"):
                v = get(m, key)
                r[f"{m}_{col}"] = None if v is None else v * scale
        t, s = r["teacher_ms_per_image_bN"], r["student_ms_per_image_bN"]
        r["speedup_bN"] = t / s if t is not None and s else None
        t, s = r["teacher_alignment"], r["student_alignment"]
        r["alignment_change"] = s / t - 1 if t and s is not None else None  # the paper's "decline" (4.0% at 50%)
        if r["last_step"] is not None and r["steps"] and r["last_step"] != r["steps"]:
            notes.other.append(f"{name}: distillation logged up to step {r['last_step']} of {r['steps']}")
        return r


def gather(grid_out, handcrafted=None):
    """All complete runs under grid_out (sorted by path) and the notes about the rest; handcrafted:
    the file naming the handcrafted plans (default analysis/bksdm_layers.txt)."""
    if not os.path.isdir(grid_out):
        sys.exit(f"grid_table.py: {grid_out}: not a directory")
    notes = Notes()
    known = handcrafted_names(handcrafted) if handcrafted else handcrafted_names()
    paths = []
    for d, _, files in os.walk(grid_out):
        if "run.h5" in files:
            paths.append(os.path.join(d, "run.h5"))
    if not paths:
        sys.exit(f"grid_table.py: no run.h5 under {grid_out}")
    runs = [r for r in (read_run(p, grid_out, notes, known) for p in sorted(paths)) if r]
    if notes.unplanned:
        notes.other.append(f"{len(notes.unplanned)} run.h5 without /prune/plan (scoring runs, or cells stopped "
                           f"before their plan): {', '.join(notes.unplanned)}")
    return runs, notes


def plan_order(plan):
    return (CRITERIA.index(plan), "") if plan in CRITERIA else (len(CRITERIA), plan)


def cells(runs):
    """Runs grouped into cells (same settings but the seed), in table order: plans (by ratio, then
    criterion, handcrafted last) with the main KD variant first, then the other KD variants."""
    kds = [r["kd"] for r in runs]
    main_kd = max(set(kds), key=kds.count) if kds else ""
    groups = {}
    for r in runs:
        key = (r["plan"], r["ratio"], r["budget"], r["kd"], r["steps"], r["batch"], r["weights"])
        groups.setdefault(key, []).append(r)
    out = []
    for key, rs in groups.items():
        rs.sort(key=lambda r: r["seed"])
        out.append({"plan": key[0], "ratio": key[1], "budget": key[2], "kd": key[3], "steps": key[4], "batch": key[5],
                    "main_kd": key[3] == main_kd, "runs": rs})
    out.sort(key=lambda c: (not c["main_kd"], c["ratio"] == "-", 0.0 if c["ratio"] == "-" else float(c["ratio"]),
                            plan_order(c["plan"]), c["kd"]))
    return out, main_kd


COLUMNS = [  # (key in a run, header, format)
    ("oneshot_loss", "one-shot output loss", "{:.3g}"),
    ("params_removed", "params removed", "{:.3f}"),
    ("macs_removed", "MACs removed", "{:.3f}"),
    ("student_alignment", "alignment student", "{:.3f}"),
    ("teacher_alignment", "alignment teacher", "{:.3f}"),
    ("alignment_change", "alignment change vs teacher", "{:.1%}"),
    ("student_fid", "FID student", "{:.3g}"),
    ("teacher_fid", "FID teacher", "{:.3g}"),
    ("student_ms_per_image_b1", "student ms/image b1", "{:.3g}"),
    ("student_ms_per_image_bN", "student ms/image bN", "{:.3g}"),
    ("speedup_bN", "speed-up bN (teacher/student)", "{:.2f}"),
    ("student_ms_per_sample", "student ms/sample (forward)", "{:.3g}"),
]


def cell_stat(c, key):
    """(mean, sd, n) over the cell's seeds that have the value; None if none has it."""
    v = [r[key] for r in c["runs"] if r.get(key) is not None]
    if not v:
        return None
    m, sd = mean_sd(v)
    return m, sd, len(v)


def fmt_stat(st, f, n_runs):
    if st is None:
        return "-"
    m, sd, n = st
    s = f"{f.format(m)} ± {f.format(sd)}" if np.isfinite(sd) else f.format(m)
    if n < n_runs:
        s += f" ({n} of {n_runs})"
    return s


def correlations(cs, main_kd):
    """Spearman rho of the one-shot loss vs each post-retraining quality metric over the plan cells
    (the main KD variant, means over seeds): all plans together and within each ratio asked."""
    plans = [c for c in cs if c["main_kd"]]
    rows = []
    for metric, label in (("student_fid", "FID (student)"), ("student_alignment", "alignment (student)")):
        groups = [("all plans", plans)] + [(f"ratio {r}", [c for c in plans if c["ratio"] == r])
                                           for r in sorted({c["ratio"] for c in plans if c["ratio"] != "-"})]
        for gname, g in groups:
            pts = [(cell_stat(c, "oneshot_loss"), cell_stat(c, metric)) for c in g]
            pts = [(a[0], b[0]) for a, b in pts if a is not None and b is not None]
            left = len(g) - len(pts)
            rho = spearman([p[0] for p in pts], [p[1] for p in pts]) if pts else float("nan")
            rows.append((label, gname, len(pts), left, rho))
    return rows


def render(runs, notes, grid_out):
    cs, main_kd = cells(runs)
    md = io.StringIO()
    p = lambda s="": print(s, file=md)
    seeds = sorted({r["seed"] for r in runs})
    budgets = sorted({(r["steps"], r["batch"]) for r in runs})
    p(f"Grid `{grid_out}`: {len(runs)} runs in {len(cs)} cells, seeds {', '.join(map(str, seeds))}; "
      f"mean ± sample standard deviation over the seeds of each cell.")
    p("Distillation budget (train.steps × train.batch, from each run's job config): " +
      "; ".join(f"{s} steps × batch {b} = {s * b:,} samples" for s, b in budgets) +
      (" per cell." if len(budgets) == 1 else " (the cells differ: see the budget column)."))
    es = sorted({str(r["eval_samples"]) for r in runs})
    p(f"Main distillation variant: {main_kd}; eval.samples {', '.join(es)}.")
    p()
    # a column no run has a value for is left out (the notes say which paths were missing)
    cols = [c for c in COLUMNS if any(cell_stat(x, c[0]) is not None for x in cs)]
    head = ["plan", "ratio asked", "KD", "seeds"] + (["budget"] if len(budgets) > 1 else []) + [h for _, h, _ in cols]
    p("| " + " | ".join(head) + " |")
    p("|" + " --- |" * len(head))
    for c in cs:
        n = len(c["runs"])
        row = [c["plan"], c["ratio"], c["kd"], ",".join(str(r["seed"]) for r in c["runs"])]
        if len(budgets) > 1:
            row.append(f"{c['steps']}×{c['batch']}")
        row += [fmt_stat(cell_stat(c, k), f, n) for k, _, f in cols]
        p("| " + " | ".join(row) + " |")
    p()
    p("Spearman rank correlation (ties averaged) between one-shot output loss and the metric after "
      f"retraining, over the plan cells ({main_kd}; one point per cell, its mean over seeds):")
    p()
    p("| metric after retraining | plans | n | Spearman rho |")
    p("| --- | --- | --- | --- |")
    for label, gname, n, left, rho in correlations(cs, main_kd):
        why = "" if np.isfinite(rho) else (" (undefined: fewer than 3 plans with both values)" if n < 3 else " (undefined: constant ranks)")
        extra = f"; {left} plan(s) without the values left out" if left else ""
        p(f"| {label} | {gname} | {n} | {rho:.3f}{why}{extra} |" if np.isfinite(rho) else f"| {label} | {gname} | {n} | -{why}{extra} |")
    lines = notes.lines(len(runs))
    if lines:
        p()
        p("Notes:")
        for ln in lines:
            p(f"- {ln}")
    return md.getvalue(), cs


def write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(data)
    os.replace(tmp, path)


def to_csv(cs):
    out = io.StringIO()
    w = csv.writer(out)
    keys = [k for k, _, _ in COLUMNS]
    w.writerow(["plan", "ratio", "budget_kind", "kd", "seeds", "steps", "batch"] +
               [f"{k}_{s}" for k in keys for s in ("mean", "sd", "n")])
    for c in cs:
        row = [c["plan"], c["ratio"], c["budget"], c["kd"], " ".join(str(r["seed"]) for r in c["runs"]), c["steps"], c["batch"]]
        for k in keys:
            st = cell_stat(c, k)
            row += ["", "", 0] if st is None else [repr(st[0]), "" if not np.isfinite(st[1]) else repr(st[1]), st[2]]
        w.writerow(row)
    return out.getvalue()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid_out")
    ap.add_argument("--md", help="also write the Markdown here")
    ap.add_argument("--csv", help="write one row per cell here")
    ap.add_argument("--handcrafted", help="names of handcrafted plans (NAME LAYER,LAYER,... lines; "
                    "default analysis/bksdm_layers.txt)")
    a = ap.parse_args(argv)
    try:
        import h5py  # noqa: F401
    except ImportError:
        sys.exit("grid_table.py needs h5py (Debian: python3-h5py)")
    runs, notes = gather(a.grid_out, a.handcrafted)
    if not runs:
        for ln in notes.lines(0):
            print(ln, file=sys.stderr)
        sys.exit(f"grid_table.py: no complete run (with /prune/plan and /eval) under {a.grid_out}")
    md, cs = render(runs, notes, a.grid_out)
    sys.stdout.write(md)
    if a.md:
        write_atomic(a.md, md)
    if a.csv:
        write_atomic(a.csv, to_csv(cs))


if __name__ == "__main__":
    main(sys.argv[1:])
