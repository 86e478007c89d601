#!/usr/bin/env bash
# The full toy grid (every 2-D toy x every method with the oracle x 3 seeds, 1000 updates),
# resumably: one output directory per (target, seed), docs/toy_all/<target>/all-seed<s>; a
# directory with its results.json is finished and skipped, an interrupted one trains only the
# runs its records.jsonl lacks (revflow toy resumes). Two workers, each pinned to one core,
# take the (target, seed) pieces from one queue.
#
#   bash benchmarks/toy_all.sh            # then: python -m revflow.toy.command docs/toy_all/*/all-seed*/records.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
REVFLOW=${REVFLOW:-.venv/bin/revflow}
METHODS=fm-exact,rfm,rfm-isotropic,rfm-optimal-shrunk,rfm-none,rfm-gradient,rfm-gradient-clip,qne,idem
WORKERS=${WORKERS:-2}
LOCKS=$(mktemp -d)
worker() {
  local core=$1
  for seed in 0 1 2; do
    for target in grid ring two-moons; do
      local out=docs/toy_all/$target/all-seed$seed
      [[ -f $out/results.json ]] && continue
      mkdir "$LOCKS/$target-$seed" 2>/dev/null || continue   # taken by the other worker
      echo "core $core: $target seed $seed"
      taskset -c "$core" "$REVFLOW" toy --target "$target" --method "$METHODS" \
        --seed "$seed" --seeds 1 --steps 1000 --no-progress --out "$out" > "$out.log" 2>&1 \
        || { echo "failed: $target seed $seed (see $out.log)"; continue; }
      mv "$out.log" "$out/run.log"
    done
  done
}
for ((c = 0; c < WORKERS; c++)); do worker "$c" & done
wait
rm -rf "$LOCKS"
