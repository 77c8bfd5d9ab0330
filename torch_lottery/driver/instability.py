"""Instability analysis (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis").

Train the network to iteration k, then train two copies from there with different
data orders (different seeds) for the rest of the run, and walk the straight line
between the two results: the *error barrier* is the highest error on that line
minus the mean error of its two ends. A network is *stable* at k when the barrier
is near zero (the paper: within 2%, its noise level); rewinding to the earliest
stable k is what makes IMP find matching tickets in deep networks.

:func:`instability_analysis` measures the barrier at each of a few iterations with
the user's own ``train``; ``find_ticket(..., rewind_iteration="auto")`` (or an
:class:`AutoRewind`) measures it after the dense run and rewinds to the earliest
stable candidate, recording every barrier in the ticket's history.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .. import _layout
from .._validation import check_bool, check_number, describe

ErrorFn = Callable[[nn.Module], float]

#: The paper's threshold: a barrier within 2% (of error, as a fraction) counts as stable.
STABLE_BARRIER = 0.02


@dataclasses.dataclass(frozen=True)
class AutoRewind:
    """How ``find_ticket(rewind_iteration=AutoRewind(...))`` picks the iteration to rewind to.

    ``rewind_iteration="auto"`` is ``AutoRewind()``. During the dense run the driver
    keeps the state at every candidate iteration; after it, from the earliest
    candidate on, it trains two copies from that state with different seeds (data
    orders) for the rest of the dense run's length, measures the error barrier on
    ``points`` points of the line between them, and rewinds to the first candidate
    whose barrier is at most ``threshold``. If none is stable, it rewinds to the
    candidate with the smallest barrier and warns. Each measured candidate costs
    two training runs of ``T - k`` iterations (``T``: the dense run's length) and
    keeps one copy of the model in memory during the dense run.

    Args:
        candidates (iterable of int, optional): iterations to consider; default:
            0 and every power of two up to half the dense run's length.
        threshold (float): the largest barrier that counts as stable, >= 0
            (default 0.02, the paper's).
        points (int): points on the line, ends included, >= 2 (default 11; the paper
            uses 30).
        error (callable, optional): ``error(model) -> float``, lower is better (e.g.
            the test error as a fraction); the model is in eval mode when called.
            Default: the classification error (argmax) on ``find_ticket``'s ``data=``.
        first_stable (bool): stop at the first stable candidate (default True);
            False measures every candidate.

    Raises:
        TypeError, ValueError: on a bad option, naming it.

    Examples:
        >>> AutoRewind(candidates=[100, 0, 10]).candidates
        (0, 10, 100)
        >>> AutoRewind(threshold=-1)
        Traceback (most recent call last):
        ...
        ValueError: threshold=-1 must be >= 0
    """

    candidates: tuple[int, ...] | None = None
    threshold: float = STABLE_BARRIER
    points: int = 11
    error: ErrorFn | None = None
    first_stable: bool = True

    def __post_init__(self) -> None:
        if self.candidates is not None:
            object.__setattr__(self, "candidates", check_iterations(self.candidates, "candidates"))
        object.__setattr__(self, "threshold", float(check_number(self.threshold, "threshold", low=0.0)))
        object.__setattr__(self, "points", int(check_number(self.points, "points", integer=True, low=2)))
        if self.error is not None and not callable(self.error):
            raise TypeError(f"error must be callable as error(model) -> float, got {describe(self.error)}")
        check_bool(self.first_stable, "first_stable")

    def options(self) -> dict[str, Any]:
        """Return the options as plain values (``error`` by its name), for configs and checkpoints."""
        error = None if self.error is None else getattr(self.error, "__qualname__", type(self.error).__qualname__)
        return {
            "candidates": None if self.candidates is None else list(self.candidates),
            "threshold": self.threshold,
            "points": self.points,
            "error": error,
            "first_stable": self.first_stable,
        }

    def default_candidates(self, length: int) -> tuple[int, ...]:
        """Return the candidates to measure for a dense run of ``length`` iterations (those before its end)."""
        if self.candidates is not None:
            return tuple(k for k in self.candidates if k < length)
        out, k = [0], 1
        while k <= length // 2:
            out.append(k)
            k *= 2
        return tuple(out)


def check_iterations(value: Any, name: str) -> tuple[int, ...]:
    """Check a non-empty iterable of iterations (ints >= 0); return them sorted, without repeats."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be an iterable of iterations (int >= 0), got {describe(value)}")
    items = list(value)
    if not items:
        raise ValueError(f"{name} is empty: give at least one iteration")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or int(item) < 0:
            raise ValueError(f"{name} holds {describe(item)}; iterations are ints >= 0")
    return tuple(sorted({int(i) for i in items}))


@dataclasses.dataclass(frozen=True)
class Instability:
    """The error barrier between two copies trained from iteration ``iteration``.

    Attributes:
        iteration: the iteration k both copies started from.
        barrier: ``max(errors) - (errors[0] + errors[-1]) / 2`` (the paper's instability).
        errors: the error at each point of the line, from the first copy to the second.
        alphas: the interpolation weight of the second copy at each point.
        stable: ``barrier <= threshold``.
        iterations: how many iterations each copy trained.
    """

    iteration: int
    barrier: float
    errors: tuple[float, ...]
    alphas: tuple[float, ...]
    stable: bool
    iterations: int

    def as_record(self) -> dict[str, Any]:
        """Return the plain dict the ticket's history keeps."""
        return {**dataclasses.asdict(self), "errors": list(self.errors), "alphas": list(self.alphas)}


def classification_error(data: Iterable[Any]) -> ErrorFn:
    """Return ``error(model)``: the fraction of ``(inputs, targets)`` in ``data`` whose argmax is wrong.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2))
        >>> classification_error([(torch.eye(2), torch.tensor([0, 0]))])(model)
        0.5
    """

    def error(model: nn.Module) -> float:
        wrong = total = 0
        with torch.no_grad():
            for inputs, targets in data:
                device = next((t.device for t in model.parameters()), torch.device("cpu"))
                output = model(inputs.to(device))
                wrong += int((output.argmax(dim=-1) != targets.to(device)).sum())
                total += int(targets.numel())
        if total == 0:
            raise ValueError("data holds no examples: the error is undefined")
        return wrong / total

    return error


def error_barrier(
    model: nn.Module,
    first: dict[str, torch.Tensor],
    second: dict[str, torch.Tensor],
    error: ErrorFn,
    points: int,
) -> tuple[float, list[float], list[float]]:
    """Return (barrier, errors, alphas) on the line from state ``first`` to ``second`` of ``model``.

    The states are :func:`torch_lottery._layout.snapshot` dicts; every floating
    parameter and buffer is interpolated (integer buffers, e.g. BatchNorm's counts,
    are taken from ``first``; masks are left as they are). The model is left at
    whatever state the caller restores; it is evaluated in eval mode.
    """
    alphas = [i / (points - 1) for i in range(points)]
    errors: list[float] = []
    training = model.training
    model.eval()
    try:
        for alpha in alphas:
            state = {
                q: torch.lerp(a, second[q], alpha) if a.is_floating_point() or a.is_complex() else a
                for q, a in first.items()
            }
            _layout.load_snapshot(model, state)
            value = error(model)
            if isinstance(value, torch.Tensor):
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"error(model) must return a number, got {describe(value)}")
            errors.append(float(value))
    finally:
        model.train(training)
    barrier = max(errors) - (errors[0] + errors[-1]) / 2
    return barrier, errors, alphas


