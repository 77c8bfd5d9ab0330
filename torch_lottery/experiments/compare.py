"""``torch-lottery compare``: several strategies on one setup and the same seeds, against weights remaining.

For every seed, every strategy of the list finds its tickets with the runner
(:class:`~torch_lottery.experiments.runner.RunConfig`,
:func:`~torch_lottery.experiments.runner.run_replicate`) on the same data, model and
training setup:

- ``imp`` and ``random`` (pruning between rounds): one run, with rounds until at most
  the smallest density is left (and two more); every round is a point of the curve;
- ``magnitude_init``, ``snip``, ``grasp`` and ``synflow`` (pruning at initialization):
  one training per density (their option ``remaining``);
- ``one_shot`` and ``early_bird`` (``remaining``): one run per density, a dense run
  (early-bird: until its masks settle) and the ticket's training;
- ``rigl``, ``set`` and ``sparse_momentum`` (``density``): one run per density, the masks
  moved every :func:`~torch_lottery.experiments.families.dynamic_every` steps.

Each point holds the density the run reached, the test accuracy (at the end and at the
early-stopping iteration) and the compute that obtained the ticket, read from the driver's
record of each round (``Ticket.history``: ``metrics["iterations"]``, ``seconds``): ``steps``,
the optimizer steps of every training that led to it (IMP at round ``r``: rounds 0 to ``r``;
early-bird: its dense run and the ticket's), ``search_steps`` (those before the ticket's own
training), ``scoring_batches`` (the data batches an at-initialization score used: no training
step) and ``seconds``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .._files import committed_path
from .._validation import check_choice, check_fraction, check_number, check_writable_dir, describe
from .._version import __version__
from ..driver.run import registered
from ..plugins.hookspecs import hookimpl
from .families import DYNAMIC, _imp_rounds, _mean_std, _seeds, dynamic_every
from .options import parse_options
from .report import _csv_text, pyplot, save_plot, write_output_set
from .runner import DATASET_VALIDATION, METRICS, RATED, RunConfig, Trainer, resolve_setup, run_replicate

#: File names of a comparison's output directory.
COMPARE_JSON, COMPARE_CSV, COMPARE_PNG = "compare.json", "compare.csv", "compare.png"
#: Strategies that prune between rounds: one run, every round a point of the curve.
ROUNDS = ("imp", "random")
#: Strategies run once per density, and the option that sets it.
TARGET_OPTION = {
    "magnitude_init": "remaining",
    "snip": "remaining",
    "grasp": "remaining",
    "synflow": "remaining",
    "one_shot": "remaining",
    "early_bird": "remaining",
    "rigl": "density",
    "set": "density",
    "sparse_momentum": "density",
}
#: Strategies of :data:`TARGET_OPTION` whose run trains the dense network before the ticket.
DENSE_FIRST = ("one_shot", "early_bird")
#: Every strategy the comparison runs.
STRATEGIES = ROUNDS + tuple(TARGET_OPTION)
#: The default list: IMP, pruning at initialization with data and without, early-bird, dynamic sparse training.
DEFAULT_STRATEGIES = ("imp", "snip", "grasp", "synflow", "early_bird", "rigl", "set", "sparse_momentum")
DEFAULT_DENSITIES = (0.5, 0.2, 0.1, 0.05, 0.02)
#: The :class:`RunConfig` fields a comparison takes as they are (the strategy, its options and the rounds it sets).
SETTINGS = (
    "dataset",
    "model",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "device",
    "data_root",
    "download",
    "validation",
    "evals_per_epoch",
)
#: What a point holds besides the figures of :data:`METRICS`.
POINT_FIELDS = ("strategy", "seed", "target", "round", "density", "steps", "search_steps", "scoring_batches", "seconds")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- arguments ----------------------------------------------------------------------------
def check_strategies(names: Any, argument: str = "strategies") -> list[str]:
    """Check the strategies of a comparison: names of :data:`STRATEGIES`, each once.

    Args:
        names (list of str): the strategies.
        argument (str): how errors name them (the command line: ``"--strategies"``).

    Returns:
        list: the names.

    Raises:
        TypeError: if ``names`` is not a list of str.
        ValueError: on an empty list, a repeated name, or a name outside :data:`STRATEGIES`
            (a registered strategy without a density to compare at is told so).

    Examples:
        >>> check_strategies(["imp", "snip"])
        ['imp', 'snip']
        >>> check_strategies(["edge_popup"], "--strategies")
        Traceback (most recent call last):
        ...
        ValueError: --strategies='edge_popup' is a registered strategy without a density to compare at; ...
    """
    from ..plugins.manager import list_strategies

    if isinstance(names, str) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{argument} must be a list of strategy names, got {describe(names)}")
    if not names:
        raise ValueError(f"{argument} is empty: name at least one of {', '.join(STRATEGIES)}")
    for name in names:
        if name not in STRATEGIES and name in list_strategies():
            raise ValueError(
                f"{argument}={name!r} is a registered strategy without a density to compare at; "
                f"compare runs {', '.join(STRATEGIES)}"
            )
        check_choice(name, STRATEGIES, argument)
        if list(names).count(name) > 1:
            raise ValueError(f"{argument}: {name!r} is given twice")
    return list(names)


def check_densities(values: Any, argument: str = "densities") -> list[float]:
    """Check the densities of a comparison: fractions of the weights kept, in (0, 1), each once.

    Args:
        values (list of float): the densities.
        argument (str): how errors name them (the command line: ``"--densities"``).

    Returns:
        list: the densities as floats.

    Raises:
        TypeError: if ``values`` is not a list of numbers.
        ValueError: on an empty list, a repeated value or one outside (0, 1).

    Examples:
        >>> check_densities([0.5, 0.1])
        [0.5, 0.1]
        >>> check_densities([0.5, 1.0], "--densities")
        Traceback (most recent call last):
        ...
        ValueError: --densities=1.0 must be in (0, 1)
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{argument} must be a list of fractions, got {describe(values)}")
    if not values:
        raise ValueError(f"{argument} is empty: give at least one fraction of the weights to keep, e.g. 0.1")
    checked = [check_fraction(value, argument, low_open=True, high_open=True) for value in values]
    for value in checked:
        if checked.count(value) > 1:
            raise ValueError(f"{argument}: {value:g} is given twice")
    return checked


