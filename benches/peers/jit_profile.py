#!/usr/bin/env python3
"""Where the bench-small search step's time goes inside llvmpipe's compiled
kernels, by kernel family and by kind of machine code (BENCHMARKS.md,
"Twenty-sixth pass").

Runs `gradnas bench --filter search_step --search small --profile` under
`perf record -k realtime` with GRADNAS_DISPATCH_LOG set, so each sample is
named by the dispatch whose wall-clock window holds it and by the
instruction at its address in the kernels' code, which gradnas copies out
of its own process before the kernels are freed (src/engine/dispatch_log.rs).
Each sample's instruction is then classed:

- load32/load64, store32/store64: inside a short backward-jumping region
  that loads into (or stores from) a vector lane by lane, 32 or 64 bits a
  lane: Mesa 22.3's llvmpipe runs a storage access at a varying address as
  a loop over the SIMD lanes, with a mask test and a bounds check per lane;
- gather: lane inserts and extracts outside such loops (uniform-buffer
  reads at varying addresses, building addresses);
- arith: float vector arithmetic (vmulps, vaddps, ...);
- spill: vector moves to and from the stack;
- other: the rest of the kernels' code (index arithmetic, control).

Samples outside the compiled kernels (driver, kernel, gradnas) are counted
apart. Needs perf, objdump and a Linux software adapter; not part of CI.

    GRADNAS=target/release/gradnas benches/peers/jit_profile.py --out DIR
"""

import argparse
import bisect
import collections
import json
import os
import re
import shutil
import subprocess
import sys

KINDS = ["load32", "load64", "store32", "store64", "gather", "arith", "spill", "other"]
ARITH = {"vmulps", "vaddps", "vsubps", "vmaxps", "vminps", "vdivps", "vsqrtps",
         "vrsqrt14ps", "vfmadd231ps", "vfmadd213ps", "vfmadd132ps"}
LANE = {"vpinsrd", "vpinsrq", "vpextrd", "vpextrq", "vmovd", "vmovq", "vinserti128",
        "vextracti128", "vinserti32x4", "vextracti32x4", "vinsertps", "vextractps"}
# A load into a lane (a masked broadcast or an insert) or a store from one,
# at an address not on the stack; 64-bit ones move two floats
# (`engine::words64`).
LOAD = re.compile(r"(vpbroadcast[dq]|vpinsr[dq]\s+\$0x[0-9a-f]+,)\s*-?(0x[0-9a-f]+)?\(%r(?!sp)")
LOAD64 = re.compile(r"(vpbroadcastq|vpinsrq\s+\$0x[0-9a-f]+,)\s*-?(0x[0-9a-f]+)?\(%r(?!sp)")
STORE = re.compile(r"(mov[lq]?|vmov[dq]|vmovss|vextractps|vpextr[dq])\s+[^,(]*,\s*-?(0x[0-9a-f]+)?\(%r(?!sp)")
STORE64 = re.compile(r"(movq?\s+%r(?:[a-d]x|[sd]i|bp|\d+)|vmovq\s+%xmm[0-9]+|vpextrq\s+[^,]+,%xmm[0-9]+),\s*-?(0x[0-9a-f]+)?\(%r(?!sp)")
LOOP_SPAN = 400  # bytes: a per-lane loop's body is a few dozen instructions


def disassemble(jit_dir):
    ins = {}
    for line in open(os.path.join(jit_dir, "segs.txt")):
        i, start, _ = line.split()
        out = subprocess.run(
            ["objdump", "-D", "-b", "binary", "-m", "i386:x86-64",
             f"--adjust-vma=0x{start}", os.path.join(jit_dir, f"seg{i}.bin")],
            capture_output=True, text=True, check=True).stdout
        for l in out.splitlines():
            m = re.match(r"\s*([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)\s*(.*)", l)
            if m and m.group(3):
                ins[int(m.group(1), 16)] = m.group(3)
    return ins


def loop_regions(ins):
    """Short loops (overlapping backward jumps merged), each with its kind."""
    order = sorted(ins)
    spans = []
    for a in order:
        m = re.match(r"j[a-z]+\s+0x([0-9a-f]+)", ins[a])
        if m and a - LOOP_SPAN < int(m.group(1), 16) < a:
            spans.append((int(m.group(1), 16), a))
    spans.sort()
    merged = []
    for t, a in spans:
        if merged and t <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], a))
        else:
            merged.append((t, a))
    kinds = []
    for t, a in merged:
        body = [ins[x] for x in order[bisect.bisect_left(order, t):bisect.bisect_right(order, a)]]
        if any(STORE.match(w) for w in body):
            kinds.append("store64" if any(STORE64.match(w) for w in body) else "store32")
        elif any(LOAD.match(w) for w in body):
            kinds.append("load64" if any(LOAD64.match(w) for w in body) else "load32")
        else:
            kinds.append("other")
    return merged, kinds


