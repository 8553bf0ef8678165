"""Run the stages epoch by epoch with early stopping, a checkpoint hook after every epoch, and resume."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._logging import logger, progress
from ..nn import ScProSpatialModule
from ._loops import LOSSES, Batch, CellPool, validate


@dataclass
class TrainState:
    """Everything needed to continue training exactly where it stopped."""

    stages: tuple[str, ...]
    stage_i: int = 0                 # index of the current stage in `stages`
    epoch: int = 0                   # epochs completed in the current stage
    optimizer: dict | None = None
    best: dict | None = None         # {'score', 'epoch', 'weights'} of the current stage
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    rng: dict = field(default_factory=dict)
    seconds: float = 0.0
    ema: dict | None = None          # exponential moving average of the weights (current stage), when used

    @property
    def done(self) -> bool:
        return self.stage_i >= len(self.stages)


def capture_rng(gen: torch.Generator) -> dict:
    rng: dict[str, Any] = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(gen: torch.Generator, rng: dict) -> None:
    gen.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class WeightAverage:
    """Exponential moving average of a module's floating-point weights (validated and kept instead of the raw ones)."""

    def __init__(self, module: torch.nn.Module, decay: float, state: dict | None = None):
        self.decay = decay
        self.trained = {k for k, _ in module.named_parameters()}  # averaged; buffers are copied
        self.weights = state if state is not None else {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for k, v in module.state_dict().items():
            if k in self.trained:
                self.weights[k].lerp_(v, 1.0 - self.decay)
            else:  # buffers are copied, not averaged (an inf bound would average to nan)
                self.weights[k].copy_(v)

    def swap(self, module: torch.nn.Module) -> dict:
        """Load the averaged weights into `module`; returns the raw weights (to swap back)."""
        raw = copy.deepcopy(module.state_dict())
        module.load_state_dict(self.weights)
        return raw


MIN_BATCH = 16
KEEP_ALIGNED = "keep_aligned"   # optimizer group flag: the RNA projection trained in translate (clipped apart)


def batch_size(cfg, n_cells: int) -> int:
    """The configured batch size, smaller for small training sets so that an epoch takes at least
    cfg.min_steps_per_epoch optimiser steps (136 cells in batches of 256 gave one step an epoch: undertrained)."""
    steps = max(1, cfg.min_steps_per_epoch)
    return int(min(cfg.batch_size, max(MIN_BATCH, -(-n_cells // steps))))


class Trainer:
    def __init__(self, module: ScProSpatialModule, pool: CellPool, train_idx: np.ndarray, val_idx: np.ndarray,
                 proteins: torch.Tensor, config, device: str = "cpu"):
        self.m, self.pool, self.cfg, self.device = module, pool, config, device
        self.train_idx, self.val_idx, self.proteins = train_idx, val_idx, proteins.to(device)

    def cells(self, stage: str, idx: np.ndarray) -> np.ndarray:
        if stage == "pretrain":
            return idx
        return idx[self.pool.has_rna[idx] & self.pool.has_protein[idx]]

    def optimizer(self, stage: str) -> torch.optim.Optimizer:
        m, lr = self.m, self.cfg.lr
        groups: list[dict[str, Any]]
        if stage == "pretrain":
            groups = [{"params": [*m.rna_encoder.parameters(), *m.rna_decoder.parameters(),
                                  *m.gene_query_decoder.parameters(), *m.protein_encoder.parameters(),
                                  *m.protein_decoder.parameters()]}]
        elif stage == "align":
            groups = [{"params": [*m.rna_encoder.parameters(), *m.protein_encoder.parameters(),
                                  *m.rna_proj.parameters(), *m.protein_proj.parameters(), m.log_temperature]}]
        else:
            groups = [{"params": [*m.head.parameters(), *m.queries.parameters()]},
                      {"params": list(m.rna_encoder.parameters()), "lr": lr * self.cfg.encoder_lr_scale}]
            if self.cfg.translate_align_weight > 0:   # the RNA projection follows the encoder (_loops.translate_loss)
                groups.append({"params": list(m.rna_proj.parameters()), KEEP_ALIGNED: True})
        return torch.optim.AdamW(groups, lr=lr, weight_decay=self.cfg.weight_decay)

    def run(self, state: TrainState, gen: torch.Generator, *, on_epoch: Callable[[TrainState], object] | None = None,
            stop: Callable[[TrainState], bool] | None = None) -> TrainState:
        """Train from `state` on; returns early (not done) when `stop(state)` says so after an epoch."""
        if state.rng:
            restore_rng(gen, state.rng)
        while not state.done:
            stage = state.stages[state.stage_i]
            train, val = self.cells(stage, self.train_idx), self.cells(stage, self.val_idx)
            if len(train) < 2:
                logger.warning("stage %s skipped: no training cells it can use", stage)
                self._next_stage(state)
                continue
            opt = self.optimizer(stage)
            if state.optimizer is not None:
                opt.load_state_dict(state.optimizer)
            self.ema = WeightAverage(self.m, self.cfg.ema_decay, state.ema) if self._use_ema(stage) else None
            n_epochs = self.cfg.epochs(stage)
            bar = progress(range(state.epoch, n_epochs), desc=stage, total=n_epochs - state.epoch, unit="epoch")
            for _ in bar:
                if state.bad_epochs >= self.cfg.patience:
                    break
                t0 = time.perf_counter()
                loss = self._epoch(stage, train, opt, gen)
                raw = self.ema.swap(self.m) if self.ema else None
                row = {"stage": stage, "epoch": state.epoch + 1, "train_loss": loss, **self._validate(stage, val)}
                self._track_best(state, row)
                if raw is not None and self.ema is not None:
                    self.m.load_state_dict(raw)
                    state.ema = self.ema.weights
                state.epoch += 1
                state.optimizer = opt.state_dict()
                state.history.append(row)
                state.rng = capture_rng(gen)
                state.seconds += time.perf_counter() - t0
                logger.debug("%s", row)
                if on_epoch:
                    on_epoch(state)
                if stop and stop(state):
                    return state
            best = state.best
            if best is not None:
                self.m.load_state_dict(best["weights"])
                logger.info("stage %s: best epoch %d, val loss %.4f", stage, best["epoch"], best["score"])
            self._next_stage(state)
            if on_epoch:
                on_epoch(state)
        return state

    def _epoch(self, stage: str, cells: np.ndarray, opt, gen: torch.Generator) -> float:
        self.m.train()
        order = cells[torch.randperm(len(cells), generator=gen).numpy()]
        bs, total, n = batch_size(self.cfg, len(cells)), 0.0, 0
        extra = (self.proteins,) if stage == "translate" else ()
        for start in range(0, len(order), bs):
            idx = np.sort(order[start:start + bs])
            if len(idx) < 2:
                continue
            loss = LOSSES[stage](self.m, Batch.of(self.pool, idx, self.device), self.cfg, gen, *extra)
            self.m.zero_grad(set_to_none=True)  # also stale grads of modules other stages train
            loss.backward()
            # clipped apart: the projection's gradient never rescales the translation's
            for kept in (False, True):
                params = [p for g in opt.param_groups if g.get(KEEP_ALIGNED, False) == kept for p in g["params"]]
                if params:
                    torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            if self.ema:
                self.ema.update(self.m)
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        return total / max(n, 1)

    def _validate(self, stage: str, val: np.ndarray) -> dict:
        if len(val) < 2:
            return {}
        self.m.eval()
        return validate(stage, self.m, Batch.of(self.pool, np.sort(val), self.device), self.cfg, self.proteins)

    def _track_best(self, state: TrainState, row: dict) -> None:
        score = row.get("val_loss", float("nan"))
        if not np.isfinite(score):  # no validation cells: keep the last epoch
            state.best = None
            return
        if state.best is None or score < state.best["score"]:
            state.best = {"score": score, "epoch": state.epoch + 1,
                          "weights": copy.deepcopy(self.m.state_dict())}
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1

    def _use_ema(self, stage: str) -> bool:
        return stage == "translate" and 0.0 < self.cfg.ema_decay < 1.0

    @staticmethod
    def _next_stage(state: TrainState) -> None:
        state.stage_i += 1
        state.epoch, state.optimizer, state.best, state.bad_epochs, state.ema = 0, None, None, 0, None
