#!/usr/bin/env bash
# Issue 4's experiment: the genotype S1 derived, trained from scratch,
# against five random genotypes of the same size (same width, depth, cell
# space) under the same training budget, on the bundled data.
#   benches/derived_vs_random.sh GENOTYPE_JSON [WIDTH] [DEPTH] [EPOCHS] [OUT]
# Prints one line per network (test accuracy, parameters) and the mean of
# the random ones. Not part of CI: ~5 min per network on 2-core lavapipe.
set -euo pipefail
genotype=${1:?usage: $0 GENOTYPE_JSON [WIDTH] [DEPTH] [EPOCHS] [OUT]}
width=${2:-4}
depth=${3:-3}
epochs=${4:-1}
out=${5:-runs/derived_vs_random}
bin=${GRADNAS:-target/release/gradnas}
mkdir -p "$out"
run() { # name model
    "$bin" train --model "$2" --width "$width" --depth "$depth" --epochs "$epochs" \
        --seed 1 --out "$out/$1" > "$out/$1.out" 2> "$out/$1.log"
    acc=$(sed -n 's/^test accuracy: \(.*\)%$/\1/p' "$out/$1.out")
    params=$(sed -n 's/.*, \([0-9]*\) parameters on.*/\1/p' "$out/$1.log")
    echo "$1 $acc $params" >> "$out/results.txt"
    printf '%-9s test accuracy %6s%%  %8s parameters\n' "$1" "$acc" "$params"
}
rm -f "$out/results.txt"
run derived "$genotype"
for s in 1 2 3 4 5; do run "random$s" "random:$s"; done
awk '$1 == "derived" {d = $2} $1 ~ /^random/ {s += $2; n++}
     END {printf "derived %.2f%% vs random mean %.2f%% over %d\n", d, s / n, n}' "$out/results.txt"
