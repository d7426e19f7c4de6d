#!/usr/bin/env python3
"""PyTorch CPU yardstick for saeplay's SAE training speed (run by hand, not in CI).

Measures, with torch on CPU in float32 and torch's default thread count:

  a. the matmul ceiling: GFLOP/s of a 2048x2048 @ 2048x2048 f32 matmul
     (median of several runs after warm-up, counting 2*n^3 flops);
  b. a plain PyTorch SAE training loop (Adam, lr 1e-4) for each shape, in two
     variants:
       topk: pre = (x - b_dec) @ W_enc + b_enc; vals, idx = pre.topk(k);
             f = zeros.scatter(-1, idx, relu(vals)); x_hat = f @ W_dec + b_dec;
             loss = ((x_hat - x)**2).sum(-1).mean()
       relu: f = relu(pre), same reconstruction loss plus the L1 penalty
             lambda * (f * W_dec.norm(dim=1)).sum(-1).mean()
     and reports vectors/s (batch*steps/seconds) and achieved GFLOP/s.

FLOP count per training step (see FLOPS_PER_STEP below): six dense
[batch x d_in x d_sae] matmuls, 2 in the forward pass (encode, decode) and 4 in
the backward pass (dL/dW_dec, dL/df, dL/dW_enc, and dL/d(x - b_dec), which
autograd needs because b_dec is a parameter). Each such matmul is
batch*d_in*d_sae multiply-adds, i.e. 2*batch*d_in*d_sae flops -- the same
2-flops-per-multiply-add convention as the 2*n^3 matmul ceiling -- so a step is
counted as 6 * 2 * batch*d_in*d_sae = 12*batch*d_in*d_sae flops. (Counting
multiply-adds instead, i.e. 6*batch*d_in*d_sae, gives exactly half the GFLOP/s
and is not comparable with the matmul ceiling.) TopK selection, the scatter, the
elementwise work and the Adam update are not counted.

Inputs are Gaussian, pre-generated before timing. Each configuration runs 3
warm-up steps, then a number of timed steps: --steps if given, otherwise as many
as fit in --seconds-per-config judged from the last warm-up step (at least
--min-steps, at most --max-steps), so big shapes get fewer steps and the default
run (9 shapes x 2 variants) stays around 2-3 minutes on 2 cores.

Usage:
  python tests/sae/pytorch_bench.py                       # table
  python tests/sae/pytorch_bench.py --json                # JSON list on stdout
  python tests/sae/pytorch_bench.py --d-in 128 --d-sae 4096 --arch topk --steps 10
"""

import argparse
import json
import statistics
import sys
import time

import torch

WARMUP_STEPS = 3
DEVICE = torch.device("cpu")


def flops_per_step(batch, d_in, d_sae):
    # 6 matmuls (2 forward, 4 backward) of batch*d_in*d_sae multiply-adds each,
    # 2 flops per multiply-add.
    return 6 * 2 * batch * d_in * d_sae


def int_list(s):
    return [int(v) for v in s.split(",") if v.strip()]


def log(msg, quiet):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def bench_matmul(n=2048, warmup=2, runs=7):
    torch.manual_seed(0)
    a = torch.randn(n, n, dtype=torch.float32)
    b = torch.randn(n, n, dtype=torch.float32)
    for _ in range(warmup):
        torch.mm(a, b)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return 2.0 * n**3 / med / 1e9, med