def family(entry):
    parts = entry.split(".")
    if entry.startswith("conv2d_rows.") and len(parts) > 2:
        way = "y"
        for p in parts[2:]:
            way = {"dx": "dx", "dw": "dW"}.get(p, way)
        return f"conv2d_rows.{parts[1]}.{way}"
    if entry.startswith("pool_rows.") and len(parts) > 2:
        return ".".join(parts[:3])
    return entry.split("::")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for perf.data, the log and the report")
    ap.add_argument("--search", default="small", help="the search-step variant (gradnas bench --search)")
    ap.add_argument("--freq", type=int, default=999, help="samples a second per CPU")
    ap.add_argument("--analyze", action="store_true",
                    help="read an earlier run's files in --out instead of running")
    a = ap.parse_args()
    missing = [t for t in ("perf", "objdump") if shutil.which(t) is None]
    if missing:
        sys.exit(f"jit_profile.py needs {' and '.join(missing)} (e.g. apt-get install "
                 "linux-perf binutils)")
    gradnas = os.environ.get("GRADNAS", "target/release/gradnas")
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "dispatches.tsv")
    data = os.path.join(a.out, "perf.data")
    if not a.analyze:
        if os.path.exists(log):
            os.remove(log)
        env = dict(os.environ, GRADNAS_DISPATCH_LOG=log)
        run = subprocess.run(
            ["perf", "record", "-q", "-F", str(a.freq), "-k", "realtime", "-e", "cpu-clock",
             "-o", data, "--", gradnas, "bench", "--filter", "search_step", "--search", a.search,
             "--profile", "--repeats", "1", "--quiet"], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"perf/gradnas failed ({run.returncode}):\n{run.stderr[-3000:]}")
        with open(os.path.join(a.out, "bench.txt"), "w") as f:
            f.write(run.stdout)

    if not os.path.exists(os.path.join(log + ".jit", "segs.txt")):
        sys.exit(f"{log}.jit/segs.txt is missing: no profile ran with GRADNAS_DISPATCH_LOG "
                 "set, or not on Linux")
    ins = disassemble(log + ".jit")
    if not ins:
        sys.exit("no compiled kernel code was copied: the adapter is not a software one "
                 "(llvmpipe) whose kernels live in this process")
    regions, kinds = loop_regions(ins)
    starts = [r[0] for r in regions]

    def kind(addr):
        k = bisect.bisect_right(starts, addr) - 1
        if k >= 0 and addr <= regions[k][1]:
            return kinds[k]
        text = ins.get(addr, "")
        op = text.split()[0] if text else ""
        if op in ARITH:
            return "arith"
        if op in LANE:
            return "gather"
        if op.startswith("vmov") and "%rsp" in text:
            return "spill"
        return "other"

    windows = []
    for l in open(log):
        entry, s, e = l.split("\t")
        windows.append((float(s), float(e), entry))
    wstart = [w[0] for w in windows]
    script = subprocess.run(["perf", "script", "-i", data, "-F", "time,ip,dso"],
                            capture_output=True, text=True, check=True).stdout
    by_family = collections.defaultdict(collections.Counter)
    outside = collections.Counter()
    unplaced = 0
    for l in script.splitlines():
        f = l.split(None, 2)
        t, addr, dso = float(f[0].rstrip(":")), int(f[1], 16), f[2]
        k = bisect.bisect_right(wstart, t) - 1
        if k < 0 or t > windows[k][1]:
            unplaced += 1
            continue
        fam = family(windows[k][2])
        if addr in ins:
            by_family[fam][kind(addr)] += 1
        else:
            # perf names a JIT sample by a map file it could not find.
            where = "kernels (not copied)" if "perf-" in dso else dso.strip("()").split("/")[-1]
            outside[where] += 1
            by_family[fam]["outside"] += 1

    total = sum(sum(c.values()) for c in by_family.values())
    report = {
        "samples_in_dispatches": total,
        "samples_outside_dispatches": unplaced,
        "outside_kernels": dict(outside),
        "all": {},
        "families": {},
    }
    lines = [f"{'family':32s} {'step':>6s} {'in JIT':>7s} " + " ".join(f"{k:>8s}" for k in KINDS)]

    def row(name, counts):
        """One table line and its report entry: the family's share of the
        samples, the share of those in the kernels' code, and each kind's
        share of the latter."""
        n = sum(counts.values())
        j = n - counts["outside"]
        entry = {"share": n / total, "jit": j / n, **{k: counts[k] / max(1, j) for k in KINDS}}
        lines.append(f"{name:32s} {100*entry['share']:5.1f}% {100*entry['jit']:6.1f}% "
                     + " ".join(f"{100*entry[k]:7.1f}%" for k in KINDS))
        return entry

    for fam, c in sorted(by_family.items(), key=lambda x: -sum(x[1].values())):
        report["families"][fam] = row(fam, c)
    all_kinds = row("all", sum(by_family.values(), collections.Counter()))
    report["all"] = {k: all_kinds[k] for k in KINDS}
    lines.append(f"samples: {total} in dispatch windows ({unplaced} outside: building, timing);"
                 f" outside the kernels' code: {dict(outside)}")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(a.out, "jit_profile.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "jit_profile.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
