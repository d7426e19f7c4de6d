#!/usr/bin/env python3
"""Check that an SAE directory written by saeplay loads in SAELens unchanged and
gives the same feature activations and reconstructions.

Usage:
  compare_saelens.py SAE_DIR CHECK_FILE [--rtol 1e-4]
  compare_saelens.py --self-test [--keep DIR] [--no-ablate]

SAE_DIR is a SAELens directory: cfg.json, sae_weights.safetensors and
optionally sparsity.safetensors (one tensor named "sparsity", shape [d_sae],
log10 feature firing frequency). CHECK_FILE is a safetensors file with
  x            [N, d_in]   raw activations
  feature_acts [N, d_sae]  saeplay's encode(x)
  x_hat        [N, d_in]   saeplay's decode(feature_acts)

The SAE is loaded with SAELens's public loader, SAE.load_from_disk(SAE_DIR,
device="cpu"); then SAELens's encode(x) is compared with feature_acts, and
SAELens's decode(feature_acts) with x_hat. A comparison fails when
max |diff| > rtol * (max magnitude of the two tensors) + atol. The exit status
is non-zero if loading fails or either comparison fails.

--self-test writes, in a temporary directory, SAELens-format directories for
standard (ReLU), topk, jumprelu, gated and batchtopk (saved the way SAELens
saves a trained BatchTopK SAE: as jumprelu with a constant threshold), plus
old-style (pre-6.0) configs that SAELens converts, with random weights; the
expected activations come from independent numpy formulas (not SAELens code).
It then runs the comparison on each and, unless --no-ablate, drops each
cfg.json field in turn to show which fields the installed SAELens requires.
Needs: torch, safetensors, numpy, sae-lens (tested with sae-lens 6.54.12).
"""

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np

# --------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------


def _import_saelens():
    warnings.filterwarnings("ignore")
    import sae_lens  # noqa: F401
    from sae_lens import SAE

    return sae_lens, SAE


def describe(sae):
    cfg = sae.cfg
    parts = [
        f"architecture={cfg.architecture()!r}",
        f"class={type(sae).__name__}",
        f"d_in={cfg.d_in}",
        f"d_sae={cfg.d_sae}",
        f"dtype={cfg.dtype}",
        f"apply_b_dec_to_input={cfg.apply_b_dec_to_input}",
        f"normalize_activations={cfg.normalize_activations!r}",
    ]
    for extra in ("k", "rescale_acts_by_decoder_norm"):
        if hasattr(cfg, extra):
            parts.append(f"{extra}={getattr(cfg, extra)}")
    if getattr(cfg, "reshape_activations", "none") != "none":
        parts.append(f"reshape_activations={cfg.reshape_activations!r}")
    md = cfg.metadata
    for key in ("model_name", "hook_name", "sae_lens_version"):
        if md.get(key) is not None:
            parts.append(f"metadata.{key}={md.get(key)!r}")
    return ", ".join(parts)


def _maxdiff(got, ref, rtol, atol):
    diff = (got - ref).abs()
    md = float(diff.max()) if diff.numel() else 0.0
    scale = max(float(got.abs().max()) if got.numel() else 0.0,
                float(ref.abs().max()) if ref.numel() else 0.0)
    tol = rtol * scale + atol
    n_bad = int((diff > tol).sum())
    return md, scale, tol, n_bad


