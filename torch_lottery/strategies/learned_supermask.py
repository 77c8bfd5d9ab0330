"""Built-in plugin: the learned supermask (``learned_supermask``, Zhou et al. 2019).

Zhou, Lan, Liu & Yosinski, "Deconstructing Lottery Tickets: Zeros, Signs, and the
Supermask" (NeurIPS 2019): masks alone can make an untrained, randomly
initialized network perform far better than chance (86% on MNIST, 41% on
CIFAR-10 with masks from the lottery-ticket criteria), and a mask trained
directly does better still. Each weight gets a score ``s``; every forward pass in
training samples the mask ``m ~ Bernoulli(sigmoid(s))``, and the gradient goes
straight through the sample to ``sigmoid(s)`` (the estimator the authors
describe). The density is not set: it is learned with the mask.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from .._validation import check_choice, check_number, describe
from ..plugins.hookspecs import hookimpl
from .supermask import SupermaskStrategy, kaiming_uniform_scores, straight_through

#: How the ticket's mask comes from the trained scores: one seeded Bernoulli sample, or sigmoid(s) > 1/2.
FINAL = ("sample", "threshold")
#: The named score initializations (a number is a constant initialization).
SCORE_INITS = ("kaiming_uniform",)


def _check_score_init(value: Any) -> float | str:
    if isinstance(value, str):
        return check_choice(value, SCORE_INITS, "score_init")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"score_init must be a number (a constant) or 'kaiming_uniform', got {describe(value)}")
    return check_number(value, "score_init")


class LearnedSupermask(SupermaskStrategy):
    """Find a supermask of the frozen initial weights by training Bernoulli mask scores (Zhou et al. 2019).

    Each pruned tensor gets scores ``s`` (its shape). In train mode every forward
    pass samples ``m ~ Bernoulli(sigmoid(s))`` from a generator seeded by the run
    and uses ``module.<name> = <name>_orig * m``; the backward pass treats the
    sample as ``sigmoid(s)`` (straight through), so for an effective weight ``w *
    m`` with loss gradient ``g``::

        d loss / d s = g * w * sigmoid(s) * (1 - sigmoid(s))

    In eval mode the forward pass uses the ``final`` rule. The ticket's density
    is learned: the round's record says what it came to, and :attr:`trace` has,
    per update, the density of the most likely mask (``remaining``) and the
    expected one (``expected``, the mean of ``sigmoid(s)``).

    Args:
        score_init (float or str): the initial scores: a constant (default 0.0,
            so every weight starts kept with probability 1/2, as the authors' code
            ``sigmoid_bias=0``), or ``"kaiming_uniform"`` (as Ramanujan et al.'s
            sampled variant).
        final (str): the ticket's mask: ``"sample"`` (default, as the authors
            evaluate: one Bernoulli sample of ``sigmoid(s)``, drawn from a
            generator seeded by the run) or ``"threshold"`` (the most likely mask,
            ``sigmoid(s) > 1/2``, i.e. ``s > 0``).
        every (int): optimizer steps between two writes of the most likely mask
            into ``<name>_mask`` (default 10).
        freeze (str): ``"all"`` (every parameter of the model, the default, as the
            paper) or ``"pruned"`` (the pruned tensors only).

    Raises:
        TypeError, ValueError: naming the option and its value.

    Examples:
        >>> from torch_lottery import get_strategy
        >>> strategy = get_strategy("learned_supermask")(final="threshold")
        >>> strategy.options()
        {'score_init': 0.0, 'final': 'threshold', 'every': 10, 'freeze': 'all'}
    """

    def __init__(
        self, score_init: float | str = 0.0, final: str = "sample", every: int = 10, freeze: str = "all"
    ) -> None:
        super().__init__(every=every, freeze=freeze)
        self.score_init = _check_score_init(score_init)
        self.final = check_choice(final, FINAL, "final")
        self._seed = 0  # set from the run's generator by prune (see SupermaskStrategy.begin)
        self._generators: dict[torch.device, torch.Generator] = {}
        self._final_generator = torch.Generator()

    def initial_scores(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return the initial scores: the constant ``score_init``, or Kaiming-uniform draws from ``generator``."""
        if isinstance(self.score_init, str):
            return kaiming_uniform_scores(weight, generator)
        return torch.full_like(weight, self.score_init, memory_format=torch.contiguous_format)

    def starting_mask(
        self, scores: torch.Tensor, eligible: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """Return one Bernoulli sample of ``sigmoid(scores)``, drawn from ``generator`` (round 1's starting mask)."""
        return _sample(scores, eligible, generator)

    def current_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None) -> torch.Tensor:
        """Return the most likely mask: ``sigmoid(scores) > 1/2``, i.e. ``scores > 0`` (among ``eligible``)."""
        keep = scores > 0
        return keep if eligible is None else keep & eligible

    def training_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None, training: bool) -> torch.Tensor:
        """Return a Bernoulli sample (train mode, or eval with ``final="sample"``), else the most likely mask.

        Its gradient goes straight through to ``sigmoid(scores)``.
        """
        probability = torch.sigmoid(scores)
        if training or self.final == "sample":
            draw = torch.rand(scores.shape, generator=self._generator(scores.device), device=scores.device)
            hard = draw.to(scores.dtype) < probability.detach()
            hard = hard if eligible is None else hard & eligible
        else:
            hard = self.current_mask(scores, eligible)
        soft = probability if eligible is None else probability * eligible
        return straight_through(hard.to(scores.dtype), soft)

    def final_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None) -> torch.Tensor:
        """Return the ticket's mask as ``final`` says (a sample is drawn from the run's seeded generator)."""
        if self.final == "threshold":
            return self.current_mask(scores, eligible)
        return _sample(scores, eligible, self._final_generator)

    def record(self, scores: dict[int, torch.Tensor]) -> dict[str, Any]:
        """Return the expected density of the masks now: the mean of ``sigmoid(s)`` over every entry."""
        total = sum(s.numel() for s in scores.values())
        expected = sum(float(torch.sigmoid(s.double()).sum()) for s in scores.values())
        return {"expected": expected / total if total else 1.0}

    def options(self) -> dict[str, Any]:
        return {"score_init": self.score_init, "final": self.final, **super().options()}

    def _sampler_seed(self, seed: int) -> None:
        self._seed = seed
        self._generators = {}
        self._final_generator = torch.Generator().manual_seed(seed ^ 0x5EED)

    def _generator(self, device: torch.device) -> torch.Generator:
        generator = self._generators.get(device)
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(self._seed)
            self._generators[device] = generator
        return generator


def _sample(scores: torch.Tensor, eligible: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """One Bernoulli sample of ``sigmoid(scores)`` (bool), drawn on the CPU in float64 from ``generator``."""
    probability = torch.sigmoid(scores.detach().double().cpu())
    keep = (torch.rand(scores.shape, generator=generator, dtype=torch.float64) < probability).to(scores.device)
    return keep if eligible is None else keep & eligible


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``learned_supermask``."""
    register("learned_supermask", LearnedSupermask)