def instability_analysis(
    model: nn.Module,
    train: Callable[[nn.Module, Any], Any],
    error: ErrorFn | None = None,
    *,
    iterations: Iterable[int] | None = None,
    points: int = 11,
    threshold: float = STABLE_BARRIER,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    data: Iterable[Any] | None = None,
    seed: int = 0,
) -> list[Instability]:
    """Measure the error barrier at iterations ``iterations`` of training with your own ``train``.

    ``train(model, context)`` runs your loop once, as for :func:`find_ticket` (count
    steps with ``context.step()`` or pass ``optimizer=``). The model first trains
    once (the reference run, seed ``seed``), keeping its state at each iteration k;
    then, for each k, two copies start from that state (weights, buffers, and the
    optimizer's and scheduler's state if you pass them) and train with two other
    seeds (your loop's data order must follow ``context.seed`` or torch's global
    RNG, which the driver seeds) for the rest of the reference run's length; the
    barrier is measured on the line between them. A pruned model is analysed with
    its masks fixed (the instability of a subnetwork). The model, optimizer and
    scheduler are left as they were given.

    Args:
        model (nn.Module): the network at its initialization (pruned or not).
        train (callable): ``train(model, context)``, your training loop.
        error (callable, optional): ``error(model) -> float`` (lower is better),
            called in eval mode; default: the classification error on ``data``.
        iterations (iterable of int, optional): the iterations k; default: 0 and
            every power of two up to half the run. Those at or after the end of
            the reference run are skipped.
        points (int): points on each line, ends included (default 11).
        threshold (float): the barrier at or below which k counts as stable (0.02).
        optimizer (optional): as for :func:`find_ticket`.
        scheduler (optional): as for :func:`find_ticket`.
        data (iterable, optional): ``(inputs, targets)`` batches for the default error.
        seed (int): the reference run's seed; the copies' seeds derive from it.

    Returns:
        list[Instability]: one per measured k, in increasing k.

    Raises:
        ValueError: without ``error`` and ``data``, or on a bad argument (nothing trains).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import torch_lottery as tl
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> def train(model, context):
        ...     opt = torch.optim.SGD(model.parameters(), lr=0.1)
        ...     for _ in range(8):
        ...         i = torch.randint(0, 32, (8,))  # the data order follows the seed
        ...         opt.zero_grad()
        ...         nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        ...         opt.step()
        ...         context.step()
        >>> results = tl.instability_analysis(nn.Linear(4, 2), train, data=[(x, y)], iterations=[0, 4])
        >>> [r.iteration for r in results], results[0].iterations
        ([0, 4], 8)
    """
    from .find import find_ticket

    plan = AutoRewind(
        candidates=None if iterations is None else check_iterations(iterations, "iterations"),
        threshold=threshold,
        points=points,
        error=error,
        first_stable=False,
    )
    saved = _layout.snapshot(model)
    saved_optimizer = None if optimizer is None else copy.deepcopy(optimizer.state_dict())
    saved_scheduler = None if scheduler is None else copy.deepcopy(scheduler.state_dict())
    try:
        ticket = find_ticket(
            model,
            train,
            rounds=0,
            rewind_iteration=plan,
            optimizer=optimizer,
            scheduler=scheduler,
            data=data,
            seed=seed,
        )
    finally:
        _layout.load_snapshot(model, saved)
        if optimizer is not None and saved_optimizer is not None:
            optimizer.load_state_dict(saved_optimizer)
        if scheduler is not None and saved_scheduler is not None:
            scheduler.load_state_dict(saved_scheduler)
    records = ticket.history[0]["instability"]
    return [Instability(**{**r, "errors": tuple(r["errors"]), "alphas": tuple(r["alphas"])}) for r in records]
