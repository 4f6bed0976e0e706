#!/usr/bin/env bash
# gradnas against its PyTorch peer (issue 8) in one run on this machine:
# `gradnas bench --filter search_step` and `--filter s2`, then
# supernet_torch.py on the same configurations, then one table of the ratios
# gradnas / PyTorch (of times: below 1 means gradnas is faster).
#
#   benches/peers/compare.sh
#
# Environment: TORCH_PYTHON (a Python with PyTorch; default
# /tmp/torchenv/bin/python), GRADNAS (a built gradnas binary; default `cargo
# run --release`, so a machine without Rust can run a binary built
# elsewhere), REPEATS (3), THREADS (PyTorch's threads; default
# the number of cores), DEVICE (cpu, or cuda for the GPU peer), OUT (where the
# raw JSON goes; default a fresh temporary directory), SEARCH (gradnas's
# search-step variants, `gradnas bench --search`; default small,medium —
# bench-medium takes ~45 s a step on 2-core lavapipe, a few minutes with its
# warm-up and repeats, and PyTorch's ~13 GB; SEARCH=small skips it). Not
# part of CI. Run it on an idle machine: with other work on the cores,
# PyTorch's thread pool waits on descheduled threads and its times mean
# nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
if [ ! -x "$py" ]; then
    echo "compare.sh: no Python at $py; set TORCH_PYTHON to a Python that has PyTorch" >&2
    exit 2
fi
if ! "$py" -c 'import torch' 2>/dev/null; then
    echo "compare.sh: $py cannot import torch; set TORCH_PYTHON to a Python that has PyTorch" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "compare.sh: python3 is needed to combine the results" >&2; exit 2; }

repeats=${REPEATS:-3}
threads=${THREADS:-$(nproc)}
device=${DEVICE:-cpu}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
cd "$root"

gradnas() {
    if [ -n "${GRADNAS:-}" ]; then
        "$GRADNAS" "$@"
    else
        cargo run --release --quiet -- "$@"
    fi
}
search=${SEARCH:-small,medium}
echo "gradnas: search step ($search; minutes on lavapipe)" >&2
gradnas bench --filter search_step --json --repeats "$repeats" --search "$search" >"$out/gradnas_search.json"
echo "gradnas: S2 (predictor, one-shot measurement, path training)" >&2
gradnas bench --filter s2 --json --repeats "$repeats" >"$out/gradnas_s2.json"

# The torch measurement on gradnas's validation-image count, pass size and
# rounds (bench::s2 times repeats clamped to 3..20 rounds over the same
# covering cells per length), so both do the same work.
read -r n_val eval_batch < <(python3 - "$out/gradnas_s2.json" <<'EOF'
import json, re, sys
cfg = json.load(open(sys.argv[1]))["s2"]["measure_config"]
m = re.search(r"(\d+) val images in passes of (\d+)", cfg)
if not m:
    sys.exit(f"compare.sh: cannot read the validation images and their pass size from {cfg!r}")
print(m.group(1), m.group(2))
EOF
)
cells=$((repeats < 3 ? 3 : (repeats > 20 ? 20 : repeats)))

torch_run() {
    "$py" "$here/supernet_torch.py" --threads "$threads" --repeats "$repeats" --device "$device" --json "$@"
}
echo "PyTorch ($device, $threads threads): bench-small and the one-shot measurement" >&2
torch_run --config bench-small --n-val "$n_val" --eval-batch "$eval_batch" --measure-cells "$cells" >"$out/torch_small.json"
echo "PyTorch ($device, $threads threads): bench-medium" >&2
# bench-medium needs more memory than a small machine has: a run the kernel
# kills is recorded as such and the table is still printed.
status=0
torch_run --config bench-medium --measure-cells 0 >"$out/torch_medium.json" || status=$?
if [ "$status" -ne 0 ]; then
    echo "compare.sh: PyTorch bench-medium failed (exit status $status; 137 = killed, usually out of memory)" >&2
    printf '{"failed": "exit status %s (137: killed, usually out of memory)"}\n' "$status" >"$out/torch_medium.json"
fi

python3 - "$out" "$repeats" "$threads" "$device" <<'EOF'
import json, os, sys

out, repeats, threads, device = sys.argv[1:]
load = lambda name: json.load(open(os.path.join(out, name)))
gs, g2 = load("gradnas_search.json"), load("gradnas_s2.json")
ts, tm = load("torch_small.json"), load("torch_medium.json")


def gradnas_row(width, depth, batch):
    # The plain first-order variant (not partial channels, not second order).
    head = f"width {width} depth {depth} batch {batch} "
    for r in gs["search_step"] or []:
        if r["config"].startswith(head) and "first order" in r["config"] and "partial" not in r["config"]:
            return r
    return None


