"""Tickets: masks plus rewind weights plus history, as a file and as something to apply."""

from __future__ import annotations

import copy
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import _layout
from .._files import load_state, save_state
from .._validation import check_binary_mask, check_bool, check_module, check_names, check_path, describe
from ..distributed import unwrap
from ..pruning.fixed import FixedMask
from ..pruning.utils import named_prunable_parameters
from ..rewinding.point import RewindPoint
from .checkpoints import TICKET_FORMAT, TICKET_VERSION


@dataclass
class ApplyReport:
    """What :meth:`Ticket.apply` did, tensor by tensor (qualified names).

    Attributes:
        masked: tensors that received the ticket's mask.
        rewound: tensors that received the ticket's rewind values.
        missing: tensors of the ticket that the model does not have.
        mismatched: ``"name: ticket (a, b) vs model (c, d)"`` for shape differences.
        unexpected: prunable tensors of the model that the ticket does not cover.
        excluded: tensors of the ticket left alone because ``exclude`` names them
            (neither masked nor rewound, whether the model has them or not).
    """

    masked: list[str] = field(default_factory=list)
    rewound: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True if every tensor that was not excluded matched in both directions."""
        return not (self.missing or self.mismatched or self.unexpected)


def _match(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], skip: Collection[str]
) -> tuple[list[tuple[str, tuple[nn.Module, str], torch.Tensor]], list[str], dict[str, str]]:
    """Match ``tensors`` with ``model``'s parameters by name and shape: ``(jobs, missing, mismatched)``.

    Names in ``skip`` are passed over; ``mismatched`` maps a name to ``"name: ticket (a, b) vs model (c, d)"``.
    """
    jobs, missing, mismatched = [], [], {}
    for qualified, tensor in tensors.items():
        if qualified in skip:
            continue
        target = _layout.resolve(model, qualified)
        if target is None:
            missing.append(qualified)
            continue
        shape = tuple(_layout.original(*target).shape)
        if shape != tuple(tensor.shape):
            mismatched[qualified] = f"{qualified}: ticket {tuple(tensor.shape)} vs model {shape}"
            continue
        jobs.append((qualified, target, tensor))
    return jobs, missing, mismatched


def _misfit(missing: list[str], mismatched: list[str], hint: str) -> ValueError:
    """Return the error for a ticket that does not fit a model, naming every tensor that does not."""
    problems = [f"missing: {', '.join(missing)}"] if missing else []
    problems += [f"mismatched: {'; '.join(mismatched)}"] if mismatched else []
    return ValueError(f"the ticket does not fit the model ({' | '.join(problems)}){hint}")


def _check_history(history: Any) -> list[dict]:
    if not isinstance(history, (list, tuple)) or not all(isinstance(r, dict) for r in history):
        raise TypeError(f"history must be a list of dicts, got {describe(history)}")
    return [copy.deepcopy(dict(r)) for r in history]


class Ticket:
    """A lottery ticket: the masks, the values to rewind to, and how it was found.

    Returned by :func:`torch_lottery.find_ticket`; save it, load it, and apply it
    to a fresh model of the same architecture (or one whose head differs).

    Args:
        masks (Mapping[str, Tensor]): mask per qualified tensor name (bool or 0/1).
        rewind (RewindPoint or Mapping[str, Tensor]): values the tensors are reset
            to (the pruned weights, and usually every other parameter too).
        history (list of dict): per-round records (see :func:`find_ticket`).
        config (dict): how the ticket was found (strategy, options, seed, ...).

    Raises:
        TypeError, ValueError: on malformed masks, rewind values or history.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import RewindPoint, Ticket
        >>> net = nn.Sequential(nn.Linear(3, 2))
        >>> ticket = Ticket({"0.weight": torch.tensor([[1, 0, 1], [0, 1, 0]])}, RewindPoint.capture(net))
        >>> fresh = nn.Sequential(nn.Linear(3, 2))
        >>> report = ticket.apply(fresh)
        >>> report.masked, torch.equal(fresh[0].weight_orig, ticket.rewind["0.weight"])
        (['0.weight'], True)
    """

    def __init__(
        self,
        masks: Mapping[str, torch.Tensor],
        rewind: RewindPoint | Mapping[str, torch.Tensor],
        history: list[dict] | tuple = (),
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(masks, Mapping):
            raise TypeError(f"masks must be a mapping of name to Tensor, got {describe(masks)}")
        self.masks: dict[str, torch.Tensor] = {}
        for name, mask in masks.items():
            if not isinstance(name, str) or not isinstance(mask, torch.Tensor):
                raise TypeError(f"masks must map str to Tensor, got {describe(name)}: {describe(mask)}")
            self.masks[name] = check_binary_mask(mask, f"masks[{name!r}]").detach().to(torch.bool, copy=True)
        if isinstance(rewind, RewindPoint):
            self.rewind = RewindPoint(dict(rewind.items()), iteration=rewind.iteration)
        else:
            self.rewind = RewindPoint(rewind)
        for name, mask in self.masks.items():
            if name in self.rewind and tuple(self.rewind[name].shape) != tuple(mask.shape):
                raise ValueError(
                    f"rewind[{name!r}] has shape {tuple(self.rewind[name].shape)} but "
                    f"masks[{name!r}] has shape {tuple(mask.shape)}"
                )
        self.history = _check_history(history)
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict, got {describe(config)}")
        self.config = copy.deepcopy(dict(config or {}))

    # -- figures -----------------------------------------------------------------
    @property
    def remaining_weights(self) -> int:
        """Surviving entries over all masks."""
        return sum(int(m.count_nonzero()) for m in self.masks.values())

    @property
    def total_weights(self) -> int:
        """Entries over all masks."""
        return sum(m.numel() for m in self.masks.values())

    @property
    def remaining(self) -> float:
        """Fraction of the masked weights that survive."""
        total = self.total_weights
        return self.remaining_weights / total if total else 1.0

    def __repr__(self) -> str:
        return (
            f"Ticket(tensors={len(self.masks)}, remaining={self.remaining:.4f}, "
            f"rounds={len(self.history)}, strategy={self.config.get('strategy')!r})"
        )

    # -- files -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return the ticket as a plain dict of tensors, numbers and strings."""
        return {
            "format": TICKET_FORMAT,
            "version": TICKET_VERSION,
            "masks": {k: v.cpu() for k, v in self.masks.items()},
            "rewind": self.rewind.state_dict(),
            "history": copy.deepcopy(self.history),
            "config": copy.deepcopy(self.config),
        }

    @classmethod
    def from_state_dict(cls, state: Any, source: str = "state") -> Ticket:
        """Build a ticket from :meth:`state_dict` output, checking its layout."""
        if not isinstance(state, dict) or state.get("format") != TICKET_FORMAT:
            raise ValueError(f"{source} is not a torch-lottery ticket (no format={TICKET_FORMAT!r} field)")
        if type(state.get("version")) is not int or state["version"] != TICKET_VERSION:
            raise ValueError(
                f"{source} has ticket version {state.get('version')!r}; this release reads {TICKET_VERSION}"
            )
        try:
            rewind = RewindPoint.from_state_dict(state["rewind"], source=f"{source} (rewind)")
            return cls(state["masks"], rewind, state["history"], state["config"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source} is a damaged ticket: {type(error).__name__}: {error}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``path`` atomically (temporary file, fsync, rename) with a SHA-256 digest of the content.

        Raises:
            TypeError: if ``path`` is not a str or path-like.
        """
        check_path(path)
        save_state(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu") -> Ticket:
        """Load a ticket saved by :meth:`save`, with ``torch.load(weights_only=True)``.

        Raises:
            TypeError: if ``path`` is not a str or path-like.
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not a ticket, or is damaged or truncated
                (its SHA-256 digest does not match).
        """
        check_path(path)
        state = load_state(path, "ticket", TICKET_FORMAT, (TICKET_VERSION,), map_location=map_location)
        return cls.from_state_dict(state, source=f"path={os.fspath(path)!r}")

    # -- applying ----------------------------------------------------------------
    def _names(self) -> list[str]:
        """Return the qualified names the ticket holds: its masks, then the rewind values of other tensors."""
        return list(self.masks) + [q for q in self.rewind if q not in self.masks]

    def _excluded(self, exclude: Any) -> list[str]:
        """Return the ticket's tensors that ``exclude`` names (qualified names or module prefixes).

        Raises:
            TypeError: if ``exclude`` is not a list of str.
            ValueError: naming the entry, if one names no tensor of the ticket.
        """
        entries = check_names(exclude, "exclude")
        names = self._names()
        chosen: set[str] = set()
        for entry in entries:
            found = {q for q in names if q == entry or q.startswith(entry + ".")}
            if not found:
                shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
                raise ValueError(
                    f"exclude names {entry!r}, which is no tensor name or module prefix of the ticket "
                    f"(its tensors: {shown or 'none'})"
                )
            chosen |= found
        return [q for q in names if q in chosen]

    def _plan(self, model: nn.Module, exclude: Collection[str] = ()) -> tuple[ApplyReport, list, list]:
        """Match the ticket's tensors with ``model``'s by name and shape, without changing it."""
        check_module(model)
        model = unwrap(model)  # a DistributedDataParallel wrapper: its module's names
        report = ApplyReport(excluded=[q for q in self._names() if q in exclude])
        mask_jobs, report.missing, mismatched = _match(model, self.masks, exclude)
        rewind_jobs, missing, rewind_mismatched = _match(model, self.rewind, exclude)
        # a masked tensor the model lacks (or has with another shape) is reported once, for its mask
        report.missing += [q for q in missing if q not in self.masks]
        mismatched.update((q, text) for q, text in rewind_mismatched.items() if q not in self.masks)
        report.mismatched = list(mismatched.values())
        report.unexpected = [q for q, _, _ in named_prunable_parameters(model) if q not in self.masks]
        return report, mask_jobs, rewind_jobs

    def _mask_targets(self, model: nn.Module) -> list[tuple[str, tuple[nn.Module, str], torch.Tensor]]:
        """Return ``(qualified name, (module, name), mask)`` for every mask, all of which must fit ``model``.

        Raises:
            TypeError: if ``model`` is not a module.
            ValueError: naming each tensor the model lacks or has with another shape.
        """
        check_module(model)
        jobs, missing, mismatched = _match(unwrap(model), self.masks, ())
        if missing or mismatched:
            raise _misfit(missing, list(mismatched.values()), "")
        return jobs

    def apply(self, model: nn.Module, strict: bool = True, exclude: Iterable[str] = ()) -> ApplyReport:
        """Prune ``model`` with the ticket's masks and rewind it to the ticket's values.

        Tensors are matched by qualified name. With ``strict=True`` (default) any
        tensor of the ticket that the model lacks, or has with another shape,
        raises ``ValueError`` and nothing changes; with ``strict=False`` the
        matching tensors are applied and the rest reported (e.g. a model with a
        new classification head). Prunable tensors of the model that the ticket
        does not cover are reported as ``unexpected`` and left alone.

        ``exclude`` leaves tensors of the ticket out: each entry is a qualified
        tensor name (``"fc.weight"``) or a module prefix (``"fc"``: every tensor
        of the ticket under ``fc.``, mask and rewind value alike). Excluded
        tensors are neither masked nor rewound; the model keeps them as they
        are, whatever their shape, so a ticket transfers with ``strict=True`` to
        a model with a new head (``exclude=["fc"]``). An entry that names no
        tensor of the ticket is an error.

        A ``DistributedDataParallel`` wrapper is looked through (names are its
        module's). Loading and applying the same ticket file on every rank gives
        every rank the same masks and values; the wrapper keeps syncing the
        gradients (the parameters stay the same objects, moved to ``<name>_orig``).

        Args:
            model (nn.Module): the model to prune and rewind.
            strict (bool): refuse a ticket that does not fit (default), or apply what fits.
            exclude (iterable of str): qualified names or module prefixes to leave alone.

        Returns:
            ApplyReport: what was applied, excluded, missing, mismatched and unexpected.

        Raises:
            TypeError: if ``model`` is not a module, ``strict`` not a bool or
                ``exclude`` not a list of str.
            ValueError: if an ``exclude`` entry names no tensor of the ticket;
                (``strict=True``) on missing or mismatched tensors.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from torch_lottery import RewindPoint, Ticket
            >>> net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
            >>> masks = {"0.weight": torch.tensor([[1, 0, 1], [0, 1, 0]]), "1.weight": torch.eye(2)}
            >>> ticket = Ticket(masks, RewindPoint.capture(net))
            >>> new_head = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 5))
            >>> report = ticket.apply(new_head, exclude=["1"])
            >>> report.masked, report.excluded, hasattr(new_head[1], "weight_mask")
            (['0.weight'], ['1.weight', '1.bias'], False)
        """
        check_bool(strict, "strict")
        excluded = self._excluded(exclude)
        report, mask_jobs, rewind_jobs = self._plan(model, set(excluded))
        if strict and (report.missing or report.mismatched):
            raise _misfit(report.missing, report.mismatched, "; pass strict=False to apply the tensors that match")
        source = f"ticket ({self.config.get('strategy', 'unknown')})"
        for qualified, (module, name), mask in mask_jobs:
            FixedMask.apply(module, name, mask.to(_layout.original(module, name).device), source=source)
            report.masked.append(qualified)
        _layout.write_values([target for _, target, _ in rewind_jobs], [values for _, _, values in rewind_jobs])
        report.rewound.extend(qualified for qualified, _, _ in rewind_jobs)
        return report
