#!/usr/bin/env bash
# Regenerate the SAEs shipped with the built-in model (www/models/builtin/saes/): a TopK SAE
# (k = 16, 8x) on each layer's residual stream and a standard ReLU SAE at the middle layer, all
# trained on the same captured activations, plus index.json that lists them for the page (with
# every figure the Pareto chart can plot). Deterministic on the CPU backend. Takes about 15
# minutes on a 2-core machine. With --metrics-only, the shipped SAEs are only evaluated again
# (the same 64 held-out windows as training's evaluation) and their metrics and the index
# rewritten: what to run when the evaluation gains figures.
#
#   bash scripts/ship-saes.sh [--metrics-only] [SAEPLAY_BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
METRICS_ONLY=
if [ "${1:-}" = "--metrics-only" ]; then METRICS_ONLY=1; shift; fi
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/saeplay}"
MODEL=www/models/builtin
OUT=$MODEL/saes
WORK="${SAEPLAY_WORK:-runs/ship-saes}"
TOKENS=2000000
mkdir -p "$WORK" "$OUT"

if [ -n "$METRICS_ONLY" ]; then
  for dir in "$OUT"/*/; do
    name=$(basename "$dir")
    "$BIN" eval-sae --model "$MODEL" --sae "$dir" --windows 64 --json > "$WORK/$name.json"
    python3 - "$dir/saeplay.json" "$WORK/$name.json" <<'EOF'
import json, sys
meta_path, metrics_path = sys.argv[1], sys.argv[2]
meta = json.load(open(meta_path))
metrics = json.load(open(metrics_path))
metrics.pop("figures", None)
meta["metrics"] = metrics
json.dump(meta, open(meta_path, "w"), indent=2)
EOF
    echo "$name: evaluated again"
  done
fi

hooks=""
for l in 0 1 2 3; do hooks="$hooks${hooks:+,}blocks.$l.hook_resid_pre"; done
if [ -z "$METRICS_ONLY" ] && [ ! -f "$WORK/acts.safetensors" ]; then
  "$BIN" capture --model "$MODEL" --hooks "$hooks" --tokens 600000 --corpus-seed 1 --out "$WORK/acts.safetensors"
fi

train() { # name hook architecture [extra args...]
  local name=$1 hook=$2 arch=$3; shift 3
  "$BIN" train-sae --model "$MODEL" --hook "$hook" --architecture "$arch" --expansion 8 \
    --tokens $TOKENS --batch-size 1024 --seed 1 --activations "$WORK/acts.safetensors" \
    --eval-windows 64 --name "$name" --out "$OUT/$name" --json "$@" > "$WORK/$name.json"
  echo "$name: $(grep -E '"(l0|explained_variance|loss_recovered)"' "$WORK/$name.json" | tr -d ' \n')"
}
if [ -z "$METRICS_ONLY" ]; then
  for l in 0 1 2 3; do
    train "blocks.$l.hook_resid_pre-topk16" "blocks.$l.hook_resid_pre" topk --k 16
  done
  train "blocks.2.hook_resid_pre-standard" "blocks.2.hook_resid_pre" standard --sparsity "${STANDARD_L1:-5}"
fi

# index.json: what the page lists (id, hook, architecture, headline metrics).
python3 - "$OUT" "$WORK" <<'EOF'
import json, os, sys
out, work = sys.argv[1], sys.argv[2]
entries = []
for name in sorted(os.listdir(out)):
    path = os.path.join(out, name)
    if not os.path.isdir(path):
        continue
    cfg = json.load(open(os.path.join(path, "cfg.json")))
    meta = json.load(open(os.path.join(path, "saeplay.json")))
    m = meta.get("metrics") or {}
    entry = {
        "id": name,
        "path": f"saes/{name}/",
        "hook_name": cfg["metadata"]["hook_name"],
        "architecture": meta.get("trained_as") or cfg["architecture"],
        "d_sae": cfg["d_sae"],
        "k": cfg.get("k"),
        "l0": m.get("l0"),
        "explained_variance": m.get("explained_variance"),
        "loss_recovered": m.get("loss_recovered"),
        "mean_concept_auroc": m.get("mean_concept_auroc"),
    }
    # Every figure the Pareto chart can plot, as the CLI named them (`--json`'s "figures").
    printed = os.path.join(work, f"{name}.json")
    if os.path.exists(printed):
        for key, value in (json.load(open(printed)).get("figures") or {}).items():
            entry.setdefault(key, value)
    entries.append(entry)
json.dump({"saes": entries}, open(os.path.join(out, "index.json"), "w"), indent=2)
print(f"wrote {out}/index.json ({len(entries)} SAEs)")
EOF
