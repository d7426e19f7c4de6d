#!/usr/bin/env python3
"""The Python half of `scripts/bench.sh`: PyTorch's numbers and the ONNX files the onnxruntime
peers run, from a model saeplay opens: a Hugging Face GPT-2 directory or a Llama-family GGUF file
(SmolLM2; transformers dequantizes it to float32, as saeplay does).

    peers.py export MODEL SAEPLAY_BIN OUT_DIR [--no-forward]   # ONNX files, checked against saeplay
    peers.py torch MODEL SHAPES [--gen N] [--device cpu|cuda] [--threads N]   # JSON on stdout
    peers.py float32 GGUF OUT_DIR   # the GGUF as a Hugging Face folder of float32 safetensors

`export` writes three graphs of one plain PyTorch model (PlainGpt2 or PlainLlama, on the model's
own weights, checked first against transformers' model): `forward.onnx` (input_ids -> logits,
what the forward rows compare), and `prefill.onnx` / `decode.onnx` (the same with the key/value
cache as inputs and outputs, for generation; `--no-forward` writes only these two). Each is run
once with onnxruntime and compared with `saeplay forward`'s logits on the same ids; a difference
over 1e-4 of the logits' largest magnitude stops the benchmark.
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


def load_hf(model):
    """transformers' own model for a directory or a GGUF file, in float32."""
    from transformers import AutoModelForCausalLM

    if model.endswith(".gguf"):
        folder, name = os.path.split(os.path.abspath(model))
        return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()


def float32_folder(gguf, out_dir):
    """A GGUF written as the usual Hugging Face download (config.json, model.safetensors,
    tokenizer.json) with transformers' float32 values: the same weights the ONNX peers run."""
    from transformers import AutoTokenizer

    from safetensors.torch import save_file

    folder, name = os.path.split(os.path.abspath(gguf))
    hf = load_hf(gguf)
    # transformers refuses to save a model it loaded from a GGUF, so the tensors are written
    # directly (the tied unembedding once, as a Hugging Face checkpoint stores it).
    tied = hf.config.tie_word_embeddings
    state = {k: v.contiguous() for k, v in hf.state_dict().items() if not (tied and k == "lm_head.weight")}
    os.makedirs(out_dir, exist_ok=True)
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    hf.config.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out_dir)


def plain_model(hf):
    """The plain PyTorch twin of transformers' model, on the same weights."""
    config = hf.config.to_dict()
    if config["model_type"] == "gpt2":
        state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
        return PlainGpt2(config, state).eval()
    if config["model_type"] == "llama":
        tied = config.get("tie_word_embeddings", True)
        state = {k.removeprefix("model."): v for k, v in hf.state_dict().items() if not (tied and k == "lm_head.weight")}
        return PlainLlama(config, state).eval()
    sys.exit(f"no plain PyTorch model for {config['model_type']}")


class PlainGpt2(torch.nn.Module):
    """GPT-2 with an explicit cache: `past_keys`/`past_values` `[layer, batch, head, pos, d_head]`."""

    def __init__(self, config, state):
        super().__init__()
        self.d = config["n_embd"]
        self.heads = config["n_head"]
        self.layers = config["n_layer"]
        self.n_ctx = config["n_positions"]
        self.cache_heads, self.d_head = self.heads, self.d // self.heads
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


