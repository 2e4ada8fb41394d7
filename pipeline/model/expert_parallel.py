"""Expert parallelism: each MoE layer's experts sharded over a process group, tokens sent to them by all-to-all.

Dimension legend: N tokens on this rank, D model width, E experts (all ranks), E_r experts held per rank,
K top-k, M assignments sent from this rank, R assignments received here, W ranks in the group.

GShard's layout (Lepikhin et al. 2021; Kudugunta et al. 2021 Sec 5): every rank keeps all non-expert
weights and routers, and E / W of the experts of every MoE layer (rank r holds experts
r·E_r … (r+1)·E_r − 1). Each rank routes its own tokens with its own copy of the router, exactly as
one process would (`MoELayer` is unchanged: only its `experts` module is swapped for a
`ShardedExperts`), then

1. sorts its kept assignments by expert, as `Experts` does, so those bound for each rank are contiguous;
2. tells every rank how many assignments it sends to each of that rank's experts (an all-to-all of E
   counts), since the exchange is dropless and the sizes change from batch to batch;
3. sends the assignments' token states to the ranks that hold their experts (all-to-all, D per row);
4. runs every expert it holds on what it received (grouped or padded, as `Experts.dispatch` says);
5. sends the outputs back (the reverse all-to-all), where they are weighted by the gate and summed into
   the token's output exactly as on one process.

Nothing is dropped (the exchange carries every kept assignment, whatever the imbalance), and an expert sees
its tokens in the order a single process would give them (rank 0's first), so the outputs and the gradients
equal a single process' run over the ranks' batches put together (`tests/model/test_expert_parallel.py`
holds them to 1e-5 for every routing kind). The backward pass runs the same exchanges in reverse; an expert's
gradient collects the contributions of every rank's tokens (a sum, as for one process that runs the ranks'
losses added together: data-parallel training, which averages the losses, divides it by W itself).

Every rank must run every MoE layer the same number of times (collectives pair up in call order), also when
it has no tokens: a rank with an empty batch takes part with zero rows (the model accepts a batch of 0
sentences). `pipeline.decode` keeps the ranks of an expert-parallel model in step (`all_ranks_done`).

Uses `torch.distributed` directly: gloo on CPU, NCCL on GPUs (tensors on the device of the weights).
`COMM` accumulates the seconds spent in the exchanges (all-to-all) and in the decoding loop's step
agreement (all-reduce of one flag), for the serving benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pipeline.errors import PipelineError
from pipeline.model.moe import Experts, MoELayer

EXPERT_PARAMETERS = ("w_in", "b_in", "w_out", "b_out")


@dataclass
class CommStats:
    """Wall seconds spent inside the collectives of this process (synchronised on GPU)."""

    all_to_all_seconds: float = 0.0
    all_to_all_calls: int = 0
    sync_seconds: float = 0.0
    sync_calls: int = 0

    def reset(self) -> None:
        self.all_to_all_seconds, self.all_to_all_calls = 0.0, 0
        self.sync_seconds, self.sync_calls = 0.0, 0


COMM = CommStats()


class Lockstep:
    """A flag per rank riding on the decoder's exchanges, so the ranks of an expert-parallel search agree on
    stopping without a collective of their own: `pipeline.decode` sets `flag` (1: this rank's sentences are
    done) before each decoder step, every MoE layer's count exchange carries it to every rank, and
    `all_done` then says whether every rank was done before that step. `flag` None: no flag is sent (the
    encoder, training). Every rank sets it for the same calls, so the exchanges keep their sizes."""

    def __init__(self) -> None:
        self.flag: Optional[int] = None
        self.all_done = False
        self.heard = False  # a sharded MoE layer carried the flags since `flag` was set

    def set(self, flag: Optional[int]) -> None:
        self.flag, self.all_done, self.heard = flag, False, False


LOCKSTEP = Lockstep()


def _sync_device(t: Tensor) -> None:
    if t.is_cuda:
        torch.cuda.synchronize(t.device)


def _all_to_all(output: Tensor, inp: Tensor, output_splits: Optional[list[int]],
                input_splits: Optional[list[int]], group) -> None:
    _sync_device(inp)
    start = time.perf_counter()
    dist.all_to_all_single(output, inp, output_splits, input_splits, group=group)
    _sync_device(output)
    COMM.all_to_all_seconds += time.perf_counter() - start
    COMM.all_to_all_calls += 1


class _Exchange(torch.autograd.Function):
    """Rows of `x` (split `send` per rank) to the ranks; the rows received (split `recv`). Backward:
    the same exchange in reverse."""

    @staticmethod
    def forward(ctx, x: Tensor, send: list[int], recv: list[int], group) -> Tensor:
        ctx.send, ctx.recv, ctx.group = send, recv, group
        out = x.new_empty(sum(recv), x.shape[1])
        _all_to_all(out, x.contiguous(), recv, send, group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        out = grad.new_empty(sum(ctx.send), grad.shape[1])
        _all_to_all(out, grad.contiguous(), ctx.send, ctx.recv, ctx.group)
        return out, None, None, None


def group_rank_and_size(group=None) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise PipelineError("expert parallelism needs torch.distributed initialised (torchrun, Lightning's "
                            "ddp strategy, or init_process_group) before the experts are sharded")
    return dist.get_rank(group), dist.get_world_size(group)


class ShardedExperts(Experts):
    """This rank's E / W experts of one MoE layer; `forward` takes and returns what `Experts.forward` does
    (every token of this rank, the experts chosen among all E) and exchanges the tokens with the ranks
    that hold their experts. `num_experts` is E (what the router chooses among); the parameters hold
    `local_experts` = E / W of them, the ones from `first_expert` on."""

    def __init__(self, num_experts: int, w_in: Tensor, b_in: Tensor, w_out: Tensor, b_out: Tensor,
                 dispatch: str = "auto", group=None):
        """`w_in` … `b_out`: this rank's rows of the full expert tensors (E_r, …); see `from_experts`."""
        nn.Module.__init__(self)  # not Experts.__init__: no random initialisation (no RNG draws)
        rank, world = group_rank_and_size(group)
        if num_experts % world:
            raise PipelineError(f"model.num_experts ({num_experts}) must be a multiple of the expert-parallel "
                                f"group's size ({world} ranks) to shard the experts evenly")
        if w_in.shape[0] != num_experts // world:
            raise ValueError(f"a shard of {num_experts} experts over {world} ranks has {num_experts // world} "
                             f"experts, got {w_in.shape[0]}")
        if dispatch not in ("auto", "grouped", "padded"):
            raise ValueError(f"dispatch must be auto, grouped or padded, got {dispatch!r}")
        self.dispatch = dispatch
        self.w_in, self.b_in = nn.Parameter(w_in), nn.Parameter(b_in)
        self.w_out, self.b_out = nn.Parameter(w_out), nn.Parameter(b_out)
        self.total_experts, self.group, self.rank, self.world = num_experts, group, rank, world
        self.first_expert = rank * self.local_experts

    @property
    def num_experts(self) -> int:
        return self.total_experts

    @property
    def local_experts(self) -> int:
        return self.w_in.shape[0]

    @classmethod
    @torch.no_grad()
    def from_experts(cls, experts: Experts, group=None) -> "ShardedExperts":
        """This rank's shard of a full `Experts` (every rank must hold the same full weights)."""
        shards = {name: local_shard(getattr(experts, name).detach(), group).clone()
                  for name in EXPERT_PARAMETERS}
        shard = cls(experts.num_experts, **shards, dispatch=experts.dispatch, group=group)
        shard.requires_grad_(experts.w_in.requires_grad)
        return shard.train(experts.training)

    def forward(self, x: Tensor, expert_index: Tensor, weights: Tensor, keep: Tensor) -> Tensor:
        """x (N, D); expert_index, weights, keep (N, K) -> Σ_k weight · FFN_{expert}(x) (N, D)."""
        N, K = expert_index.shape
        W, E_r = self.world, self.local_experts
        flat_expert = expert_index.reshape(-1)  # (N*K,)
        chosen = keep.reshape(-1).nonzero().squeeze(1)  # the M assignments to send
        chosen = chosen[flat_expert[chosen].argsort(stable=True)]  # grouped by expert, so by rank
        tokens = torch.div(chosen, K, rounding_mode="floor")  # (M,)
        counts = torch.bincount(flat_expert[chosen], minlength=self.num_experts).view(W, E_r)  # (E,) as (W, E_r)
        flag = LOCKSTEP.flag
        if flag is not None:  # decoding: this rank's "done" flag goes to every rank with the counts
            counts = torch.cat([counts, counts.new_full((W, 1), flag)], dim=1)
        received_counts = torch.empty_like(counts)  # row s: what rank s sends to my experts (and its flag)
        _all_to_all(received_counts, counts.contiguous(), None, None, self.group)
        if flag is not None:
            LOCKSTEP.all_done, LOCKSTEP.heard = bool(received_counts[:, E_r].min() > 0), True
            counts, received_counts = counts[:, :E_r], received_counts[:, :E_r].contiguous()
        send = counts.sum(1).tolist()
        recv = received_counts.sum(1).tolist()
        outgoing = x.index_select(0, tokens)  # (M, D)
        if torch.is_grad_enabled() and self.w_in.requires_grad and not outgoing.requires_grad:
            # the backward exchanges pair up across ranks: every rank must record them, whatever it holds
            outgoing = outgoing.detach().requires_grad_()
        inbox = _Exchange.apply(outgoing, send, recv, self.group)  # (R, D)
        # each sender's rows come grouped by expert: order them by expert, rank 0's rows first
        local = torch.repeat_interleave(torch.arange(E_r, device=x.device).repeat(W),
                                        received_counts.reshape(-1))  # (R,) local expert of each row
        order = local.argsort(stable=True)
        out = self._runner(x.is_cuda)(inbox.index_select(0, order), local[order],
                                      received_counts.sum(0))  # (R, D) in expert order
        out = out.index_select(0, order.argsort())  # back to the order received
        y = _Exchange.apply(out, recv, send, self.group)  # (M, D) in the order sent
        y = y * weights.reshape(-1)[chosen, None]
        return torch.zeros_like(x).index_add(0, tokens, y.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"experts {self.first_expert}..{self.first_expert + self.local_experts - 1} of "
                f"{self.num_experts}, rank {self.rank} of {self.world}")


