#!/usr/bin/env python3
"""The Python half of `scripts/bench.sh`: PyTorch's numbers and the ONNX files the onnxruntime
peers run, all from a saeplay model directory (Hugging Face GPT-2 layout).

    peers.py export MODEL_DIR SAEPLAY_BIN OUT_DIR    # ONNX files, checked against saeplay's logits
    peers.py torch MODEL_DIR SHAPES [--gen N] [--device cpu|cuda] [--threads N]   # JSON on stdout

`export` writes three graphs of one plain PyTorch GPT-2 (the model's own weights, checked first
against Hugging Face's GPT2LMHeadModel): `forward.onnx` (input_ids -> logits, what the forward
rows compare), and `prefill.onnx` / `decode.onnx` (the same with the key/value cache as inputs
and outputs, for generation). Each is run once with onnxruntime and compared with `saeplay
forward`'s logits on the same ids; a difference over 1e-4 stops the benchmark.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F


def load_state(model_dir):
    from safetensors.torch import load_file

    config = json.load(open(os.path.join(model_dir, "config.json")))
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    state = {k.removeprefix("transformer."): v.float() for k, v in state.items()}
    return config, state


class PlainGpt2(torch.nn.Module):
    """GPT-2 with an explicit cache: `past_keys`/`past_values` `[layer, batch, head, pos, d_head]`."""

    def __init__(self, config, state):
        super().__init__()
        self.d = config["n_embd"]
        self.heads = config["n_head"]
        self.layers = config["n_layer"]
        self.eps = config.get("layer_norm_epsilon", 1e-5)
        act = config.get("activation_function", "gelu_new")
        self.act = "relu" if act == "relu" else ("none" if act == "gelu" else "tanh")
        for name, value in state.items():
            self.register_buffer(name.replace(".", "_"), value)

    def w(self, name):
        return getattr(self, name.replace(".", "_"))

    def forward(self, ids, past_keys=None, past_values=None, want_cache=False):
        b, t = ids.shape
        past = 0 if past_keys is None else past_keys.shape[3]
        d, h = self.d, self.heads
        dh = d // h
        x = self.w("wte.weight")[ids] + self.w("wpe.weight")[past : past + t]
        positions = torch.arange(past + t, device=ids.device)
        mask = positions[None, :] > positions[past:, None]  # [t, past + t]: the future
        keys, values = [], []
        for layer in range(self.layers):
            p = f"h.{layer}."
            y = F.layer_norm(x, (d,), self.w(p + "ln_1.weight"), self.w(p + "ln_1.bias"), self.eps)
            qkv = y @ self.w(p + "attn.c_attn.weight") + self.w(p + "attn.c_attn.bias")
            q, k, v = (part.view(b, t, h, dh).transpose(1, 2) for part in qkv.split(d, dim=2))
            if past_keys is not None:
                k = torch.cat([past_keys[layer], k], dim=2)
                v = torch.cat([past_values[layer], v], dim=2)
            keys.append(k)
            values.append(v)
            scores = (q @ k.transpose(2, 3)) / math.sqrt(dh)
            pattern = scores.masked_fill(mask, float("-inf")).softmax(-1)
            z = (pattern @ v).transpose(1, 2).reshape(b, t, d)
            x = x + z @ self.w(p + "attn.c_proj.weight") + self.w(p + "attn.c_proj.bias")
            y = F.layer_norm(x, (d,), self.w(p + "ln_2.weight"), self.w(p + "ln_2.bias"), self.eps)
            y = y @ self.w(p + "mlp.c_fc.weight") + self.w(p + "mlp.c_fc.bias")
            y = F.relu(y) if self.act == "relu" else F.gelu(y, approximate=self.act)
            x = x + y @ self.w(p + "mlp.c_proj.weight") + self.w(p + "mlp.c_proj.bias")
        x = F.layer_norm(x, (d,), self.w("ln_f.weight"), self.w("ln_f.bias"), self.eps)
        logits = x @ self.w("wte.weight").T
        if want_cache:
            return logits, torch.stack(keys), torch.stack(values)
        return logits


class Forward(torch.nn.Module):
    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, input_ids):
        return self.gpt(input_ids)


class Prefill(Forward):
    def forward(self, input_ids):
        return self.gpt(input_ids, want_cache=True)


class Decode(Forward):
    def forward(self, input_ids, past_keys, past_values):
        return self.gpt(input_ids, past_keys, past_values, want_cache=True)


def saeplay_logits(saeplay, model_dir, ids):
    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.safetensors")
        subprocess.run([saeplay, "forward", "--model", model_dir, "--ids", ",".join(map(str, ids)),
                        "--out", out], check=True, stdout=subprocess.DEVNULL)
        return load_file(out)["logits"]


def export(model_dir, saeplay, out_dir):
    import onnxruntime as ort
    from transformers import GPT2LMHeadModel

    os.makedirs(out_dir, exist_ok=True)
    config, state = load_state(model_dir)
    gpt = PlainGpt2(config, state).eval()
    vocab = config["vocab_size"]
    ids = [(i * 37 + 11) % vocab for i in range(40)]
    ours = saeplay_logits(saeplay, model_dir, ids)
    with torch.no_grad():
        hf = GPT2LMHeadModel.from_pretrained(model_dir).eval()(torch.tensor([ids])).logits[0].numpy()
        plain = gpt(torch.tensor([ids]))[0].numpy()
    report = {"hf_vs_saeplay": float(np.abs(hf - ours).max()), "plain_vs_hf": float(np.abs(plain - hf).max())}

    batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=config["n_positions"])
    past = torch.export.Dim("past", max=config["n_positions"] - 1)
    example = torch.tensor([ids[:8], ids[8:16]])
    shape = (config["n_layer"], 2, config["n_head"], 8, config["n_embd"] // config["n_head"])
    specs = {
        "forward": (Forward(gpt), (example,), {"input_ids": {0: batch, 1: seq}}, ["input_ids"], ["logits"]),
        "prefill": (Prefill(gpt), (example,), {"input_ids": {0: batch, 1: seq}}, ["input_ids"],
                    ["logits", "present_keys", "present_values"]),
        "decode": (Decode(gpt), (example[:, :1], torch.zeros(shape), torch.zeros(shape)),
                   {"input_ids": {0: batch}, "past_keys": {1: batch, 3: past},
                    "past_values": {1: batch, 3: past}},
                   ["input_ids", "past_keys", "past_values"], ["logits", "present_keys", "present_values"]),
    }
    for name, (module, args, dynamic, inputs, outputs) in specs.items():
        path = os.path.join(out_dir, f"{name}.onnx")
        torch.onnx.export(module, args, path, dynamo=True, dynamic_shapes=dynamic, input_names=inputs,
                          output_names=outputs, optimize=True, external_data=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    run = lambda name, feeds: ort.InferenceSession(os.path.join(out_dir, f"{name}.onnx"), options).run(None, feeds)
    full = np.array([ids], dtype=np.int64)
    report["onnx_forward_vs_saeplay"] = float(np.abs(run("forward", {"input_ids": full})[0][0] - ours).max())
    logits, keys, values = run("prefill", {"input_ids": full[:, :-1]})
    step = run("decode", {"input_ids": full[:, -1:], "past_keys": keys, "past_values": values})[0][0, -1]
    report["onnx_cache_vs_saeplay"] = float(np.abs(step - ours[-1]).max())
    json.dump({"config": config, "checks": report}, open(os.path.join(out_dir, "export.json"), "w"))
    print(json.dumps(report))
    worst = max(report.values())
    if worst > 1e-4:
        sys.exit(f"the ONNX export or PyTorch differs from saeplay's logits by {worst:.3g} (> 1e-4)")


def time_call(fn, seconds, min_runs=3):
    fn()
    start, runs = time.perf_counter(), 0
    while runs < min_runs or time.perf_counter() - start < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / runs


def bench_torch(model_dir, shapes, gen_tokens, device, threads, seconds):
    from transformers import GPT2LMHeadModel

    if threads:
        torch.set_num_threads(threads)
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval().to(device)
    vocab = model.config.vocab_size
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    records = []
    for shape in shapes.split(","):
        b, t = map(int, shape.split("x"))
        ids = torch.tensor([[(i * 31 + j * 7) % 250 % vocab for j in range(t)] for i in range(b)], device=device)

        def once():
            with torch.inference_mode():
                model(ids, use_cache=False).logits
            sync()

        mean = time_call(once, seconds)
        records.append({"peer": f"pytorch-{device}", "work": "forward", "shape": shape, "ms": mean * 1e3,
                        "tokens_per_s": b * t / mean, "threads": torch.get_num_threads()})
    if gen_tokens:
        prompt = torch.tensor([[(j * 7) % 250 % vocab for j in range(16)]], device=device)

        def generate():
            with torch.inference_mode():
                out = model(prompt, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
                for _ in range(gen_tokens):
                    out = model(token, past_key_values=past, use_cache=True)
                    past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            sync()

        with torch.inference_mode():
            prefill = time_call(lambda: (model(prompt, use_cache=True), sync()), seconds / 2)
        total = time_call(generate, seconds, min_runs=2)
        per_token = (total - prefill) / gen_tokens
        records.append({"peer": f"pytorch-{device}", "work": "generate", "shape": f"16+{gen_tokens}",
                        "ms": per_token * 1e3, "tokens_per_s": 1 / per_token, "threads": torch.get_num_threads()})
    print(json.dumps(records))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "export":
        export(*sys.argv[2:5])
    elif command == "torch":
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("command")
        parser.add_argument("model_dir")
        parser.add_argument("shapes")
        parser.add_argument("--gen", type=int, default=0)
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--threads", type=int, default=0)
        parser.add_argument("--seconds", type=float, default=2.0)
        a = parser.parse_args()
        bench_torch(a.model_dir, a.shapes, a.gen, a.device, a.threads, a.seconds)
    else:
        sys.exit(f"unknown command {command}: export or torch")