def compare(sae_dir, check_file, rtol=1e-4, atol=1e-8, out=print):
    """Returns (ok, message). Prints a report through `out`."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    _, SAE = _import_saelens()
    try:
        sae = SAE.load_from_disk(sae_dir, device="cpu")
    except Exception as e:  # report, do not crash
        msg = f"SAELens could not load {sae_dir}: {type(e).__name__}: {e}"
        out("FAIL " + msg)
        return False, msg
    out(f"SAELens resolved: {describe(sae)}")

    ok = True
    problems = []
    cfg = sae.cfg
    if cfg.normalize_activations == "expected_average_only_in":
        out("note: normalize_activations='expected_average_only_in' is a no-op in SAELens "
            "inference (the scaling factor must already be folded into the weights)")
    if getattr(cfg, "reshape_activations", "none") == "hook_z":
        out("note: reshape_activations='hook_z'; turning reshaping off to feed flat [N, d_in] x")
        sae.turn_off_forward_pass_hook_z_reshaping()

    sp_path = os.path.join(sae_dir, "sparsity.safetensors")
    if os.path.exists(sp_path):
        with safe_open(sp_path, framework="pt") as f:
            keys = list(f.keys())
            if keys != ["sparsity"]:
                ok = False
                problems.append(f"sparsity.safetensors has tensors {keys}, expected ['sparsity']")
            else:
                s = f.get_tensor("sparsity")
                if tuple(s.shape) != (cfg.d_sae,):
                    ok = False
                    problems.append(f"sparsity shape {tuple(s.shape)}, expected ({cfg.d_sae},)")
                else:
                    out(f"sparsity.safetensors: 'sparsity' {tuple(s.shape)} {s.dtype}, "
                        f"range [{float(s.min()):.3g}, {float(s.max()):.3g}] (log10 frequency)")

    t = load_file(check_file)
    for name in ("x", "feature_acts", "x_hat"):
        if name not in t:
            msg = f"{check_file} lacks tensor {name!r} (has {sorted(t)})"
            out("FAIL " + msg)
            return False, msg
    x, fa, xh = t["x"], t["feature_acts"], t["x_hat"]
    n = x.shape[0]
    shape_ok = (x.ndim == 2 and x.shape[1] == cfg.d_in and tuple(fa.shape) == (n, cfg.d_sae)
                and tuple(xh.shape) == (n, cfg.d_in))
    if not shape_ok:
        msg = (f"shape mismatch: x {tuple(x.shape)}, feature_acts {tuple(fa.shape)}, "
               f"x_hat {tuple(xh.shape)} vs d_in={cfg.d_in}, d_sae={cfg.d_sae}")
        out("FAIL " + msg)
        return False, msg

    dt = sae.dtype
    with torch.no_grad():
        got_f = sae.encode(x.to(dt)).to(torch.float64)
        ref_f = fa.to(torch.float64)
        md, scale, tol, n_bad = _maxdiff(got_f, ref_f, rtol, atol)
        active_mismatch = int(((got_f != 0) != (ref_f != 0)).sum())
        l0_got = float((got_f != 0).sum(-1).double().mean())
        l0_ref = float((ref_f != 0).sum(-1).double().mean())
        status = "ok" if n_bad == 0 else "FAIL"
        out(f"encode: max|diff| {md:.3e}  (max|acts| {scale:.3e}, tol {tol:.3e}, "
            f"{n_bad} elements over tol, active-set mismatches {active_mismatch}, "
            f"L0 saelens {l0_got:.2f} vs file {l0_ref:.2f})  {status}")
        if n_bad:
            ok = False
            problems.append(f"encode max|diff| {md:.3e} > tol {tol:.3e}")

        # decode of the file's feature_acts (encode first: some normalisations
        # keep per-batch state from encode for decode)
        sae.encode(x.to(dt))
        got_x = sae.decode(fa.to(dt)).to(torch.float64)
        md2, scale2, tol2, n_bad2 = _maxdiff(got_x, xh.to(torch.float64), rtol, atol)
        status = "ok" if n_bad2 == 0 else "FAIL"
        out(f"decode: max|diff| {md2:.3e}  (max|x_hat| {scale2:.3e}, tol {tol2:.3e}, "
            f"{n_bad2} elements over tol)  {status}")
        if n_bad2:
            ok = False
            problems.append(f"decode max|diff| {md2:.3e} > tol {tol2:.3e}")

        # informational: SAELens end to end
        e2e = sae.decode(sae.encode(x.to(dt))).to(torch.float64)
        md3 = float((e2e - xh.to(torch.float64)).abs().max())
        out(f"info: SAELens decode(encode(x)) vs x_hat max|diff| {md3:.3e}")

    for p in problems:
        out("FAIL " + p)
    return ok, "; ".join(problems) if problems else "ok"


# --------------------------------------------------------------------------
# self-test: independent generator
# --------------------------------------------------------------------------

N, D_IN, D_SAE, K = 64, 32, 256, 8


def _relu(a):
    return np.maximum(a, 0.0)


def _base_weights(rng):
    w_dec = rng.standard_normal((D_SAE, D_IN))
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    w_dec *= rng.uniform(0.5, 1.5, size=(D_SAE, 1))  # non-unit decoder norms
    w_enc = rng.standard_normal((D_IN, D_SAE)) / np.sqrt(D_IN)
    return {
        "W_enc": w_enc,  # [d_in, d_sae]
        "b_enc": 0.3 * rng.standard_normal(D_SAE),  # [d_sae]
        "W_dec": w_dec,  # [d_sae, d_in]
        "b_dec": 0.3 * rng.standard_normal(D_IN),  # [d_in]
    }


def _centered(x, w, apply_b_dec):
    return x - w["b_dec"] if apply_b_dec else x


def enc_standard(x, w, apply_b_dec=True):
    return _relu(_centered(x, w, apply_b_dec) @ w["W_enc"] + w["b_enc"])


def enc_topk(x, w, k, apply_b_dec=True):
    pre = _centered(x, w, apply_b_dec) @ w["W_enc"] + w["b_enc"]
    idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    rows = np.arange(pre.shape[0])[:, None]
    f = np.zeros_like(pre)
    f[rows, idx] = _relu(pre[rows, idx])
    return f


def enc_jumprelu(x, w, apply_b_dec=True):
    # canonical JumpReLU: z * H(z - theta), theta > 0
    pre = _centered(x, w, apply_b_dec) @ w["W_enc"] + w["b_enc"]
    return np.where(pre > w["threshold"], pre, 0.0)


def enc_gated(x, w, apply_b_dec=True):
    xc = _centered(x, w, apply_b_dec)
    gate = (xc @ w["W_enc"] + w["b_gate"]) > 0
    mag = _relu(xc @ (w["W_enc"] * np.exp(w["r_mag"])[None, :]) + w["b_mag"])
    return gate * mag


def dec(f, w):
    return f @ w["W_dec"] + w["b_dec"]


def _meta(**extra):
    md = {"sae_lens_version": "6.54.12", "model_name": "saeplay-test-model",
          "hook_name": "blocks.0.hook_resid_post"}
    md.update(extra)
    return md


def _new_cfg(arch, **extra):
    cfg = {
        "architecture": arch,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "metadata": _meta(),
    }
    cfg.update(extra)
    return cfg


def build_cases(rng):
    """Each case: name, cfg, weights (float64 numpy), encode fn(x, w), expect_load."""
    cases = []

    w = _base_weights(rng)
    cases.append(("standard", _new_cfg("standard"), w, enc_standard, True))

    w = _base_weights(rng)
    cases.append(("standard_no_bdec_in",
                  _new_cfg("standard", apply_b_dec_to_input=False), w,
                  lambda x, w: enc_standard(x, w, apply_b_dec=False), True))

    w = _base_weights(rng)
    cases.append(("topk", _new_cfg("topk", k=K, rescale_acts_by_decoder_norm=False), w,
                  lambda x, w: enc_topk(x, w, K), True))

    w = _base_weights(rng)
    w["threshold"] = rng.uniform(0.2, 1.0, D_SAE)
    cases.append(("jumprelu", _new_cfg("jumprelu"), w, enc_jumprelu, True))

    w = _base_weights(rng)
    del w["b_enc"]  # gated has no b_enc
    w["b_gate"] = 0.5 * rng.standard_normal(D_SAE)
    w["r_mag"] = 0.2 * rng.standard_normal(D_SAE)
    w["b_mag"] = 0.5 * rng.standard_normal(D_SAE)
    cases.append(("gated", _new_cfg("gated"), w, enc_gated, True))

    # BatchTopK: SAELens trains "batchtopk" but saves the inference SAE as
    # "jumprelu" with threshold = the learned global topk_threshold broadcast to
    # [d_sae] (BatchTopKTrainingSAE.process_state_dict_for_saving_inference).
    # Emulate: theta = the (k*N)-th largest relu(pre) of a calibration batch.
    w = _base_weights(rng)
    calib = rng.standard_normal((512, D_IN))
    pre = (calib - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    flat = np.sort(_relu(pre).ravel())[::-1]
    theta = float(flat[K * calib.shape[0] - 1])
    w_btk = dict(w, threshold=np.full(D_SAE, theta))
    md = _meta(training_architecture="batchtopk",
               training_architecture_details={"k": float(K), "rescale_acts_by_decoder_norm": False})
    cases.append(("batchtopk_as_jumprelu", _new_cfg("jumprelu", metadata=md), w_btk,
                  enc_jumprelu, True))
    # ... and written with architecture "batchtopk": not an inference class in SAELens.
    cases.append(("batchtopk_raw", _new_cfg("batchtopk", k=float(K)), dict(w),
                  lambda x, w: enc_topk(x, w, K), False))

    # old-style (pre-6.0) configs that SAELens still converts
    w = _base_weights(rng)
    old_std = {
        "model_name": "gpt2", "hook_point": "blocks.0.hook_resid_pre", "hook_point_layer": 0,
        "hook_point_head_index": None, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32",
        "device": "cpu", "activation_fn_str": "relu", "apply_b_dec_to_input": True,
        "normalize_activations": False, "finetuning_scaling_factor": False,
        "sae_lens_training_version": "3.0.0", "context_size": 128, "prepend_bos": True,
    }
    cases.append(("legacy_standard", old_std, w, enc_standard, True))

    w = _base_weights(rng)
    old_topk = dict(old_std, activation_fn_str="topk", activation_fn_kwargs={"k": K},
                    sae_lens_training_version="5.0.0")
    cases.append(("legacy_topk", old_topk, w, lambda x, w: enc_topk(x, w, K), True))
    return cases


def write_case(root, name, cfg, w, enc, x, with_sparsity=True):
    import torch
    from safetensors.torch import save_file

    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in w.items()}
    save_file(tensors, os.path.join(d, "sae_weights.safetensors"))
    # expected values from float32-rounded weights, computed in float64
    w32 = {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}
    x32 = x.astype(np.float32).astype(np.float64)
    f = enc(x32, w32)
    xh = dec(f, w32)
    if with_sparsity:
        freq = (f != 0).mean(axis=0)
        save_file({"sparsity": torch.from_numpy(np.log10(freq + 1e-10).astype(np.float32))},
                  os.path.join(d, "sparsity.safetensors"))
    check = os.path.join(d, "check.safetensors")
    save_file({
        "x": torch.from_numpy(x32.astype(np.float32)),
        "feature_acts": torch.from_numpy(f.astype(np.float32)),
        "x_hat": torch.from_numpy(xh.astype(np.float32)),
    }, check)
    return d, check, {k: list(v.shape) for k, v in tensors.items()}


def _drop(cfg, dotted):
    c = copy.deepcopy(cfg)
    if "." in dotted:
        a, b = dotted.split(".", 1)
        del c[a][b]
    else:
        del c[dotted]
    return c


def self_test(keep=None, ablate=True, rtol=1e-4):
    sae_lens, _ = _import_saelens()
    import torch
    from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY

    print(f"sae-lens {sae_lens.__version__}, torch {torch.__version__}")
    print(f"inference architectures: {sorted(SAE_CLASS_REGISTRY)}")
    print(f"training architectures:  {sorted(SAE_TRAINING_CLASS_REGISTRY)}")
    root = keep or tempfile.mkdtemp(prefix="saelens_selftest_")
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((N, D_IN))
    all_ok = True
    results = []
    for name, cfg, w, enc, expect_load in build_cases(rng):
        d, check, shapes = write_case(root, name, cfg, w, enc, x)
        print(f"\n=== {name} ===")
        print("cfg.json: " + json.dumps(cfg))
        print("sae_weights.safetensors: " + json.dumps(shapes))
        ok, msg = compare(d, check, rtol=rtol, out=lambda s: print("  " + s))
        loaded = not msg.startswith("SAELens could not load")
        if expect_load:
            case_ok = ok
        else:
            case_ok = not loaded
            print(f"  (expected SAELens to refuse this directory: {'yes' if case_ok else 'NO'})")
        results.append((name, case_ok, msg))
        all_ok &= case_ok

        if ablate and expect_load and ok:
            keys = [k for k in cfg if k != "metadata"]
            if "metadata" in cfg:
                keys += ["metadata"] + [f"metadata.{k}" for k in cfg["metadata"]]
            verdicts = []
            for key in keys:
                c2 = _drop(cfg, key)
                with open(os.path.join(d, "cfg.json"), "w") as f:
                    json.dump(c2, f)
                ok2, msg2 = compare(d, check, rtol=rtol, out=lambda s: None)
                if ok2:
                    verdicts.append(f"{key}: optional")
                elif msg2.startswith("SAELens could not load"):
                    verdicts.append(f"{key}: REQUIRED (load error: {msg2.split(': ', 1)[1][:120]})")
                else:
                    verdicts.append(f"{key}: REQUIRED (loads, wrong result: {msg2[:60]})")
            with open(os.path.join(d, "cfg.json"), "w") as f:
                json.dump(cfg, f, indent=1)
            print("  drop-one-field ablation:")
            for v in verdicts:
                print("    " + v)

    print("\n=== summary ===")
    for name, ok, msg in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<24} {msg if not ok else ''}")
    print(f"files in {root}" + ("" if keep else " (removed)"))
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return all_ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sae_dir", nargs="?")
    ap.add_argument("check_file", nargs="?")
    ap.add_argument("--rtol", type=float, default=1e-4,
                    help="tolerance relative to the max magnitude (default 1e-4)")
    ap.add_argument("--atol", type=float, default=1e-8, help="absolute floor added to the tolerance")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="self-test: write the directories here and keep them")
    ap.add_argument("--no-ablate", action="store_true", help="self-test: skip the drop-one-field ablation")
    args = ap.parse_args()

    if args.self_test:
        sys.exit(0 if self_test(keep=args.keep, ablate=not args.no_ablate, rtol=args.rtol) else 1)
    if not args.sae_dir or not args.check_file:
        ap.error("SAE_DIR and CHECK_FILE are required (or --self-test)")
    ok, _ = compare(args.sae_dir, args.check_file, rtol=args.rtol, atol=args.atol)
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