# --------------------------------------------------------------------------------------------------
# whole models


def _moe_layers(model: nn.Module) -> list[MoELayer]:
    return [m for m in model.modules() if isinstance(m, MoELayer)]


def shard_experts(model: nn.Module, group=None) -> nn.Module:
    """Keep only this rank's shard of every MoE layer's experts (in place; every rank must hold the same
    full model, e.g. built from one seed or one checkpoint). Returns `model`."""
    for moe in _moe_layers(model):
        if not isinstance(moe.experts, ShardedExperts):
            moe.experts = ShardedExperts.from_experts(moe.experts, group)
    return model


@torch.no_grad()
def gather_experts(model: nn.Module) -> nn.Module:
    """The inverse of `shard_experts`: every rank gets the full experts back (a collective). In place."""
    for moe in _moe_layers(model):
        shard = moe.experts
        if not isinstance(shard, ShardedExperts):
            continue
        full = Experts.__new__(Experts)  # no random initialisation: the weights are gathered
        nn.Module.__init__(full)
        full.dispatch = shard.dispatch
        for name in EXPERT_PARAMETERS:
            setattr(full, name, nn.Parameter(gather_shards(getattr(shard, name).detach(), shard.group),
                                             requires_grad=getattr(shard, name).requires_grad))
        moe.experts = full.train(shard.training)
    return model


