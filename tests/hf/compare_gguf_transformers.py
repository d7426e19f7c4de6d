"""Cross-check a GGUF model against Hugging Face transformers (not part of scripts/test.sh: torch is a
multi-GB install). transformers reads the GGUF itself (AutoModelForCausalLM/AutoTokenizer with
gguf_file=, weights dequantised to float32), and its logits and hidden states are compared with
`saeplay forward --model FILE.gguf` on the same token ids; then `saeplay forward --text` checks that
saeplay's tokenizer for the file gives transformers' ids.

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers accelerate gguf safetensors numpy
    /tmp/hf/bin/python tests/hf/compare_gguf_transformers.py MODEL.gguf target/release/saeplay [--logits-only] [TEXT...]

--logits-only skips the hook comparison (blocks.L.hook_resid_pre vs hidden_states[L]).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

# Dequantised weights are exact in float32 on both sides; what is left is summation order over
# 30-odd layers. Differences are relative to the largest value compared: SmolLM2's residual stream
# reaches ~2e4 at the first position, where float32 itself only resolves ~2e-3. (transformers in
# float32 against itself in float64, SmolLM2-135M Q4_1: 1.5e-6 on the logits, 4e-6 on the residual.)
TOLERANCE = 1e-4

args = [a for a in sys.argv[1:] if not a.startswith("--")]
logits_only = "--logits-only" in sys.argv
gguf_path, saeplay = os.path.abspath(args[0]), args[1]
texts = args[2:] or [
    "The capital of France is",
    'The capital of France is Paris. In 2024, 12345 people wrote code: fn main() { println!("hi"); }',
    "<|im_start|>user\nWhat is the tallest mountain on Earth?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, there was a girl named Mia. She said, \"Hello!\"",
]
directory, name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
n_layer = model.config.num_hidden_layers
hooks = "" if logits_only else ",".join(f"blocks.{l}.hook_resid_pre" for l in range(n_layer))


def saeplay_forward(*input_args, hooks=""):
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as out:
        subprocess.run([saeplay, "forward", "--model", gguf_path, *input_args, "--hooks", hooks,
                        "--out", out.name], check=True)
        return load_file(out.name)


def relative(reference, ours):
    """max |reference - ours| / max |reference|, and the absolute difference."""
    diff = np.abs(reference - ours).max()
    return diff / max(np.abs(reference).max(), 1e-30), diff


worst = 0.0
tokenizer_ok = True
for text in texts:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    ours = saeplay_forward("--ids", ",".join(map(str, ids)), hooks=hooks)
    with torch.no_grad():
        reference = model(torch.tensor([ids]), output_hidden_states=True)
    rel, diff = relative(reference.logits[0].numpy(), ours["logits"])
    print(f"{text[:40]!r}: {len(ids)} tokens; max |logits - transformers| = {diff:.3g} ({rel:.3g} of the largest)")
    worst = max(worst, rel)
    if not logits_only:
        for layer in range(n_layer):
            hook = f"blocks.{layer}.hook_resid_pre"
            rel, diff = relative(reference.hidden_states[layer][0].numpy(), ours[hook])
            if rel >= TOLERANCE:
                print(f"  {hook} vs hidden_states[{layer}]: {diff:.3g} ({rel:.3g} of the largest)")
            worst = max(worst, rel)
    # saeplay's own tokenisation of the text: the same ids give the same logits row for row.
    by_text = saeplay_forward("--text", text)["logits"]
    if by_text.shape != ours["logits"].shape or np.abs(by_text - ours["logits"]).max() > 1e-5:
        tokenizer_ok = False
        print(f"  saeplay's tokenizer gives {by_text.shape[0]} tokens for it, transformers {len(ids)}: {ids}")
print(f"worst relative difference {worst:.3g} (tolerance {TOLERANCE}); tokenizer {'agrees' if tokenizer_ok else 'DIFFERS'}")
sys.exit(0 if worst < TOLERANCE and tokenizer_ok else 1)
