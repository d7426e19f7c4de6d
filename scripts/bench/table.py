#!/usr/bin/env python3
"""The side-by-side table of a `scripts/bench.sh` run: reads the JSON files in its results folder
and prints Markdown, with each saeplay figure's ratio to its peer (above 1: saeplay is faster)."""
import json
import os
import sys


def load(folder, name):
    path = os.path.join(folder, name)
    return json.load(open(path)) if os.path.exists(path) else []


def index(records, peer=None):
    return {(r["work"], r["shape"]): r["tokens_per_s"] for r in records
            if "tokens_per_s" in r and (peer is None or r.get("peer") == peer)}


def fmt(value):
    return "-" if value is None else f"{value:,.0f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def main(folder):
    export = os.path.join(folder, "onnx", "export.json")
    checks = json.load(open(export))["checks"] if os.path.exists(export) else {}
    if checks:
        print("ONNX export checked against saeplay's logits (max |difference|): "
              + ", ".join(f"{k} {v:.2g}" for k, v in checks.items()) + "\n")
    cli, burn, torch = (index(load(folder, f)) for f in ("saeplay-cli.json", "saeplay-cli-burn.json", "pytorch.json"))
    ort1, ort_all = index(load(folder, "ort-node-1.json")), index(load(folder, "ort-node-all.json"))
    page, web = index(load(folder, "saeplay-page.json")), index(load(folder, "ort-web-1.json"))
    print("## Built-in model: tokens/s (generation: tokens/s per sequence, 16-token prompt)\n")
    print("| work | shape | saeplay CLI | CLI on burn ops | PyTorch CPU | CLI / PyTorch | ort-node 1 thread "
          "| ort-node all | saeplay page (CPU) | ort-web 1 thread | page / ort-web |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    keys = list(dict.fromkeys([*cli, *torch, *page]))  # in the order they were measured
    for key in sorted(keys, key=lambda k: k[0] != "forward"):
        print(f"| {key[0]} | {key[1]} | {fmt(cli.get(key))} | {fmt(burn.get(key))} | {fmt(torch.get(key))} "
              f"| {ratio(cli.get(key), torch.get(key))} | {fmt(ort1.get(key))} | {fmt(ort_all.get(key))} "
              f"| {fmt(page.get(key))} | {fmt(web.get(key))} | {ratio(page.get(key), web.get(key))} |")

    for r in load(folder, "saeplay-page.json"):
        if r["work"] == "default SAE":
            print(f"\nThe page's default SAE (TopK k16, 8x, {r['shape']}) on its CPU path, on the page's thread: "
                  f"{r['ms'] / 1000:.1f} s in all, capture {r['capture_ms'] / 1000:.1f} s, training {r['train_s']:.1f} s, "
                  f"explained variance {r['explained_variance']:.3f}.")
    small_cli, small_torch = index(load(folder, "saeplay-cli-gpt2-small.json")), index(load(folder, "pytorch-gpt2-small.json"))
    if small_cli:
        print("\n## GPT-2-small sizes (random weights): tokens/s\n")
        print("| work | shape | saeplay CLI | PyTorch CPU | CLI / PyTorch |\n|---|---|---|---|---|")
        for key in sorted(small_cli, key=lambda k: k[0] != "forward"):
            print(f"| {key[0]} | {key[1]} | {fmt(small_cli[key])} | {fmt(small_torch.get(key))} "
                  f"| {ratio(small_cli[key], small_torch.get(key))} |")

    smol_cli, smol_torch = index(load(folder, "saeplay-cli-smollm2.json")), index(load(folder, "pytorch-smollm2.json"))
    smol_f32 = index(load(folder, "saeplay-cli-smollm2-f32.json"))
    if smol_cli:
        print("\n## SmolLM2-135M (Q4_1 GGUF, and its values as float32 safetensors; PyTorch runs the float32 values): tokens/s\n")
        print("| work | shape | saeplay CLI, GGUF | CLI, f32 safetensors | PyTorch CPU | GGUF / PyTorch | f32 / PyTorch |")
        print("|---|---|---|---|---|---|---|")
        for key in sorted(smol_cli, key=lambda k: k[0] != "forward"):
            print(f"| {key[0]} | {key[1]} | {fmt(smol_cli[key])} | {fmt(smol_f32.get(key))} | {fmt(smol_torch.get(key))} "
                  f"| {ratio(smol_cli[key], smol_torch.get(key))} | {ratio(smol_f32.get(key), smol_torch.get(key))} |")

    rows = []
    # (results' name, label, the peers' name: the f32 folder holds the values the SmolLM2 peers ran)
    for name, label, peer in (("gpt2-small", "GPT-2 small (random weights)", "gpt2-small"),
                              ("smollm2", "SmolLM2-135M Q4_1 GGUF", "smollm2"),
                              ("smollm2-f32", "SmolLM2-135M f32 safetensors", "smollm2")):
        page = index(load(folder, f"saeplay-page-{name}.json"))
        web, node = index(load(folder, f"ort-web-1-{peer}.json")), index(load(folder, f"ort-node-1-{peer}.json"))
        cli = index(load(folder, f"saeplay-cli-{name}.json"))
        for key in sorted(page, key=lambda k: k[0] != "forward"):
            rows.append((label, key, page[key], web.get(key), cli.get(key), node.get(key)))
    if rows:
        print("\n## Real models in the tab: tokens/s (generation: per sequence, 16-token prompt)\n")
        print("| model | work | shape | saeplay page (CPU) | ort-web 1 thread | page / ort-web | saeplay CLI | ort-node 1 thread |")
        print("|---|---|---|---|---|---|---|---|")
        one = lambda v: "-" if v is None else f"{v:,.1f}"
        for label, (work, shape), page, web, cli, node in rows:
            print(f"| {label} | {work} | {shape} | {one(page)} | {one(web)} | {ratio(page, web)} | {one(cli)} | {one(node)} |")

    names = {"relu": "standard", "matryoshka": "matryoshka_batchtopk"}
    torch_sae = {(names.get(r["arch"], r["arch"]), r["d_sae"]): r["vectors_per_s"]
                 for r in load(folder, "pytorch-sae.json") if r.get("kind") == "sae_train"}
    ours = [r for name in sorted(os.listdir(folder)) if name.startswith("saeplay-sae-") for r in load(folder, name)]
    if ours:
        print("\n## SAE training, d_in 128, batch 4096: vectors/s (PyTorch: a plain loop, topk and relu+L1)\n")
        print("| architecture | d_sae | saeplay | PyTorch CPU | saeplay / PyTorch |\n|---|---|---|---|---|")
        for r in ours:
            peer = torch_sae.get((r["arch"], r["d_sae"]))
            print(f"| {r['arch']} | {r['d_sae']} | {fmt(r['vectors_per_s'])} | {fmt(peer)} | {ratio(r['vectors_per_s'], peer)} |")


if __name__ == "__main__":
    main(sys.argv[1])