def gather_shards(local: Tensor, group=None) -> Tensor:
    """Concatenate every rank's `local` (same shape everywhere) along dim 0, in rank order."""
    _, world = group_rank_and_size(group)
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.contiguous(), group=group)
    return torch.cat(parts)


def local_shard(full: Tensor, group=None) -> Tensor:
    """This rank's rows of a tensor laid out like the full experts (dim 0: E)."""
    rank, world = group_rank_and_size(group)
    size = full.shape[0] // world
    return full[rank * size:(rank + 1) * size]


def sharded_parameter_names(model: nn.Module, prefix: str = "") -> list[str]:
    """Names (as `named_parameters` gives them, with `prefix`) of the parameters that differ by rank."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, ShardedExperts):
            names += [f"{prefix}{name}.{p}" for p in EXPERT_PARAMETERS]
    return names


def expert_parallel_group(model: nn.Module):
    """(True, its group) when `model` has sharded experts, else (False, None)."""
    for module in model.modules():
        if isinstance(module, ShardedExperts):
            return True, module.group
    return False, None


def all_ranks_done(done: bool, group=None, device: Optional[torch.device] = None) -> bool:
    """Whether every rank of `group` says it is done (an all-reduce; every rank must call it)."""
    flag = torch.tensor([0 if done else 1], device=device or "cpu")
    _sync_device(flag)
    start = time.perf_counter()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    COMM.sync_seconds += time.perf_counter() - start
    COMM.sync_calls += 1
    return int(flag.item()) == 0


# --------------------------------------------------------------------------------------------------
# launching ranks on one machine (tests, benchmarks)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, fn, world_size: int, port: int, backend: str, threads: int, timeout_s: float,
               args: tuple) -> None:
    import datetime
    import os
    import sys
    import traceback

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        fn(rank, world_size, *args)
    except BaseException:
        # the other ranks may wait in a collective for this one: say why now, and leave at once
        print(f"rank {rank} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        os._exit(1)
    dist.destroy_process_group()


def run_on_ranks(fn, world_size: int, *args, backend: str = "gloo", threads: int = 1,
                 timeout_s: float = 300.0) -> None:
    """Run `fn(rank, world_size, *args)` in `world_size` fresh processes joined in one process group on
    127.0.0.1 (a free port); `fn` must be importable (a module-level function). A rank that fails prints
    its traceback and exits, the others are stopped, and this raises; a collective that waits more than
    `timeout_s` fails."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(fn, world_size, free_port(), backend, threads, timeout_s, args),
             nprocs=world_size, join=True)
