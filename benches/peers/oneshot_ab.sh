#!/usr/bin/env bash
# S2's one-shot measurement, gradnas (examples/oneshot_rates) against the
# PyTorch peer (supernet_torch.py --measure-only), the two processes taking
# turns RUNS times (default 5): on a shared host whose speed drifts by tens
# of percent within minutes, a ratio is read within each pair of runs, and
# the table gives each pair's ratios and their medians. The peer is timed
# computing the cells' common prefix once, as gradnas does, and per cell.
#
# Environment: TORCH_PYTHON (default /tmp/torchenv/bin/python), RUNS,
# ROUNDS (timed rounds per run, default 3), OUT (results directory,
# default benches/peers/results/oneshot-<date>).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
runs=${RUNS:-5}
rounds=${ROUNDS:-3}
out=${OUT:-benches/peers/results/oneshot-$(date +%F)}
mkdir -p "$out"
cargo build --release --example oneshot_rates >&2
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
for i in $(seq 1 "$runs"); do
    echo "run $i of $runs" >&2
    ROUNDS=$rounds target/release/examples/oneshot_rates > "$out/gradnas$i.json"
    "$py" benches/peers/supernet_torch.py --measure-only --n-val 256 --eval-batch 64 \
        --measure-cells "$rounds" 2> /dev/null > "$out/torch$i.json"
done
"$py" - "$out" "$runs" <<'PY'
import json, os, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = []
for i in range(1, runs + 1):
    g = json.load(open(os.path.join(out, f"gradnas{i}.json")))
    t = json.load(open(os.path.join(out, f"torch{i}.json")))
    rows.append((g, t))
print(f"gradnas: {rows[0][0]['adapter']}, S2's {rows[0][0]['lanes']} devices; PyTorch: {rows[0][1]['config']}")
print(f"{'run':>4} {'cell':>8} {'gradnas 1 dev':>14} {'gradnas S2':>11} {'PyTorch':>9} {'PyTorch per cell':>17} {'S2 / PyTorch':>13} {'1 dev / PyTorch':>16}")
ratios = {}
for i, (g, t) in enumerate(rows, 1):
    for key, cell in (("1_block", "1-block"), ("5_blocks", "5-block")):
        one, s2 = g[f"s_per_cell_{key}"], g[f"s_per_cell_{key}_lanes"]
        tp, tc = t[f"s_per_cell_{key}_prefix"], t[f"s_per_cell_{key}"]
        ratios.setdefault(key, []).append((s2 / tp, one / tp, tp / tc))
        print(f"{i:>4} {cell:>8} {one*1e3:>11.1f} ms {s2*1e3:>8.1f} ms {tp*1e3:>6.1f} ms {tc*1e3:>14.1f} ms {s2/tp:>13.2f} {one/tp:>16.2f}")
for key, rs in ratios.items():
    med = [statistics.median(r[k] for r in rs) for k in range(3)]
    print(f"median, {key.replace('_', '-')}: gradnas as S2 runs it / PyTorch {med[0]:.2f}, one device / PyTorch {med[1]:.2f}; PyTorch's prefix once / per cell {med[2]:.2f}")
PY