class PlainLlama(torch.nn.Module):
    """Llama (SmolLM2) with the same explicit cache as PlainGpt2: `[layer, batch, kv_head, pos, d_head]`."""

    def __init__(self, config, state):
        super().__init__()
        self.d = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.cache_heads = config["num_key_value_heads"]
        self.d_head = config.get("head_dim") or self.d // self.heads
        self.layers = config["num_hidden_layers"]
        self.n_ctx = config["max_position_embeddings"]
        self.eps = config["rms_norm_eps"]
        theta = (config.get("rope_parameters") or {}).get("rope_theta") or config.get("rope_theta", 10000.0)
        half = torch.arange(0, self.d_head, 2, dtype=torch.float32) / self.d_head
        self.register_buffer("inv_freq", 1.0 / theta**half)
        for name, value in state.items():
            self.register_buffer(name.replace(".", "_"), value)

    def w(self, name):
        return getattr(self, name.replace(".", "_"))

    def rms(self, x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w(name)

    def forward(self, ids, past_keys=None, past_values=None, want_cache=False):
        b, t = ids.shape
        past = 0 if past_keys is None else past_keys.shape[3]
        h, kv, dh = self.heads, self.cache_heads, self.d_head
        x = self.w("embed_tokens.weight")[ids]
        positions = torch.arange(past + t, device=ids.device)
        mask = positions[None, :] > positions[past:, None]  # [t, past + t]: the future
        angles = positions[past:, None].float() * self.inv_freq[None, :]  # [t, d_head / 2]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)

        def rope(v):  # transformers' rotate_half convention (GGUF's q/k rows are permuted back)
            rotated = torch.cat([-v[..., dh // 2 :], v[..., : dh // 2]], -1)
            return v * cos + rotated * sin

        keys, values = [], []
        for layer in range(self.layers):
            p = f"layers.{layer}."
            y = self.rms(x, p + "input_layernorm.weight")
            q = rope((y @ self.w(p + "self_attn.q_proj.weight").T).view(b, t, h, dh).transpose(1, 2))
            k = rope((y @ self.w(p + "self_attn.k_proj.weight").T).view(b, t, kv, dh).transpose(1, 2))
            v = (y @ self.w(p + "self_attn.v_proj.weight").T).view(b, t, kv, dh).transpose(1, 2)
            if past_keys is not None:
                k = torch.cat([past_keys[layer], k], dim=2)
                v = torch.cat([past_values[layer], v], dim=2)
            keys.append(k)
            values.append(v)
            k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
            scores = (q @ k.transpose(2, 3)) / math.sqrt(dh)
            pattern = scores.masked_fill(mask, float("-inf")).softmax(-1)
            z = (pattern @ v).transpose(1, 2).reshape(b, t, h * dh)
            x = x + z @ self.w(p + "self_attn.o_proj.weight").T
            y = self.rms(x, p + "post_attention_layernorm.weight")
            gate = F.silu(y @ self.w(p + "mlp.gate_proj.weight").T)
            x = x + (gate * (y @ self.w(p + "mlp.up_proj.weight").T)) @ self.w(p + "mlp.down_proj.weight").T
        x = self.rms(x, "norm.weight")
        unembed = "lm_head.weight" if hasattr(self, "lm_head_weight") else "embed_tokens.weight"  # tied in SmolLM2
        logits = x @ self.w(unembed).T
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


def saeplay_logits(saeplay, model, ids):
    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.safetensors")
        subprocess.run([saeplay, "forward", "--model", model, "--ids", ",".join(map(str, ids)),
                        "--out", out], check=True, stdout=subprocess.DEVNULL)
        return load_file(out)["logits"]


def export(model, saeplay, out_dir, with_forward=True):
    import onnxruntime as ort

    os.makedirs(out_dir, exist_ok=True)
    hf = load_hf(model)
    plain = plain_model(hf)
    vocab, family = hf.config.vocab_size, hf.config.model_type
    ids = [(i * 37 + 11) % vocab for i in range(40)]
    ours = saeplay_logits(saeplay, model, ids)
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits[0].numpy()
        mine = plain(torch.tensor([ids]))[0].numpy()
    del hf
    report = {"hf_vs_saeplay": float(np.abs(theirs - ours).max()), "plain_vs_hf": float(np.abs(mine - theirs).max())}

    batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=plain.n_ctx)
    past = torch.export.Dim("past", max=plain.n_ctx - 1)
    example = torch.tensor([ids[:8], ids[8:16]])
    shape = (plain.layers, 2, plain.cache_heads, 8, plain.d_head)
    specs = {
        "forward": (Forward(plain), (example,), {"input_ids": {0: batch, 1: seq}}, ["input_ids"], ["logits"]),
        "prefill": (Prefill(plain), (example,), {"input_ids": {0: batch, 1: seq}}, ["input_ids"],
                    ["logits", "present_keys", "present_values"]),
        "decode": (Decode(plain), (example[:, :1], torch.zeros(shape), torch.zeros(shape)),
                   {"input_ids": {0: batch}, "past_keys": {1: batch, 3: past},
                    "past_values": {1: batch, 3: past}},
                   ["input_ids", "past_keys", "past_values"], ["logits", "present_keys", "present_values"]),
    }
    if not with_forward:
        del specs["forward"]
    for name, (module, args, dynamic, inputs, outputs) in specs.items():
        path = os.path.join(out_dir, f"{name}.onnx")
        torch.onnx.export(module.eval(), args, path, dynamo=True, dynamic_shapes=dynamic, input_names=inputs,
                          output_names=outputs, optimize=True, external_data=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    run = lambda name, feeds: ort.InferenceSession(os.path.join(out_dir, f"{name}.onnx"), options).run(None, feeds)
    full = np.array([ids], dtype=np.int64)
    if with_forward:
        report["onnx_forward_vs_saeplay"] = float(np.abs(run("forward", {"input_ids": full})[0][0] - ours).max())
    logits, keys, values = run("prefill", {"input_ids": full[:, :-1]})
    step = run("decode", {"input_ids": full[:, -1:], "past_keys": keys, "past_values": values})[0][0, -1]
    report["onnx_cache_vs_saeplay"] = float(np.abs(step - ours[-1]).max())
    config = {"vocab_size": vocab, "model_type": family, "graphs": list(specs)}
    json.dump({"model": model, "config": config, "checks": report}, open(os.path.join(out_dir, "export.json"), "w"))
    print(json.dumps(report))
    worst, scale = max(report.values()), max(1.0, float(np.abs(ours).max()))
    if worst > 1e-4 * scale:
        sys.exit(f"the ONNX export or PyTorch differs from saeplay's logits by {worst:.3g} (> 1e-4 x {scale:.3g})")


def time_call(fn, seconds, min_runs=3):
    fn()
    start, runs = time.perf_counter(), 0
    while runs < min_runs or time.perf_counter() - start < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / runs


def bench_torch(model_path, shapes, gen_tokens, device, threads, seconds):
    if threads:
        torch.set_num_threads(threads)
    model = load_hf(model_path).to(device)
    vocab = model.config.vocab_size
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    records = []
    for shape in filter(None, shapes.split(",")):
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
        export(*sys.argv[2:5], with_forward="--no-forward" not in sys.argv[5:])
    elif command == "float32":
        float32_folder(*sys.argv[2:4])
    elif command == "torch":
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("command")
        parser.add_argument("model")
        parser.add_argument("shapes")
        parser.add_argument("--gen", type=int, default=0)
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--threads", type=int, default=0)
        parser.add_argument("--seconds", type=float, default=2.0)
        a = parser.parse_args()
        bench_torch(a.model, a.shapes, a.gen, a.device, a.threads, a.seconds)
    else:
        sys.exit(f"unknown command {command}: export, float32 or torch")
