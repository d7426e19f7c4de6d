"""Cross-check against Hugging Face transformers (not part of scripts/test.sh: torch is a multi-GB
install). Loads a model directory with GPT2LMHeadModel.from_pretrained, unchanged, and compares its
logits and hidden states with `saeplay forward` on the same text.

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers safetensors numpy
    /tmp/hf/bin/python tests/hf/compare_transformers.py www/models/builtin target/release/saeplay
"""
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel

model_dir, saeplay = sys.argv[1], sys.argv[2]
text = sys.argv[3] if len(sys.argv) > 3 else 'Once upon a time, there was a girl named Mia. She said, "Hello!"'
model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
n_layer = model.config.n_layer
ids = Tokenizer.from_file(f"{model_dir}/tokenizer.json").encode(text).ids
hooks = ",".join(f"blocks.{l}.hook_resid_pre" for l in range(n_layer))
with tempfile.NamedTemporaryFile(suffix=".safetensors") as out:
    subprocess.run([saeplay, "forward", "--model", model_dir, "--ids", ",".join(map(str, ids)),
                    "--hooks", hooks, "--out", out.name], check=True)
    ours = load_file(out.name)
with torch.no_grad():
    reference = model(torch.tensor([ids]), output_hidden_states=True)
worst = np.abs(reference.logits[0].numpy() - ours["logits"]).max()
print(f"{len(ids)} tokens; max |logits - transformers| = {worst:.3g}")
for layer in range(n_layer):
    diff = np.abs(reference.hidden_states[layer][0].numpy() - ours[f"blocks.{layer}.hook_resid_pre"]).max()
    print(f"blocks.{layer}.hook_resid_pre vs hidden_states[{layer}]: {diff:.3g}")
    worst = max(worst, diff)
sys.exit(0 if worst < 1e-4 else 1)