def make_params(d_in, d_sae, gen):
    # Decoder rows of unit norm, encoder = decoder transposed, zero biases.
    w_dec = torch.randn(d_sae, d_in, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_enc = w_dec.t().contiguous()
    params = {
        "W_enc": w_enc,
        "b_enc": torch.zeros(d_sae),
        "W_dec": w_dec,
        "b_dec": torch.zeros(d_in),
    }
    params = {name: p.to(DEVICE) for name, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    return params


def train_step(arch, p, x, opt, k, l1):
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    if arch == "topk":
        vals, idx = pre.topk(k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    else:
        f = torch.relu(pre)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    loss = ((x_hat - x) ** 2).sum(-1).mean()
    if arch == "relu":
        loss = loss + l1 * (f * p["W_dec"].norm(dim=1)).sum(-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def bench_sae(arch, d_in, d_sae, batch, args):
    gen = torch.Generator().manual_seed(args.seed)
    params = make_params(d_in, d_sae, gen)
    opt = torch.optim.Adam(params.values(), lr=1e-4)
    # Pre-generated inputs (not timed); a small pool cycled through.
    pool = [torch.randn(batch, d_in, generator=gen).to(DEVICE) for _ in range(args.pool)]

    t_last = None
    for i in range(WARMUP_STEPS):
        t0 = time.perf_counter()
        train_step(arch, params, pool[i % len(pool)], opt, args.k, args.l1).item()
        t_last = time.perf_counter() - t0

    if args.steps:
        steps = args.steps
    else:
        steps = int(args.seconds_per_config / max(t_last, 1e-9))
        steps = max(args.min_steps, min(args.max_steps, steps))

    t0 = time.perf_counter()
    for i in range(steps):
        loss = train_step(arch, params, pool[i % len(pool)], opt, args.k, args.l1)
    loss.item()  # make sure all work is done (CPU is synchronous anyway)
    secs = time.perf_counter() - t0

    return {
        "kind": "sae_train",
        "arch": arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "batch": batch,
        "vectors_per_s": batch * steps / secs,
        "gflops": flops_per_step(batch, d_in, d_sae) * steps / secs / 1e9,
        "steps": steps,
        "seconds": secs,
        "k": args.k if arch == "topk" else None,
        "threads": torch.get_num_threads(),
        "device": str(DEVICE),
    }


def print_table(records):
    ceiling = next((r["gflops"] for r in records if r["kind"] == "matmul"), None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    hdr = (
        f"{'kind':<10} {'arch':<6} {'d_in':>5} {'d_sae':>6} {'batch':>6} "
        f"{'steps':>5} {'ms/step':>9} {'vectors/s':>11} {'GFLOP/s':>8} {'%ceil':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in records:
        if r["kind"] == "matmul":
            print(
                f"{'matmul':<10} {'-':<6} {r['d_in']:>5} {r['d_sae']:>6} {r['batch']:>6} "
                f"{'-':>5} {r['seconds'] * 1e3:>9.1f} {'-':>11} {r['gflops']:>8.1f} {'100':>6}"
            )
            continue
        pct = f"{100 * r['gflops'] / ceiling:.0f}" if ceiling else "-"
        print(
            f"{r['kind']:<10} {r['arch']:<6} {r['d_in']:>5} {r['d_sae']:>6} {r['batch']:>6} "
            f"{r['steps']:>5} {r['seconds'] / r['steps'] * 1e3:>9.1f} "
            f"{r['vectors_per_s']:>11.0f} {r['gflops']:>8.1f} {pct:>6}"
        )
    print("GFLOP/s for sae_train counts 12*batch*d_in*d_sae flops per step "
          "(6 matmuls x 2 flops per multiply-add).")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-in", type=int_list, default=[64, 128, 256], help="comma list (default 64,128,256)")
    ap.add_argument("--d-sae", type=int_list, default=[1024, 4096, 8192], help="comma list (default 1024,4096,8192)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--arch", default="topk,relu", help="comma list of topk,relu (default both)")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--l1", type=float, default=1.0, help="L1 coefficient lambda for the relu variant")
    ap.add_argument("--steps", type=int, default=0, help="fixed timed steps per config (default: automatic)")
    ap.add_argument("--seconds-per-config", type=float, default=5.0, help="target timed seconds when --steps is not given")
    ap.add_argument("--min-steps", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--pool", type=int, default=4, help="number of pre-generated input batches to cycle")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--no-matmul", action="store_true", help="skip the matmul ceiling")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print a JSON list of records instead of the table")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (scripts/bench.sh's GPU rows)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)

    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    for a in archs:
        if a not in ("topk", "relu"):
            ap.error(f"unknown arch {a!r} (topk, relu)")
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet = False

    records = []
    if not args.no_matmul:
        gf, med = bench_matmul()
        records.append({
            "kind": "matmul", "arch": None, "d_in": 2048, "d_sae": 2048, "batch": 2048,
            "vectors_per_s": None, "gflops": gf, "seconds": med,
            "threads": torch.get_num_threads(),
        })
        log(f"matmul 2048^3: {gf:.1f} GFLOP/s", quiet)

    for d_in in args.d_in:
        for d_sae in args.d_sae:
            for arch in archs:
                r = bench_sae(arch, d_in, d_sae, args.batch, args)
                records.append(r)
                log(f"{arch:<5} d_in={d_in:<4} d_sae={d_sae:<5} steps={r['steps']:<3} "
                    f"{r['vectors_per_s']:.0f} vec/s {r['gflops']:.1f} GFLOP/s", quiet)

    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print_table(records)


if __name__ == "__main__":
    main()