def parse_strategy_options(
    texts: Sequence[str], strategies: Sequence[str], argument: str = "--strategy-option"
) -> dict[str, dict[str, Any]]:
    """Parse ``STRATEGY.KEY=VALUE`` texts into options per strategy (values read as in ``options.parse_option``).

    Args:
        texts (list of str): the options as written, e.g. ``["rigl.every=50"]``.
        strategies (list of str): the compared strategies; an option for another is refused.
        argument (str): the flag they came from, named in errors.

    Returns:
        dict: ``{strategy: {key: value}}``.

    Raises:
        TypeError: if a text is not a str.
        ValueError: on a malformed text, a strategy not compared, or a key given twice.

    Examples:
        >>> parse_strategy_options(["rigl.every=50", "imp.rate=0.5"], ["imp", "rigl"])
        {'rigl': {'every': 50}, 'imp': {'rate': 0.5}}
    """
    grouped: dict[str, list[str]] = {}
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"{argument} must be STRATEGY.KEY=VALUE text, got {describe(text)}")
        strategy, dot, rest = text.partition(".")
        if not dot or not strategy.strip() or "=" in strategy:
            raise ValueError(f"{argument} {text!r}: write STRATEGY.KEY=VALUE, e.g. rigl.every=50")
        if strategy.strip() not in strategies:
            raise ValueError(
                f"{argument} {text!r}: {strategy.strip()!r} is not a compared strategy ({', '.join(strategies)})"
            )
        grouped.setdefault(strategy.strip(), []).append(rest)
    return {name: parse_options(rest, f"{argument} {name}.") for name, rest in grouped.items()}


