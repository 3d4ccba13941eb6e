#!/usr/bin/env python3
# profile_attr.py — turns `perf script` call chains (perf record --call-graph
# dwarf) of bench_step into a per-kernel table: each sample is charged to the
# innermost caller that is a kernel declared in src/kernels/kernels.h (or
# gemm.h), split by what the CPU was actually running under it (OpenBLAS GEMM,
# im2col/col2im, libm, the OS kernel, the kernel's own loops), and by phase
# (unet_forward / unet_backward / rest of the program). Samples of the first
# two rounds are left out: round 0 is bench_step's warm-up (first touch of
# every buffer), and in round 1 the arenas that overflowed in round 0 are
# replaced by one block of the peak size, which is faulted in then (~74K page
# faults on the teacher at batch 32, /usr/bin/time; none in any later round).
# So profile with REPEATS >= 3.
# oneDNN's convolutions and reorders run JIT-generated code that has no symbol
# and no unwind information: such a sample is one unresolved user-space frame,
# with no caller. It is charged to "conv2d (oneDNN JIT)" in the phase of the
# same thread's previous sample (a thread's samples come in time order; the
# only JIT code in the process is oneDNN's). Before this rule those samples
# fell out of the tables, and on an AVX2 machine they were ~40% of the step.
# With runtime.cpu_gemm on oneDNN its sgemm is JIT code too, and its samples
# land there as well: profile_step.sh then names the row JIT_LABEL so.
# usage: perf script -F comm,tid,period,ip,sym -i perf.data | profile_attr.py SRC_DIR [JIT_LABEL]
import re, sys, collections

src = sys.argv[1]
api = set()
for h in ("src/kernels/kernels.h", "src/kernels/gemm.h"):
    for m in re.finditer(r"^\s*(?:static inline\s+)?[a-z_]+\s*\*?\s*([a-z_0-9]+)\s*\(", open(f"{src}/{h}").read(), re.M):
        api.add(m.group(1))

def base(sym):  # "im2col._omp_fn.0" -> "im2col"; drop "(inlined)" etc.
    return sym.split()[0].split(".")[0] if sym else "?"

def part(sym):
    s = base(sym)
    if s.startswith(("sgemm", "gemm_", "blas_", "exec_blas", "sgemm_small")) or "SKYLAKEX" in sym or "HASWELL" in sym:
        return "GEMM (OpenBLAS)"
    if s in ("im2col", "col2im_add"):
        return "im2col/col2im"
    if s.startswith("__") and ("expf" in s or "erff" in s or "exp" in s):
        return "libm (expf/erff)"
    if s.startswith("__mem"):
        return "memset/memcpy"
    return "own loops"

samples = collections.Counter()  # (phase, kernel, part) -> samples
total = 0
rnd, last = 0, None  # rounds 0 and 1 are left out (see the top)
last_tid = {}  # thread -> phase of its previous sample in a U-Net pass
JIT = sys.argv[2] if len(sys.argv) > 2 else "conv2d (oneDNN JIT)"
for rec in sys.stdin.read().split("\n\n"):
    lines = [l.strip() for l in rec.strip().split("\n") if l.strip()]
    if len(lines) < 2:
        continue
    tid = lines[0].split()[1] if len(lines[0].split()) > 1 else "?"
    frames = [l.split(None, 1)[1] if " " in l else "?" for l in lines[1:]]
    syms = [base(f) for f in frames]
    jit = len(lines) == 2 and frames[0] == "[unknown]" and not lines[1].split()[0].startswith("ffff")
    phase = "forward" if "unet_forward" in syms else "backward" if "unet_backward" in syms else "other"
    if jit and phase == "other":
        phase = last_tid.get(tid, "other")
    if phase != "other":
        last_tid[tid] = phase
    elif not jit:
        last_tid.pop(tid, None)
    if phase == "forward" and last == "backward":
        rnd += 1
    if phase != "other":
        last = phase
    if rnd < 2:
        continue
    total += 1
    kernel = JIT if jit else next((s for s in syms if s in api and s != "gemm"), None)
    if kernel is None:
        kernel = "gemm (direct)" if "gemm" in syms else None
    if kernel is None:
        # not under a kernel: the model code itself, OpenBLAS/OpenMP worker threads
        # whose caller is on another thread, zeroing gradients, ...
        kernel = "[" + next((s for s in syms if s.startswith(("unet_", "sgemm_gflops", "main"))), syms[0]) + "]"
    p = "own loops" if jit else "OS kernel" if frames[0].startswith(("0xffff",)) or re.match(r"^[a-z_]+$", syms[0]) and lines[1].split()[0].startswith("ffffffff") else part(frames[0])
    samples[(phase, kernel, p)] += 1

def table(phase_set, title):
    sel = {k: v for k, v in samples.items() if k[0] in phase_set}
    n = sum(sel.values())
    if not n:
        return
    parts = ["GEMM (OpenBLAS)", "im2col/col2im", "own loops", "libm (expf/erff)", "memset/memcpy", "OS kernel"]
    byk = collections.Counter()
    for (ph, k, p), v in sel.items():
        byk[k] += v
    print(f"\n{title}: {n} samples = {100.0 * n / total:.1f}% of the samples after the first two rounds")
    print("| kernel | share | " + " | ".join(parts) + " |")
    print("|---|---:|" + "---:|" * len(parts))
    for k, v in byk.most_common():
        if 100.0 * v / n < 0.3:
            continue
        cells = [sum(c for (ph, kk, pp), c in sel.items() if kk == k and pp == q) for q in parts]
        print(f"| {k} | {100.0 * v / n:.1f}% | " + " | ".join(f"{100.0 * c / n:.1f}" if c else "" for c in cells) + " |")
    rest = sum(v for k, v in byk.items() if 100.0 * v / n < 0.3)
    if rest:
        print(f"| (each below 0.3%) | {100.0 * rest / n:.1f}% |" + " |" * len(parts))
    tot = [sum(c for (ph, kk, pp), c in sel.items() if pp == q) for q in parts]
    print("| **all** | 100% | " + " | ".join(f"{100.0 * c / n:.1f}" for c in tot) + " |")

table({"forward", "backward"}, "training step (unet_forward + unet_backward)")
table({"forward"}, "forward only")
table({"backward"}, "backward only")
