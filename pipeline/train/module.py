"""The LightningModule: one shared step around a `Seq2Seq` for training, validation and distillation."""

from __future__ import annotations

import time
from typing import Callable, Optional

import lightning as L
import torch

from pipeline.config import TrainConfig, WordKDConfig
from pipeline.model.moe import is_expert_parameter
from pipeline.train.batching import Batch
from pipeline.train.losses import (
    inverse_sqrt_schedule, sentence_cross_entropy, token_cross_entropy, word_kd_loss,
)


class TranslationModule(L.LightningModule):
    """Trains `model` on label-smoothed cross-entropy + the MoE auxiliary losses.

    With a `teacher` and `kd.enabled`, the loss mixes in word-level distillation:
    (1 - w) * CE + w * KL(teacher || student) at temperature `kd.temperature`.
    `bleu_fn(model, step, losses) -> float` (greedy BLEU on a validation subset) runs after each
    validation; `step` counts a warm start's steps, and `losses` is (nll, tokens): each validation
    sentence's summed cross-entropy and target tokens, in the order of the validation batches' rows.

    Expert parallelism (`cfg.expert_parallel`, under DDP): `setup` shards every MoE layer's experts over the
    ranks and keeps them out of DDP's gradient averaging; an expert's gradient arrives summed over the
    ranks' tokens by the exchange and is divided by the ranks here, as DDP averages the rest; gradients are
    clipped by the norm of the whole model's gradient; checkpoints hold the full experts and their optimizer
    moments (gathered from the ranks), and loading one keeps this rank's rows.
    """

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, pad_id: int,
                 expert_lr_scale: float = 1.0, teacher: Optional[torch.nn.Module] = None,
                 kd: Optional[WordKDConfig] = None,
                 bleu_fn: Optional[Callable[..., float]] = None,
                 schedule_offset: int = 0):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.pad_id = pad_id
        self.expert_lr_scale = expert_lr_scale
        self.teacher = teacher
        self.kd = kd if (kd is not None and kd.enabled and teacher is not None) else None
        if self.teacher is not None:
            self.teacher.eval().requires_grad_(False)
        self.bleu_fn = bleu_fn
        self.schedule_offset = schedule_offset
        self._val_sums = [0.0, 0]
        self._val_rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # per batch: (nll (B,), tokens (B,))
        self._tokens_seen = 0
        self._train_time = 0.0
        self._step_start: Optional[float] = None
        self.expert_parallel = cfg.expert_parallel

    # -- expert parallelism ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if not self.expert_parallel:
            return
        from lightning.pytorch.strategies import DDPStrategy
        from torch.nn.parallel import DistributedDataParallel

        from pipeline.errors import PipelineError
        from pipeline.model.expert_parallel import shard_experts, sharded_parameter_names

        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise PipelineError("train.expert_parallel: true needs several processes (train.strategy: ddp "
                                "with train.devices or train.num_nodes above 1, or a torchrun/SLURM launch)")
        if not isinstance(self.trainer.strategy, DDPStrategy):
            raise PipelineError(f"train.expert_parallel: true works with train.strategy: ddp, not "
                                f"{type(self.trainer.strategy).__name__}")
        if not self.model.moe_layers():
            return
        shard_experts(self.model)
        # different on every rank: DDP must neither average their gradients nor broadcast rank 0's weights
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            self, sharded_parameter_names(self.model, prefix="model."))

    def _sharded(self) -> dict[str, torch.nn.Parameter]:
        from pipeline.model.expert_parallel import sharded_parameter_names

        names = set(sharded_parameter_names(self.model, prefix="model."))
        return {n: p for n, p in self.named_parameters() if n in names}

    def on_after_backward(self) -> None:
        if self.expert_parallel:  # the exchange summed the ranks' contributions; DDP averages the rest
            world = torch.distributed.get_world_size()
            for p in self._sharded().values():
                if p.grad is not None:
                    p.grad.div_(world)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        sharded = {id(p) for p in self._sharded().values()} if self.expert_parallel else set()
        if not sharded or not gradient_clip_val:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        # clip by the norm of the whole model's gradient: the replicated part once, every rank's shard
        grads, squares = [], torch.zeros(2, dtype=torch.float64, device=self.device)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    grads.append(p.grad)
                    squares[int(id(p) in sharded)] += p.grad.detach().double().pow(2).sum()
        experts = squares[1:].clone()
        torch.distributed.all_reduce(experts)
        total = float((squares[0] + experts[0]).sqrt())
        coef = float(gradient_clip_val) / (total + 1e-6)  # as torch.nn.utils.clip_grad_norm_
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)

    def _expert_optimizer_ids(self, optimizer_state: dict) -> list[int]:
        """The optimizer state ids of the sharded parameters (ids number the parameters of
        `_optimizer_parameters` in order)."""
        sharded = {id(p) for p in self._sharded().values()}
        ids = [i for group in optimizer_state["param_groups"] for i in group["params"]]
        params = [p for group in self._optimizer_parameters() for _, p in group]
        return [i for i, p in zip(ids, params) if id(p) in sharded and i in optimizer_state["state"]]

    def _map_expert_optimizer_state(self, checkpoint: dict, fn) -> None:
        """Replace the moments of the sharded parameters in a checkpoint by `fn(tensor)`. New dicts: an
        optimizer's `state_dict()` shares its entries with the live optimizer."""
        for state in checkpoint.get("optimizer_states", [])[:1]:
            state["state"] = dict(state["state"])
            for i in self._expert_optimizer_ids(state):
                state["state"][i] = {key: fn(value) if torch.is_tensor(value) and value.dim() > 0 else value
                                     for key, value in state["state"][i].items()}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.expert_parallel and self._sharded():  # every rank calls this (Lightning's checkpointing)
            from pipeline.model.expert_parallel import gather_shards

            self._map_expert_optimizer_state(checkpoint, gather_shards)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.expert_parallel and self._sharded():
            from pipeline.model.expert_parallel import local_shard

            self._map_expert_optimizer_state(checkpoint, lambda t: local_shard(t).clone())

    # -- the shared step ---------------------------------------------------------------------------
    def _shared_step(self, batch: Batch, stage: str) -> torch.Tensor:
        out = self.model(batch.src, batch.tgt_in, batch.src_lang, batch.tgt_lang)
        if stage != "train":  # no smoothing: the loss of each sentence, for the learning curves too
            nll, tokens = sentence_cross_entropy(out.logits, batch.tgt_out, self.pad_id)
            self._val_rows.append((nll.detach().cpu(), tokens.cpu()))
            self._val_sums[0] += float(nll.double().sum())
            self._val_sums[1] += int(tokens.sum())
            return nll.sum() / tokens.sum().clamp_min(1)
        ce_sum, n_tokens = token_cross_entropy(out.logits, batch.tgt_out, self.pad_id,
                                               self.cfg.label_smoothing)
        ce = ce_sum / n_tokens.clamp_min(1)
        loss = ce
        if self.kd is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(batch.src, batch.tgt_in, batch.src_lang,
                                              batch.tgt_lang).logits
            kd = word_kd_loss(out.logits, teacher_logits, batch.tgt_out, self.pad_id,
                              self.kd.temperature)
            loss = (1 - self.kd.weight) * ce + self.kd.weight * kd
            self.log("train_kd", kd.detach(), batch_size=batch.src.shape[0])
        loss = loss + out.aux_loss
        bsz = batch.src.shape[0]
        self.log("train_loss", ce.detach(), prog_bar=True, batch_size=bsz)
        self.log("train_aux", torch.as_tensor(out.aux_loss).detach().float(), batch_size=bsz)
        self._tokens_seen += int(n_tokens) + int((batch.src != self.pad_id).sum())
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._val_sums = [0.0, 0]
        self._val_rows = []

    def on_validation_epoch_end(self) -> None:
        total, count = self._val_sums
        if count:
            self.log("val_loss", total / count, prog_bar=True, sync_dist=True)
        if self.bleu_fn is not None and not self.trainer.sanity_checking:
            step = self.schedule_offset + self.trainer.global_step
            losses = (torch.cat([r[0] for r in self._val_rows]).tolist(),
                      torch.cat([r[1] for r in self._val_rows]).tolist()) if self._val_rows else None
            # every rank scores the same sentences with the same weights: the mean is that score
            self.log("val_bleu", float(self.bleu_fn(self.model, step, losses)), prog_bar=True,
                     sync_dist=True)

    # -- throughput --------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self._step_start is not None:
            self._train_time += time.perf_counter() - self._step_start

    @property
    def train_seconds(self) -> float:
        """Seconds spent in training steps (forward, backward, optimizer), validation excluded."""
        return self._train_time

    @property
    def tokens_seen(self) -> int:
        """Source and target tokens (padding excluded) of this rank's training batches."""
        return self._tokens_seen

    @property
    def tokens_per_second(self) -> float:
        return self._tokens_seen / self._train_time if self._train_time else 0.0

    # -- optimisation ------------------------------------------------------------------------------
    def _optimizer_parameters(self) -> list[list[tuple[str, torch.nn.Parameter]]]:
        """The optimizer's parameter groups, in order: [the rest, the experts] (no empty expert group)."""
        experts, rest = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (experts if is_expert_parameter(name) else rest).append((name, p))
        return [rest, experts] if experts else [rest]

    def configure_optimizers(self):
        groups = self._optimizer_parameters()
        rest = [p for _, p in groups[0]]
        experts = [p for _, p in groups[1]] if len(groups) > 1 else []
        groups = [{"params": rest, "lr": self.cfg.lr}]
        if experts:
            groups.append({"params": experts, "lr": self.cfg.lr * self.expert_lr_scale})
        optimizer = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=tuple(self.cfg.adam_betas),
                                      weight_decay=self.cfg.weight_decay)
        warmup, offset = self.cfg.warmup_steps, self.schedule_offset
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: inverse_sqrt_schedule(step + offset, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def state_dict(self, *args, **kwargs):
        # the teacher is frozen and rebuilt from its own checkpoint: keep it out of resume files
        state = super().state_dict(*args, **kwargs)
        state = {k: v for k, v in state.items() if not k.startswith("teacher.")}
        if self.expert_parallel and self._sharded():  # every rank calls this (Lightning's checkpointing)
            from pipeline.model.expert_parallel import gather_shards

            for name, p in self._sharded().items():
                state[name] = gather_shards(p.detach())
        return state

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        if self.expert_parallel and self._sharded():  # a checkpoint holds the full experts: keep our rows
            from pipeline.model.expert_parallel import local_shard

            state_dict = dict(state_dict)
            for name in self._sharded():
                if name in state_dict:
                    state_dict[name] = local_shard(state_dict[name])
        return super().load_state_dict(state_dict, strict=False if self.teacher is not None else strict)