def _check_options(options: Any, strategies: list[str], argument: str) -> dict[str, dict[str, Any]]:
    """Check ``{strategy: {key: value}}``: compared strategies, and none of the keys compare sets."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
        raise TypeError(f"{argument} must be a dict of dicts {{strategy: {{key: value}}}}, got {describe(options)}")
    checked: dict[str, dict[str, Any]] = {}
    for name, given in options.items():
        if name not in strategies:
            raise ValueError(f"{argument}: {name!r} is not a compared strategy ({', '.join(strategies)})")
        key = TARGET_OPTION.get(name)
        if key in given:
            raise ValueError(f"{argument} {name}.{key}: compare sets it from the densities")
        checked[name] = dict(given)
    return checked


@dataclasses.dataclass
class _Job:
    """One run per seed: a strategy at a target density (None: a rounds strategy, every round a point)."""

    strategy: str
    target: float | None
    config: RunConfig

    def trainings(self) -> int:
        """The trainings of one run (for the progress estimate)."""
        if self.target is None:
            return self.config.rounds + 1
        return 2 if self.strategy in DENSE_FIRST else 1


def _checked(config: RunConfig, given: Mapping[str, Any], argument: str) -> RunConfig:
    """Check ``config``; a refusal of the user's options names them as ``argument`` STRATEGY.KEY."""
    if config.strategy_options:
        strategy = config.strategy
        config.check_strategy_options(
            lambda key: f"{argument} {strategy}.{key}" if key in given else f"{strategy}'s {key} (set by compare)"
        )
    config.check()
    return config


def _jobs(
    strategies: list[str],
    densities: list[float],
    options: dict[str, dict[str, Any]],
    base: RunConfig,
    argument: str,
    every: int | None = None,
    model: torch.nn.Module | None = None,
) -> list[_Job]:
    """The checked runs of one seed (with ``every`` and ``model``: the dynamic interval and IMP's rounds set)."""
    jobs = []
    for name in strategies:
        given = options.get(name, {})
        if name in ROUNDS:
            config = _checked(dataclasses.replace(base, strategy=name, strategy_options=given or None), given, argument)
            if model is not None:
                config.rounds = _imp_rounds(min(densities), _rate(config, model))
            jobs.append(_Job(name, None, config))
            continue
        for density in densities:
            chosen = {**given, TARGET_OPTION[name]: density}
            if every is not None and name in DYNAMIC:
                chosen.setdefault("every", every)
            config = dataclasses.replace(base, strategy=name, strategy_options=chosen, rounds=1)
            jobs.append(_Job(name, density, _checked(config, given, argument)))
    return jobs


def _strategy(config: RunConfig, model: torch.nn.Module, steps: int = 1) -> Any:
    """The strategy of ``config``'s run, built from the options the runner gives it."""
    from ..plugins.manager import get_strategy

    factory = get_strategy(config.strategy)
    if config.strategy in RATED:
        return factory(**resolve_setup(config, model).strategy_options)
    return factory(**config._options_for(factory, steps))


def _rate(config: RunConfig, model: torch.nn.Module) -> float:
    """The per-round rate of a rounds strategy's run (IMP: the paper's for the model, or the one given)."""
    return float(_strategy(config, model).options()["rate"])


# -- the comparison ---------------------------------------------------------------------------
class _Rounds:
    """Observer plugin: each round's compute, from the driver's record (``metrics["iterations"]``, ``seconds``)."""

    def __init__(self) -> None:
        self.compute: dict[int, tuple[int, float]] = {}

    @hookimpl
    def torch_lottery_round_end(self, round_index: int, record: dict[str, Any]) -> None:
        self.compute[round_index] = (int(record["metrics"]["iterations"]), float(record["seconds"]))


def _run(job: _Job, data: Any, seed: int, build: Callable[[], torch.nn.Module]) -> tuple[list[dict], dict]:
    """Run ``job`` for ``seed``: the runner's records of the ticket's rounds, in order, and each round's compute."""
    observer = _Rounds()
    with registered((observer,)):
        records = run_replicate(job.config, data, seed, build)
    return sorted((r for r in records if r["kind"] == "ticket"), key=lambda r: r["round"]), observer.compute