rows = []  # (what, gradnas, pytorch, unit)
for name, t, shape in [("bench-small", ts, (8, 5, 32)), ("bench-medium", tm, (16, 8, 64))]:
    if "failed" in t:
        print(f"PyTorch {name}: {t['failed']}; its rows show —", file=sys.stderr)
        t = {}
    g = gradnas_row(*shape)
    gb = g and g["bilevel_ms"]
    gf = g and g["forward_ms"]
    rows.append((f"{name} bilevel step", gb, t.get("bilevel_ms"), "ms"))
    if g and g.get("bilevel_gpu_ms") is not None:
        # Where the adapter has timestamps: the GPU's own share of the step
        # and the host's encoding of it (issue 8: encoding < 5% of it).
        rows.append((f"{name}   GPU time (timestamps)", g["bilevel_gpu_ms"], None, "ms"))
        rows.append((f"{name}   host encoding ({g['dispatches']:,} disp.)", g["encode_ms"], None, "ms"))
    rows.append((f"{name}   architecture step", None, t.get("arch_ms"), "ms"))
    rows.append((f"{name}   weight step", None, t.get("weight_ms"), "ms"))
    rows.append((f"{name} forward, batch {shape[2]}", gf, t.get("forward_ms"), "ms"))
    if g:
        mem = (g["planned_bytes"] + g["persistent_bytes"] + g.get("kernel_bytes", 0)) / 1e6
        rows.append((f"{name} step memory*", mem, t.get("peak_memory_mb", {}).get("step"), "MB"))
s2, m = g2["s2"], ts["measure"]
for blocks, gk, tk in [(1, "measured_cells_per_s_1_block", "s_per_cell_1_block"),
                       (5, "measured_cells_per_s_5_blocks", "s_per_cell_5_blocks")]:
    # gradnas computes the cells' common prefix (stem, first preprocessing)
    # once; the peer does too (`prefix`), and its rate recomputing it per
    # cell follows (older peers: only that one).
    tp = m.get(tk + "_prefix", m[tk])
    rows.append((f"one-shot measurement, {blocks}-block cell", 1e3 / s2[gk], 1e3 * tp, "ms/cell"))
    # As S2 measures: cells side by side on measure_lanes devices (one
    # device's rate above; the peer measures one cell at a time).
    lanes = s2.get("measure_lanes", 1)
    if lanes > 1:
        rows.append((f"  as S2 runs it ({lanes} devices at once)", 1e3 / s2[gk + "_lanes"],
                     1e3 * tp, "ms/cell"))
    if tk + "_prefix" in m:
        rows.append(("  PyTorch computing the prefix per cell", 1e3 / s2[gk + ("_lanes" if lanes > 1 else "")],
                     1e3 * m[tk], "ms/cell"))

a = gs["adapter"]
# On llvmpipe: the worker threads its dispatches ran on (LP_NUM_THREADS).
workers = f", {gs['cpu_driver_threads']}" if gs.get("cpu_driver_threads") else ""
print(f"gradnas: {a['name']} / {a['backend']} ({a['driver']} {a['driver_info']}){workers}")
print(f"PyTorch {ts['torch']}: {ts['device']}, {ts['threads']} threads; repeats {repeats}")
print(f"one-shot measurement: gradnas {s2['measure_config']}; PyTorch {m['config']}")
print()
print(f"{'':<40} {'gradnas':>12} {'PyTorch':>12} {'gradnas/PyTorch':>16}")
fmt = lambda v, u: "—" if v is None else f"{v:,.1f} {u}" if u != "ms/cell" else f"{v:,.0f} ms"
for what, g, t, unit in rows:
    ratio = f"{g / t:.2f}" if g is not None and t else "—"
    print(f"{what:<40} {fmt(g, unit):>12} {fmt(t, unit):>12} {ratio:>16}")
print("* gradnas: planned intermediates + persistent buffers + the kernels' own buffers")
print("  (weight-gradient scratch, weight copies, uniforms) of the recorded step;")
print(f"  PyTorch: {ts.get('peak_memory_mb', {}).get('what', 'not measured')}")
if gradnas_row(16, 8, 64) is None:
    print("\n(bench-medium not timed on gradnas in this run (SEARCH): only PyTorch's figures there)")
combined = {"gradnas_search": gs, "gradnas_s2": g2, "torch_small": ts, "torch_medium": tm,
            "rows": [dict(what=w, gradnas=g, pytorch=t, unit=u) for w, g, t, u in rows]}
json.dump(combined, open(os.path.join(out, "compare.json"), "w"), indent=2)
print(f"\nraw results: {out}/")
EOF
