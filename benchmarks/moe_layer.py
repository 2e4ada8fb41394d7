"""Forward+backward time of the MoE layer vs a dense FFN of the same active width (top_k * d_ff).

Both see the same tokens; the MoE layer (token router, dropless dispatch: sort by expert, one matmul per
expert) computes the same FLOPs per token as the dense FFN of width top_k * d_ff, so the ratio is
the cost of routing and dispatch. Median over repeats, after warm-up.

    python benchmarks/moe_layer.py                       # training shapes: 4096 tokens, D=128, F=512
    python benchmarks/moe_layer.py --device cuda --experts 8 32 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.model.moe import Experts, FeedForward, MoELayer  # noqa: E402
from pipeline.model.routing import TokenRouter  # noqa: E402


def time_step(layer, x: torch.Tensor, mask: torch.Tensor, repeats: int, warmup: int) -> float:
    """Median seconds of one forward+backward pass."""
    times = []
    for i in range(warmup + repeats):
        x.grad = None
        layer.zero_grad(set_to_none=True)
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = layer(x, mask, None)
        loss = out.output.square().mean() + (out.aux_loss if out.aux_loss is not None else 0.0)
        loss.backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-ff", type=int, default=512)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--experts", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dispatch", default="auto", choices=["auto", "grouped", "padded"],
                   help="expert dispatch (auto: grouped on CPU, padded on GPU)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    x = torch.randn(1, args.tokens, args.d_model, device=device, requires_grad=True)
    mask = torch.ones(1, args.tokens, dtype=torch.bool, device=device)
    dense = FeedForward(args.d_model, args.top_k * args.d_ff).to(device)
    dense_s = time_step(dense, x, mask, args.repeats, args.warmup)
    print(f"device {device}, threads {torch.get_num_threads()}, {args.tokens} tokens, D={args.d_model}, "
          f"F={args.d_ff}, top-{args.top_k}, dispatch {args.dispatch}, median of {args.repeats}")
    print(f"{'experts':>8} {'moe ms':>9} {'dense ms':>9} {'ratio':>7}")
    for num_experts in args.experts:
        moe = MoELayer(TokenRouter(args.d_model, num_experts),
                       Experts(num_experts, args.d_model, args.d_ff, dispatch=args.dispatch), args.top_k,
                       balance_loss_weight=0.01).to(device).train()
        moe_s = time_step(moe, x, mask, args.repeats, args.warmup)
        print(f"{num_experts:>8} {moe_s * 1e3:>9.2f} {dense_s * 1e3:>9.2f} {moe_s / dense_s:>7.2f}")


if __name__ == "__main__":
    main()