def _point(
    strategy: str,
    seed: int,
    target: float | None,
    record: dict[str, Any],
    compute: Mapping[int, tuple[int, float]],
    scoring: int,
) -> dict[str, Any]:
    """One point: the runner's ``record`` of a round, and the compute of every round up to it."""
    spent = [compute[r] for r in range(record["round"] + 1)]
    return {
        "strategy": strategy,
        "seed": seed,
        "target": target,
        "round": record["round"],
        "density": record["remaining"],
        **{m: record[m] for m in METRICS},
        "steps": sum(steps for steps, _ in spent),
        "search_steps": sum(steps for steps, _ in spent[:-1]),
        "scoring_batches": scoring,
        "seconds": round(sum(seconds for _, seconds in spent), 3),
    }


def run_compare(
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    seeds: int = 3,
    *,
    strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
    options_argument: str = "strategy_options",
    log: Callable[[str], None] | None = _stderr,
    **settings: Any,
) -> dict[str, Any]:
    """Run several strategies on one setup with the same seeds; return every point with its compute.

    Every argument (each strategy's options too, by the strategy itself) is checked
    before any data is read. The dense reference is IMP's round 0, or (without
    ``imp``) one dense training per seed.

    Args:
        strategies (list of str): names of :data:`STRATEGIES` (default :data:`DEFAULT_STRATEGIES`).
        densities (list of float): fractions of the weights kept, in (0, 1).
        seeds (int): seeds ``seed`` .. ``seed + seeds - 1``.
        strategy_options (dict, optional): ``{strategy: {key: value}}`` over each
            strategy's defaults (IMP's over the paper's setup); the density option
            (``remaining``, ``density``) is set by the comparison.
        options_argument (str): how errors name ``strategy_options`` (the command
            line: ``"--strategy-option"``).
        log (callable, optional): where progress lines go (default: stderr; None: nowhere).
        **settings: the :class:`RunConfig` fields of :data:`SETTINGS` (``dataset``,
            ``model``, ``epochs``, ...; default: the runner's).

    Returns:
        dict: ``settings``, ``versions``, ``data``, ``dense`` (one point per seed),
        ``points`` (one per strategy, seed and density: see :data:`POINT_FIELDS` and
        :data:`~torch_lottery.experiments.runner.METRICS`) and ``seconds``.

    Raises:
        TypeError, ValueError: on a bad argument, naming it, before anything trains.

    Examples:
        >>> result = run_compare(["imp", "snip"], [0.5], seeds=1, epochs=1, log=None)
        >>> [(p["strategy"], p["round"]) for p in result["points"]][:2]
        [('imp', 1), ('imp', 2)]
        >>> snip = [p for p in result["points"] if p["strategy"] == "snip"][0]
        >>> snip["density"], snip["search_steps"], snip["scoring_batches"]
        (0.5, 0, 1)
    """
    strategies = check_strategies(strategies)
    densities = check_densities(densities)
    seeds = check_number(seeds, "seeds", integer=True, low=1)
    for key in settings:
        if key not in SETTINGS:
            raise TypeError(
                f"run_compare got {key}={describe(settings[key])}: it takes {', '.join(SETTINGS)} "
                "(the strategy, its options, rounds and controls are set by the comparison)"
            )
    options = _check_options(strategy_options, strategies, options_argument)
    base = RunConfig(**settings, strategy="imp", rounds=0, controls=(), replicates=1, progress=False)
    base.check()
    _jobs(strategies, densities, options, base, options_argument)  # every option checked before any data is read
    from .data import load_dataset
    from .models import build_model

    started = time.perf_counter()
    validation = base.validation if base.validation is not None else DATASET_VALIDATION.get(base.dataset, 5000)
    data = load_dataset(
        base.dataset, root=base.data_root, download=base.download, validation=validation, seed=base.seed
    ).to(base.device)

    def build() -> torch.nn.Module:
        return build_model(base.model, data.input_shape, data.num_classes).to(base.device)

    torch.manual_seed(base.seed)
    model = build()
    setup = resolve_setup(base, model)
    trainer = Trainer(data, setup, base.evals_per_epoch, False)
    trainer._optimizer(model)  # the first optimizer imports torch._dynamo (seconds): not in any run's time
    steps = trainer.steps()
    jobs = _jobs(strategies, densities, options, base, options_argument, dynamic_every(steps), model)
    if "imp" not in strategies:
        jobs.insert(0, _Job("dense", None, base))  # imp, rounds=0: the dense reference
    resolved: dict[str, dict[str, Any]] = {}
    for job in jobs:
        strategy = _strategy(job.config, model, steps)
        scoring = int(strategy.options().get("batches", 0)) if getattr(strategy, "when", "") == "at_init" else 0
        shown = {k: v for k, v in strategy.options().items() if k != TARGET_OPTION.get(job.strategy)}
        resolved[job.strategy] = {"options": shown, "scoring_batches": scoring, "rounds": job.config.rounds}
    per_seed = sum(job.trainings() for job in jobs)
    seed_list = list(range(base.seed, base.seed + seeds))
    out: dict[str, Any] = {
        "settings": {
            "strategies": strategies,
            "densities": densities,
            "seeds": seed_list,
            "config": {k: getattr(base, k) for k in SETTINGS},
            "setup": {k: v for k, v in dataclasses.asdict(setup).items() if k != "strategy_options"},
            "steps_per_training": steps,
            "strategy": resolved,
        },
        "versions": {"torch_lottery": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "data": {
            "name": data.name,
            "train": len(data.train_x),
            "validation": len(data.val_x),
            "test": len(data.test_x),
        },
        "dense": [],
        "points": [],
    }
    done = 0
    for seed in seed_list:
        for job in jobs:
            begun = time.perf_counter()
            if log is not None and job.target is None and job.config.rounds:
                log(f"seed {seed} {job.strategy}: the dense run and {job.config.rounds} rounds, one training each ...")
            rounds, compute = _run(job, data, seed, build)
            if job.strategy in ("imp", "dense"):
                out["dense"].append(_point("dense", seed, None, rounds[0], compute, 0))
            scoring = resolved[job.strategy]["scoring_batches"]
            chosen = [] if job.strategy == "dense" else rounds[1:] if job.target is None else rounds[-1:]
            points = [_point(job.strategy, seed, job.target, r, compute, scoring) for r in chosen]
            out["points"] += points
            done += job.trainings()
            if log is not None:
                elapsed = time.perf_counter() - started
                left = elapsed / done * (per_seed * seeds - done)
                last = points[-1] if points else out["dense"][-1]
                where = "" if job.target is None else f" at {job.target:g}"
                log(
                    f"[{done}/{per_seed * seeds} trainings] seed {seed} {job.strategy}{where}: "
                    f"{100 * last['density']:.1f}% of the weights, test accuracy {100 * last['test_accuracy']:.2f}%, "
                    f"{last['steps']} steps ({time.perf_counter() - begun:.1f} s; {elapsed:.0f} s in all, "
                    f"about {left:.0f} s left)"
                )
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


# -- tables, files, plots ---------------------------------------------------------------------
def _values(points: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    values = [p[metric] for p in points if p.get(metric) is not None]
    return [float(v) for v in values if not math.isnan(float(v))]


def summarize(result: Mapping[str, Any], metric: str = "test_accuracy") -> list[dict[str, Any]]:
    """Aggregate the points of a :func:`run_compare` result over the seeds: one row per strategy and density.

    The dense reference comes first; a rounds strategy (``imp``, ``random``) has a
    row per round, the others a row per target density.

    Args:
        result (dict): what :func:`run_compare` returned (or ``compare.json``).
        metric (str): one of :data:`~torch_lottery.experiments.runner.METRICS`.

    Returns:
        list of dict: ``strategy``, ``target``, ``round``, ``n``, ``density`` (mean),
        ``values`` (the seeds'), ``mean``, ``std``, ``min``, ``max`` (None without
        values), and the means of ``steps``, ``search_steps``, ``seconds``.

    Raises:
        ValueError: if ``metric`` is not one of METRICS.

    Examples:
        >>> point = {"strategy": "snip", "seed": 0, "target": 0.5, "round": 1, "density": 0.5,
        ...          "test_accuracy": 0.9, "steps": 10, "search_steps": 0, "seconds": 1.0}
        >>> row = summarize({"dense": [], "points": [point, {**point, "seed": 1, "test_accuracy": 0.8}]})[0]
        >>> row["n"], round(row["mean"], 2), row["values"]
        (2, 0.85, [0.9, 0.8])
    """
    check_choice(metric, METRICS, "metric")
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for point in [*result["dense"], *result["points"]]:
        key = point["round"] if point["target"] is None else point["target"]
        groups.setdefault((point["strategy"], key), []).append(point)
    rows = []
    for (strategy, _), points in groups.items():
        values = _values(points, metric)
        rows.append(
            {
                "strategy": strategy,
                "target": points[0]["target"],
                "round": points[0]["round"],
                "n": len(points),
                "density": statistics.fmean(p["density"] for p in points),
                "values": values,
                "mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                **{k: statistics.fmean(p[k] for p in points) for k in ("steps", "search_steps", "seconds")},
            }
        )
    return rows


def _table_rows(result: Mapping[str, Any], metric: str) -> list[dict[str, Any]]:
    """The table's rows: dense, then per strategy and density (a rounds strategy: the round nearest it)."""
    rows = summarize(result, metric)
    chosen = [r for r in rows if r["strategy"] == "dense"]
    for name in result["settings"]["strategies"]:
        mine = [r for r in rows if r["strategy"] == name]
        for density in result["settings"]["densities"]:
            if name in ROUNDS:
                candidates = [r for r in mine if r["round"] >= 1]
                if candidates:
                    nearest = min(candidates, key=lambda r: abs(math.log(r["density"] / density)))
                    chosen.append({**nearest, "target": density})
            else:
                chosen += [r for r in mine if r["target"] == density]
    return chosen


def table(result: Mapping[str, Any], metric: str = "test_accuracy") -> str:
    """Render a :func:`run_compare` result: per strategy and density, mean ± std over seeds, the seeds, compute.

    Args:
        result (dict): what :func:`run_compare` returned (or ``compare.json``).
        metric (str): one of :data:`~torch_lottery.experiments.runner.METRICS`.

    Returns:
        str: the table (accuracies in %).

    Examples:
        >>> point = {"strategy": "snip", "seed": 0, "target": 0.5, "round": 1, "density": 0.5,
        ...          "test_accuracy": 0.9, "steps": 10, "search_steps": 0, "seconds": 1.0}
        >>> result = {"settings": {"strategies": ["snip"], "densities": [0.5]}, "dense": [], "points": [point]}
        >>> print(table(result).splitlines()[-1])
        snip                 50.0       50.0   90.00 ± 0.00  90.0                    10        0      1.0
    """
    scale = 100.0 if metric.startswith("test_accuracy") else 1.0
    header = f"{'strategy':<16} {'target %':>8} {'weights %':>10}  {metric:>13}  {'seeds':<18} {'steps':>7} "
    header += f"{'search':>8} {'seconds':>8}"
    n = len(result["settings"].get("seeds") or {p["seed"] for p in [*result["dense"], *result["points"]]})
    lines = [
        f"{metric.replace('_', ' ')}{' %' if scale == 100 else ''}: mean ± std over {n} seeds, then the seeds' "
        "values; compute per ticket (mean): optimizer steps of every training that led to it, those before its "
        "own training (search), seconds",
        "",
        header,
    ]
    for row in _table_rows(result, metric):
        target = 100.0 if row["strategy"] == "dense" else 100 * row["target"]
        figure = _mean_std(row["values"], scale) if row["values"] else f"{'-':>13}"
        lines.append(
            f"{row['strategy']:<16} {target:8.1f} {100 * row['density']:10.1f}  {figure}  "
            f"{_seeds(row['values'], scale):<18} {row['steps']:7.0f} {row['search_steps']:8.0f} "
            f"{row['seconds']:8.1f}"
        )
    return "\n".join(lines)


def plot(result: Mapping[str, Any], path: str, metric: str = "test_accuracy") -> bool:
    """Draw ``metric`` and the steps against weights remaining (log x axis); return False without matplotlib.

    One line per strategy (mean over seeds, band min-max), the dense network dashed.

    Args:
        result (dict): what :func:`run_compare` returned (or ``compare.json``).
        path (str): the PNG file, written atomically.
        metric (str): one of :data:`~torch_lottery.experiments.runner.METRICS`.

    Returns:
        bool: whether the plot was written.

    Examples:
        >>> import os, tempfile
        >>> point = {"strategy": "snip", "seed": 0, "target": 0.5, "round": 1, "density": 0.5,
        ...          "test_accuracy": 0.9, "steps": 10, "search_steps": 0, "seconds": 1.0}
        >>> result = {"settings": {"strategies": ["snip"], "densities": [0.5]}, "dense": [], "points": [point]}
        >>> path = os.path.join(tempfile.mkdtemp(), "compare.png")
        >>> plot(result, path) == os.path.isfile(path)
        True
    """
    return save_plot(_figure(result, metric), path)


def _figure(result: Mapping[str, Any], metric: str = "test_accuracy") -> Any:
    """Return the figure :func:`plot` saves, or None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    from matplotlib import ticker

    scale = 100.0 if metric.startswith("test_accuracy") else 1.0
    rows = summarize(result, metric)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    for name in result["settings"]["strategies"]:
        mine = sorted((r for r in rows if r["strategy"] == name and r["mean"] is not None), key=lambda r: -r["density"])
        if not mine:
            continue
        x = [100 * r["density"] for r in mine]
        (line,) = left.plot(x, [scale * r["mean"] for r in mine], marker="o", markersize=3, label=name)
        if any(r["n"] > 1 for r in mine):
            low, high = [scale * r["min"] for r in mine], [scale * r["max"] for r in mine]
            left.fill_between(x, low, high, alpha=0.15, color=line.get_color())
        right.plot(x, [r["steps"] for r in mine], marker="o", markersize=3, color=line.get_color(), label=name)
    dense = [r for r in rows if r["strategy"] == "dense" and r["mean"] is not None]
    if dense:
        left.axhline(scale * dense[0]["mean"], color="gray", linestyle="--", linewidth=1, label="dense network")
        right.axhline(dense[0]["steps"], color="gray", linestyle="--", linewidth=1, label="dense network")
    plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    marks = sorted({100.0, *(100 * d for d in result["settings"]["densities"])})
    for ax in (left, right):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.FixedLocator(marks))  # the densities compared
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining")
        ax.grid(True, which="both", alpha=0.3)
    right.set_yscale("log")
    right.yaxis.set_major_formatter(plain)
    right.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
    right.yaxis.set_minor_formatter(plain)
    left.set_ylabel(metric.replace("_", " ") + (" (%)" if scale == 100 else ""))
    right.set_ylabel("optimizer steps to obtain the ticket")
    config = result["settings"].get("config", {})
    seeds = len(result["settings"].get("seeds", [])) or len({p["seed"] for p in result["points"]})
    where = f"{config.get('model', '')} on {config.get('dataset', '')}"
    left.set_title(f"{where} ({seeds} seed{'s' * (seeds != 1)}; band: min-max)")
    right.set_title("compute, the searches that led to the ticket included")
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8)
    return fig


def write_outputs(result: Mapping[str, Any], directory: str, metric: str = "test_accuracy") -> dict[str, str]:
    """Write compare.json, compare.csv (one row per point, the dense ones first) and compare.png as one set.

    The three files replace the old ones together (compare.json last), as
    :func:`~torch_lottery.experiments.report.write_outputs` does for a run.

    Args:
        result (dict): what :func:`run_compare` returned.
        directory (str): the output directory (created if needed).
        metric (str): what the plot shows.

    Returns:
        dict: the paths written (``json``, ``csv``, ``plot`` with matplotlib).

    Examples:
        >>> import tempfile
        >>> result = {"settings": {"strategies": [], "densities": [0.5]}, "dense": [], "points": []}
        >>> sorted(write_outputs(result, tempfile.mkdtemp()))
        ['csv', 'json', 'plot']
    """
    texts = {
        COMPARE_CSV: _csv_text({"summary": [*result["dense"], *result["points"]]}),
        COMPARE_JSON: json.dumps(result, indent=1),
    }
    return write_output_set(directory, texts, _figure(result, metric), COMPARE_PNG)


def load_compare(directory: str) -> dict[str, Any]:
    """Read ``compare.json`` of a finished comparison (``torch-lottery compare --report DIR``).

    Args:
        directory (str): the comparison's output directory.

    Returns:
        dict: the result, as :func:`run_compare` returned it.

    Raises:
        FileNotFoundError: if there is no compare.json.
        ValueError: if it is not valid JSON or not a comparison (naming the file and the damage).

    Examples:
        >>> import tempfile
        >>> load_compare(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        FileNotFoundError: ... has no compare.json: is it the output directory of torch-lottery compare?
    """
    path = os.path.join(directory, COMPARE_JSON)
    if os.path.isdir(directory):
        path = committed_path(path)  # the new set's compare.json while a killed write is being completed
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{directory!r} has no {COMPARE_JSON}: is it the output directory of torch-lottery compare?"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not valid JSON: {error}") from None
    settings = result.get("settings") if isinstance(result, dict) else None
    if not isinstance(settings, dict) or not all(isinstance(result.get(k), list) for k in ("dense", "points")):
        raise ValueError(f"{path!r} is not a torch-lottery comparison (no settings, dense and points)")
    for key in ("strategies", "densities"):
        if not isinstance(settings.get(key), list):
            raise ValueError(f"{path!r} is damaged: settings has no list {key}")
    for index, point in enumerate([*result["dense"], *result["points"]]):
        numbers = ("seed", "round", "density", "steps", "search_steps", "seconds")
        bad = [k for k in numbers if isinstance(point.get(k), bool) or not isinstance(point.get(k), (int, float))]
        if not isinstance(point.get("strategy"), str):
            bad.insert(0, "strategy")
        if bad:
            raise ValueError(f"{path!r} is damaged: point {index} has no valid {', '.join(bad)}")
    return result


# -- the command line ---------------------------------------------------------------------------
def command(args: argparse.Namespace) -> int:
    """Run ``torch-lottery compare`` with parsed arguments (see docs/compare.md); return the exit status.

    Every argument is checked (and ``--out`` found writable) before anything trains
    or is written; errors raise ``ValueError``/``TypeError`` naming the flag.

    Args:
        args (argparse.Namespace): from the ``compare`` subparser of ``torch-lottery``.

    Returns:
        int: 0.

    Raises:
        TypeError, ValueError, FileNotFoundError: on a bad argument, naming its flag.

    Examples:
        >>> from torch_lottery.cli import build_parser
        >>> args = build_parser().parse_args(["compare", "--strategies", "imp,nope"])
        >>> command(args)
        Traceback (most recent call last):
        ...
        ValueError: --strategies='nope' is not one of imp, random, ...
    """
    if args.report is not None:
        result = load_compare(args.report)
        paths = write_outputs(result, args.report, args.metric)
    else:
        strategies = check_strategies([s.strip() for s in args.strategies.split(",") if s.strip()], "--strategies")
        try:
            densities = [float(d) for d in args.densities.split(",") if d.strip()]
        except ValueError:
            raise ValueError(
                f"--densities {args.densities!r}: give comma-separated fractions such as 0.1,0.02"
            ) from None
        densities = check_densities(densities, "--densities")
        check_number(args.seeds, "--seeds", integer=True, low=1)
        options = parse_strategy_options(args.strategy_option, strategies)
        out = args.out or f"runs/compare-{args.dataset}-{args.model.replace(':', '-')}"
        check_writable_dir(out, "--out", (COMPARE_JSON, COMPARE_CSV, COMPARE_PNG))
        result = run_compare(
            strategies,
            densities,
            args.seeds,
            strategy_options=options,
            options_argument="--strategy-option",
            **{k: getattr(args, k) for k in SETTINGS},
        )
        paths = write_outputs(result, out, args.metric)
    if args.json:
        print(json.dumps(summarize(result, args.metric)))
    else:
        print(table(result, args.metric))
        print(f"\n{result.get('seconds', 0)} s; wrote {', '.join(paths.values())}")
    return 0
