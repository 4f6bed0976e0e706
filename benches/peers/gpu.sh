#!/usr/bin/env bash
# Issue 8's GPU table in one call on a lent GPU machine (no Rust there): the
# gradnas binary built here runs through Vulkan beside PyTorch's CUDA path
# on the same GPU, by compare.sh. Run from the repository root, carrying
# the binary and the Vulkan loader (.gl, see the device tool's README):
#
#   cargo build --release --bin gradnas
#   device run, carry [".gl", "target/release/gradnas"]:
#     benches/peers/gpu.sh
#
# Environment: REPEATS (20), SEARCH (small,medium), OUT (where results go),
# PROFILE (set: also each side's profile of the bench-small step),
# SKIP_CHECKS (set: skip `gradnas verify` and the determinism check),
# AB_WIDE (set: first the search step with GRADNAS_WIDE=0 and =1
# alternately, AB_REPEATS each, default 3), TAR (a .tgz that holds OUT after each phase, for a device
# that returns few files).
# Not part of CI.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
snapshot() { if [ -n "${TAR:-}" ]; then tar czf "$TAR" -C "$out" .; fi; }

# The Vulkan loader the machine lacks; NVIDIA's ICD is in the driver's mount.
if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv

export GRADNAS=$root/target/release/gradnas GRADNAS_ASSETS=$root/assets WGPU_BACKEND=vulkan
"$GRADNAS" info 2>&1 | head -30 || true
export PYTHONUNBUFFERED=1
export TORCH_PYTHON=${TORCH_PYTHON:-$(command -v python3)} DEVICE=cuda
export REPEATS=${REPEATS:-20} SEARCH=${SEARCH:-small,medium} OUT=$out

# AB_WIDE: the search step with the CPU adapters' split of reductions
# (GRADNAS_WIDE=0) against the GPU's (the default here), alternately, twice.
if [ -n "${AB_WIDE:-}" ]; then
    for round in 1 2; do
        for wide in 0 1; do
            echo "== round $round, GRADNAS_WIDE=$wide" | tee -a "$out/ab_wide.txt"
            GRADNAS_WIDE=$wide timeout 120 "$GRADNAS" bench --filter search_step --search small,medium \
                --repeats "${AB_REPEATS:-3}" --quiet 2>&1 | grep -v '^op ' | tee -a "$out/ab_wide.txt"
        done
    done
    snapshot
fi

# The same machine, while it is here: every op and gradient against the CPU
# reference on this vendor's GPU, and S1's determinism (same seed, same
# adapter, same genotype and weights).
if [ -z "${SKIP_CHECKS:-}" ]; then
    timeout 150 "$GRADNAS" verify >"$out/verify.txt" 2>&1
    echo "verify: exit status $? ($(grep -c . "$out/verify.txt") lines; tail below)"
    tail -5 "$out/verify.txt"
    for run in a b; do
        timeout 60 "$GRADNAS" search --stage s1 --epochs 1 --steps-per-epoch 8 --quiet --out "/tmp/det_$run" >/dev/null 2>&1
        echo "S1 run $run: exit status $?"
    done
    cmp /tmp/det_a/genotype.json /tmp/det_b/genotype.json && cmp /tmp/det_a/supernet.safetensors /tmp/det_b/supernet.safetensors &&
        echo "S1 twice with one seed on this GPU: genotype.json and supernet.safetensors bit-identical"
    snapshot
fi

"$TORCH_PYTHON" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
benches/peers/compare.sh 2>&1 | tee "$out/table.txt"
snapshot

# Where the time goes on each side: gradnas's dispatches by GPU timestamps,
# PyTorch's kernels by its profiler (bench-small).
if [ -n "${PROFILE:-}" ]; then
    timeout 120 "$GRADNAS" bench --filter search_step --search small --repeats 5 --profile >"$out/gradnas_profile.txt" 2>&1
    head -45 "$out/gradnas_profile.txt"
    timeout 120 "$TORCH_PYTHON" benches/peers/supernet_torch.py --config bench-small --device cuda --profile 2>&1 | grep -v Warning | tee "$out/torch_profile.txt"
    snapshot
fi
