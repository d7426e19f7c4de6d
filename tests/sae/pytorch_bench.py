#!/usr/bin/env python3
"""PyTorch CPU yardstick for saeplay's SAE training speed (run by hand, not in CI).

Measures, with torch on CPU in float32 and torch's default thread count:

  a. the matmul ceiling: GFLOP/s of a 2048x2048 @ 2048x2048 f32 matmul
     (median of several runs after warm-up, counting 2*n^3 flops);
  b. a plain PyTorch SAE training loop (autograd, Adam, lr 1e-4) for each shape
     and each --arch variant, written to do the same math as saeplay's training
     (pre = (x - b_dec) @ W_enc + b_enc, x_hat = f @ W_dec + b_dec, and the
     reconstruction loss mse = ((x_hat - x)**2).sum(-1).mean() throughout):
       topk:       f = relu of the k largest pre per row, scattered into zeros;
                   loss = mse
       relu:       f = relu(pre); loss = mse + l1 * (f * W_dec.norm(dim=1)).sum(-1).mean()
       batchtopk:  f = relu(pre) masked to the k*batch largest values of the
                   whole batch; loss = mse; plus (detached) the smallest kept
                   activation's running average (rate 0.01), saeplay's
                   inference threshold
       matryoshka: batchtopk, plus for each inner prefix w in d_sae/8, /4, /2 the
                   mse of b_dec + f[:, :w] @ W_dec[:w] (built cumulatively), unweighted
       jumprelu:   f = relu(pre) * (pre > threshold), a learned per-latent
                   threshold (init 0.05 as saeplay, trained directly, 10x the learning rate,
                   clamped >= 0 after each step) with rectangle-kernel
                   straight-through gradients (bandwidth 0.05);
                   loss = mse + l0 * step(pre, threshold).sum(-1).mean()
       gated:      no b_enc; pi_gate = (x - b_dec) @ W_enc + b_gate, pi_mag the
                   same with W_enc * exp(r_mag) and b_mag; f = (pi_gate > 0) *
                   relu(pi_mag); loss = mse + l1 * L1(relu(pi_gate)) + the
                   auxiliary mse of relu(pi_gate) through the detached decoder;
                   decoder rows renormalised to unit norm after each step
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
elementwise work and the Adam update are not counted. This is the same nominal
count for every variant (as saeplay's bench-sae uses), not a true count: Gated
does more (two encoder matmuls and the auxiliary decode, with their backward),
and Matryoshka's inner prefix decodes add about half a decode and its backward.

Inputs are Gaussian, pre-generated before timing. Each configuration runs 3
warm-up steps, then a number of timed steps: --steps if given, otherwise as many
as fit in --seconds-per-config judged from the last warm-up step (at least
--min-steps, at most --max-steps), so big shapes get fewer steps and the default
run (9 shapes x 2 variants) stays around 2-3 minutes on 2 cores.

Usage:
  python tests/sae/pytorch_bench.py                       # table
  python tests/sae/pytorch_bench.py --json                # JSON list on stdout
  python tests/sae/pytorch_bench.py --d-in 128 --d-sae 4096 --arch topk --steps 10
  python tests/sae/pytorch_bench.py --arch topk,relu,batchtopk,matryoshka,jumprelu,gated
"""

import argparse
import json
import statistics
import sys
import time

import torch

WARMUP_STEPS = 3
DEVICE = torch.device("cpu")
LR = 1e-4
ARCHS = ("topk", "relu", "batchtopk", "matryoshka", "jumprelu", "gated")
TOPK_FAMILY = ("topk", "batchtopk", "matryoshka")
BATCHTOPK_THRESHOLD_RATE = 0.01
JUMPRELU_INIT_THRESHOLD = 0.05  # saeplay's default
JUMPRELU_BANDWIDTH = 0.05
JUMPRELU_THRESHOLD_LR_MULTIPLIER = 10.0


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


