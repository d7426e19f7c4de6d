#!/usr/bin/env bash
# Train all five SAE architectures at several sparsities on the same captured activations of the
# built-in model's middle layer and print L0 against loss recovered (the Gated-SAE paper's
# trade-off). Results also go to $WORK/sweep.tsv. About 35 minutes on a 2-core machine;
# ARCHS="gated jumprelu" runs a subset.
#
#   bash scripts/sae-sweep.sh [SAEPLAY_BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/saeplay}"
MODEL=www/models/builtin
WORK="${SAEPLAY_WORK:-runs/sae-sweep}"
HOOK=blocks.2.hook_resid_pre
mkdir -p "$WORK"
[ -f "$WORK/acts.safetensors" ] || "$BIN" capture --model "$MODEL" --hooks "$HOOK" --tokens 600000 --out "$WORK/acts.safetensors"

printf "arch\tsetting\tL0\texplained_variance\tloss_recovered\tkl\tdead\tshrinkage\tmean_concept_auroc\n" > "$WORK/sweep.tsv"
run() { # arch label [args...]
  local arch=$1 label=$2; shift 2
  "$BIN" train-sae --model "$MODEL" --hook "$HOOK" --architecture "$arch" --expansion 8 \
    --tokens 1000000 --batch-size 1024 --seed 1 --activations "$WORK/acts.safetensors" \
    --eval-windows 64 --out "$WORK/$arch-$label" --json "$@" 2> "$WORK/$arch-$label.log" > "$WORK/$arch-$label.json"
  python3 - "$arch" "$label" "$WORK/$arch-$label.json" >> "$WORK/sweep.tsv" <<'PY'
import json, sys
arch, label, path = sys.argv[1:]
m = json.load(open(path))
print("\t".join([arch, label] + [f"{m[k]:.4f}" if m.get(k) is not None else "-" for k in
    ["l0", "explained_variance", "loss_recovered", "kl", "dead_fraction", "shrinkage", "mean_concept_auroc"]]))
PY
  tail -1 "$WORK/sweep.tsv"
}
ARCHS="${ARCHS:-topk batchtopk standard jumprelu gated}"
for arch in $ARCHS; do
  case $arch in
    topk | batchtopk) for k in 8 16 32; do run $arch "k$k" --k $k; done ;;
    standard) for l in ${STANDARD_L1S:-2 5 12}; do run standard "l1=$l" --sparsity $l; done ;;
    jumprelu) for l in ${JUMPRELU_L0S:-0.1 1 10}; do run jumprelu "l0=$l" --sparsity $l; done ;;
    gated) for l in ${GATED_L1S:-1 3 10}; do run gated "l1=$l" --sparsity $l; done ;;
  esac
done
column -t "$WORK/sweep.tsv"
