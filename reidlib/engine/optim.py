"""Optimisers and the iteration-based learning-rate schedule used by every model.

Both papers (and Luo et al.'s strong baseline they build on) use Adam, a linear warm-up and a
multi-step decay: MUSP Sec. 5.2 warms up from 3.5e-5 to 3.5e-4 over 10 epochs and divides by 10
at epochs 30 and 60. Here the schedule counts *iterations* (one optimiser step each) so that a
checkpoint taken in the middle of an epoch resumes on exactly the right learning rate;
:func:`epochs_to_iters` converts epoch-based schedules.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from reidlib.config import OPTIMIZERS, WARMUP_METHODS  # the run configuration's choices
from reidlib.errors import ConfigError



def trainable_parameters(model_or_params) -> list:
    """The parameters that require gradients (frozen sub-modules such as SPAN's are left out)."""
    params = model_or_params.parameters() if isinstance(model_or_params, torch.nn.Module) else model_or_params
    params = list(params)
    if params and isinstance(params[0], dict):  # parameter groups are passed through
        return params
    return [p for p in params if p.requires_grad]


def parameter_groups(model: torch.nn.Module, lr: float, lr_mult: Mapping[str, float]) -> list[dict]:
    """``model``'s trainable parameters as optimiser groups: those whose name starts with a prefix
    of ``lr_mult`` (``{prefix: factor}``, the configuration's ``optim.lr_mult``) at ``lr * factor``
    (the longest matching prefix wins), the rest at ``lr``. A group's ``lr`` is its base rate; the
    warm-up and decay of :class:`WarmupMultiStepLR` scale every group alike.

    A prefix that matches no trainable parameter is refused (a typo would silently train at ``lr``).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    prefixes = sorted(lr_mult, key=len, reverse=True)
    unused = [k for k in prefixes if not any(n.startswith(k) for n, _ in named)]
    if unused:
        heads = sorted({n.split(".")[0] for n, _ in named})
        raise ConfigError(f"optim.lr_mult: no trainable parameter of {type(model).__name__} starts with "
                          f"{', '.join(map(repr, unused))} (its top-level modules: {', '.join(heads)})")
    groups: dict[Optional[str], list] = {}
    for n, p in named:
        groups.setdefault(next((k for k in prefixes if n.startswith(k)), None), []).append(p)
    return [{"params": ps, "lr": lr * float(lr_mult[k]) if k is not None else lr,
             "name": k if k is not None else "rest"} for k, ps in groups.items()]


def build_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    betas: Optional[Sequence[float]] = None, nesterov: bool = False) -> torch.optim.Optimizer:
    """``adam`` | ``adamw`` | ``sgd``. ``params`` may be a module (its trainable parameters are used),
    an iterable of parameters or a list of parameter groups.

    For Adam/AdamW ``momentum`` is beta1 (MUSP Sec. 5.2: "Adam ... momentum of 0.9"); ``betas``
    overrides both betas. For SGD it is the classical momentum.
    """
    name = str(name).lower()
    params = trainable_parameters(params)
    if not params:
        raise ConfigError("the optimiser got no trainable parameters")
    if lr <= 0:
        raise ConfigError(f"learning rate must be > 0, got {lr}")
    if name in ("adam", "adamw"):
        b = tuple(betas) if betas is not None else (float(momentum), 0.999)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=weight_decay, betas=b)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                               nesterov=bool(nesterov and momentum > 0))
    raise ConfigError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}")


def warmup_multistep_factor(iteration: int, milestones: Sequence[int], gamma: float = 0.1,
                            warmup_iters: int = 0, warmup_factor: float = 0.1,
                            warmup_method: str = "linear") -> float:
    """The multiplier applied to the base learning rate at (0-based) ``iteration``.

    ``linear`` warm-up: ``warmup_factor`` at iteration 0, rising linearly to 1 at ``warmup_iters``;
    ``constant``: ``warmup_factor`` throughout the warm-up. Then ``gamma ** (number of milestones
    <= iteration)``.
    """
    factor = gamma ** bisect_right(list(milestones), iteration)
    if warmup_iters > 0 and iteration < warmup_iters:
        if warmup_method == "linear":
            alpha = iteration / warmup_iters
            factor *= warmup_factor * (1.0 - alpha) + alpha
        elif warmup_method == "constant":
            factor *= warmup_factor
        else:
            raise ConfigError(f"unknown warmup_method {warmup_method!r}; expected 'linear' or 'constant'")
    return factor


class WarmupMultiStepLR(LRScheduler):
    """Linear warm-up then step decay, stepped once per *iteration* (call ``step()`` after each
    ``optimizer.step()``). The learning rate of iteration ``i`` (0-based) is
    ``base_lr * warmup_multistep_factor(i, ...)``; it is computed in closed form, so a scheduler
    restored from ``state_dict()`` continues on exactly the same values."""

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 warmup_iters: int = 0, warmup_factor: float = 0.1, warmup_method: str = "linear",
                 last_epoch: int = -1):
        milestones = [int(m) for m in milestones]
        if milestones != sorted(milestones):
            raise ConfigError(f"milestones must be increasing, got {milestones}")
        if warmup_method not in WARMUP_METHODS:
            raise ConfigError(f"unknown warmup_method {warmup_method!r}; expected 'linear' or 'constant'")
        self.milestones = milestones
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration: Optional[int] = None) -> float:
        it = self.last_epoch if iteration is None else iteration
        return warmup_multistep_factor(it, self.milestones, self.gamma, self.warmup_iters,
                                       self.warmup_factor, self.warmup_method)

    def get_lr(self) -> list[float]:
        f = self.factor()
        return [base * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


def epochs_to_iters(epochs: float, iters_per_epoch: int) -> int:
    """``round(epochs * iters_per_epoch)``, at least 1 for a positive number of epochs."""
    n = int(round(float(epochs) * iters_per_epoch))
    return max(n, 1) if epochs > 0 else 0