def make_params(arch, d_in, d_sae, gen):
    # Decoder rows of unit norm, encoder = decoder transposed, zero biases.
    w_dec = torch.randn(d_sae, d_in, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_enc = w_dec.t().contiguous()
    params = {"W_enc": w_enc}
    if arch == "gated":
        params.update(b_gate=torch.zeros(d_sae), r_mag=torch.zeros(d_sae), b_mag=torch.zeros(d_sae))
    else:
        params["b_enc"] = torch.zeros(d_sae)
    params.update(W_dec=w_dec, b_dec=torch.zeros(d_in))
    if arch == "jumprelu":
        params["threshold"] = torch.full((d_sae,), JUMPRELU_INIT_THRESHOLD)
    params = {name: p.to(DEVICE) for name, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    return params


def make_optimizer(params):
    # JumpReLU's threshold learns 10x faster, as in saeplay (a second param group).
    groups = [{"params": [p for name, p in params.items() if name != "threshold"]}]
    if "threshold" in params:
        groups.append({"params": [params["threshold"]], "lr": LR * JUMPRELU_THRESHOLD_LR_MULTIPLIER})
    return torch.optim.Adam(groups, lr=LR)


def pre_activation(p, x):
    return (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]


def decode(p, f):
    return f @ p["W_dec"] + p["b_dec"]


def squared_error(a, x):
    return ((a - x) ** 2).sum(-1).mean()


def rectangle(u):
    return (u.abs() < 0.5).to(u.dtype)


class JumpReLU(torch.autograd.Function):
    """relu(pre) * (pre > theta); straight-through d/dtheta = -(theta/eps) K((pre - theta)/eps)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return torch.relu(pre) * (pre > theta)

    @staticmethod
    def backward(ctx, grad):
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        d_theta = (-(theta / eps) * rectangle((pre - theta) / eps) * grad).sum(0)
        return (pre > theta) * grad, d_theta, None


class Step(torch.autograd.Function):
    """(pre > theta); no gradient to pre, straight-through d/dtheta = -(1/eps) K((pre - theta)/eps)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        d_theta = (-(1.0 / eps) * rectangle((pre - theta) / eps) * grad).sum(0)
        return None, d_theta, None


def loss_topk(p, x, args, state):
    pre = pre_activation(p, x)
    vals, idx = pre.topk(args.k, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    return squared_error(decode(p, f), x)


def loss_relu(p, x, args, state):
    f = torch.relu(pre_activation(p, x))
    l1 = (f * p["W_dec"].norm(dim=1)).sum(-1).mean()
    return squared_error(decode(p, f), x) + args.l1 * l1


def batchtopk_acts(p, x, args, state):
    relu = torch.relu(pre_activation(p, x))
    flat = relu.detach().flatten()
    idx = flat.topk(args.k * x.shape[0]).indices
    mask = torch.zeros_like(flat).scatter_(0, idx, 1.0).view_as(relu)
    f = relu * mask
    # Running average of the smallest positive kept activation: saeplay's inference threshold.
    kept = f.detach()
    smallest = torch.where(kept > 0, kept, torch.inf).min()
    t = state.get("threshold")
    state["threshold"] = smallest if t is None else torch.where(
        smallest.isinf(), t, t + BATCHTOPK_THRESHOLD_RATE * (smallest - t))
    return f


def loss_batchtopk(p, x, args, state):
    return squared_error(decode(p, batchtopk_acts(p, x, args, state)), x)


def loss_matryoshka(p, x, args, state):
    f = batchtopk_acts(p, x, args, state)
    loss = squared_error(decode(p, f), x)
    d_sae = f.shape[1]
    partial, start = p["b_dec"], 0
    for w in sorted({w for w in (d_sae // 8, d_sae // 4, d_sae // 2) if 0 < w < d_sae}):
        partial = partial + f[:, start:w] @ p["W_dec"][start:w]
        loss = loss + squared_error(partial, x)
        start = w
    return loss


def loss_jumprelu(p, x, args, state):
    pre = pre_activation(p, x)  # not relu'd: the kernel sees pre itself, as in saeplay and SAELens
    f = JumpReLU.apply(pre, p["threshold"], JUMPRELU_BANDWIDTH)
    l0 = Step.apply(pre, p["threshold"], JUMPRELU_BANDWIDTH).sum(-1).mean()
    return squared_error(decode(p, f), x) + args.l0 * l0


def loss_gated(p, x, args, state):
    centred = x - p["b_dec"]
    pi_gate = centred @ p["W_enc"] + p["b_gate"]
    pi_mag = centred @ (p["W_enc"] * p["r_mag"].exp()) + p["b_mag"]
    f = (pi_gate > 0).to(pi_mag.dtype) * torch.relu(pi_mag)
    gate = torch.relu(pi_gate)
    l1 = (gate * p["W_dec"].norm(dim=1)).sum(-1).mean()
    aux = squared_error(gate @ p["W_dec"].detach() + p["b_dec"].detach(), x)
    return squared_error(decode(p, f), x) + args.l1 * l1 + aux


LOSSES = {
    "topk": loss_topk,
    "relu": loss_relu,
    "batchtopk": loss_batchtopk,
    "matryoshka": loss_matryoshka,
    "jumprelu": loss_jumprelu,
    "gated": loss_gated,
}


def train_step(arch, p, x, opt, args, state):
    loss = LOSSES[arch](p, x, args, state)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        if arch == "jumprelu":
            p["threshold"].clamp_(min=0.0)
        elif arch == "gated":
            p["W_dec"] /= p["W_dec"].norm(dim=1, keepdim=True).clamp_min(1e-8)
    return loss


def bench_sae(arch, d_in, d_sae, batch, args):
    gen = torch.Generator().manual_seed(args.seed)
    params = make_params(arch, d_in, d_sae, gen)
    opt = make_optimizer(params)
    state = {}  # BatchTopK's running threshold
    # Pre-generated inputs (not timed); a small pool cycled through.
    pool = [torch.randn(batch, d_in, generator=gen).to(DEVICE) for _ in range(args.pool)]

    t_last = None
    for i in range(WARMUP_STEPS):
        t0 = time.perf_counter()
        train_step(arch, params, pool[i % len(pool)], opt, args, state).item()
        t_last = time.perf_counter() - t0

    if args.steps:
        steps = args.steps
    else:
        steps = int(args.seconds_per_config / max(t_last, 1e-9))
        steps = max(args.min_steps, min(args.max_steps, steps))

    t0 = time.perf_counter()
    for i in range(steps):
        loss = train_step(arch, params, pool[i % len(pool)], opt, args, state)
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
        "k": args.k if arch in TOPK_FAMILY else None,
        "threads": torch.get_num_threads(),
        "device": str(DEVICE),
    }


def print_table(records):
    ceiling = next((r["gflops"] for r in records if r["kind"] == "matmul"), None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    hdr = (
        f"{'kind':<10} {'arch':<10} {'d_in':>5} {'d_sae':>6} {'batch':>6} "
        f"{'steps':>5} {'ms/step':>9} {'vectors/s':>11} {'GFLOP/s':>8} {'%ceil':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in records:
        if r["kind"] == "matmul":
            print(
                f"{'matmul':<10} {'-':<10} {r['d_in']:>5} {r['d_sae']:>6} {r['batch']:>6} "
                f"{'-':>5} {r['seconds'] * 1e3:>9.1f} {'-':>11} {r['gflops']:>8.1f} {'100':>6}"
            )
            continue
        pct = f"{100 * r['gflops'] / ceiling:.0f}" if ceiling else "-"
        print(
            f"{r['kind']:<10} {r['arch']:<10} {r['d_in']:>5} {r['d_sae']:>6} {r['batch']:>6} "
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
    ap.add_argument("--arch", default="topk,relu", help=f"comma list of {','.join(ARCHS)} (default topk,relu)")
    ap.add_argument("--k", type=int, default=16, help="k for topk, batchtopk, matryoshka")
    ap.add_argument("--l1", type=float, default=1.0, help="L1 coefficient lambda for relu and gated")
    ap.add_argument("--l0", type=float, default=1.0, help="L0 coefficient for jumprelu")
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
        if a not in ARCHS:
            ap.error(f"unknown arch {a!r} ({', '.join(ARCHS)})")
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
                log(f"{arch:<10} d_in={d_in:<4} d_sae={d_sae:<5} steps={r['steps']:<3} "
                    f"{r['vectors_per_s']:.0f} vec/s {r['gflops']:.1f} GFLOP/s", quiet)

    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print_table(records)


if __name__ == "__main__":
    main()
