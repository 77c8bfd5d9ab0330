"""The ``torch-lottery`` command line: the lottery-ticket experiments, tables and plots."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence

from ._validation import check_names, check_writable_dir
from .experiments.runner import METRICS, RunConfig

EPILOG = "Documentation: docs/index.md; results of our reproductions: docs/results.md."
#: Set to a non-empty value to get the traceback of an unexpected error instead of one line.
TRACEBACK_ENV = "TORCH_LOTTERY_TRACEBACK"


#: The flags of ``run`` that set a RunConfig field (by dest), and where each goes.
RUN_FIELDS = {
    **{f.name: f.name for f in dataclasses.fields(RunConfig)},
    "no_progress": "progress",
    "strategy_option": "strategy_options",
}
LAYERS_HELP = "also print the ticket's density per layer and round (mean over the seeds)"


def _registered() -> list[str]:
    """The registered strategy names (plugin conflicts are for ``torch-lottery strategies`` to print)."""
    from .plugins.manager import list_strategies

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return list_strategies()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _controls(text: str) -> tuple[str, ...]:
    from .experiments.runner import CONTROLS

    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in CONTROLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown control {unknown[0]!r}; choose from {', '.join(CONTROLS)}")
    return names


def _logs(text: str) -> tuple[str, ...]:
    from .loggers import LOG_FILES

    try:
        return check_names([part.strip() for part in text.split(",") if part.strip()], "--log", LOG_FILES)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``torch-lottery``."""
    parser = argparse.ArgumentParser(
        prog="torch-lottery",
        description="Find lottery tickets with stock torch.nn.utils.prune and compare them with their controls.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s2 = sub.add_parser(
        "sum-of-two",
        help="the sum-of-two-inputs experiment (seconds)",
        description="IMP with late resetting on a 2-200-1 linear net learning x0 + x1 "
        "(train on [-1,1], test on [1,2]); prints the surviving weights of the "
        "winning ticket and the test RMSE of the ticket, the random-reinit ticket, "
        "the randomly permuted ticket and the full model.",
    )
    s2.add_argument("--seed", type=_positive_int, default=0, help="random seed (default 0)")
    s2.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    s2.add_argument("--out", metavar="DIR", help="also write result.json into DIR")
    s2.add_argument("--device", default="cpu", help="cpu (the network is tiny; the flag exists for symmetry)")

    run = sub.add_parser(
        "run",
        help="IMP (or any registered strategy) with controls on a data set and model (default: MNIST-1D, MLP)",
        description="Iterative magnitude pruning with rewinding (or any registered strategy) on a "
        "torchvision data set or MNIST-1D, with the chosen controls and several seeds; writes "
        "results.json, results.csv and accuracy.png into --out and prints a table. "
        "Defaults follow the LTH paper's setup for the model; --config FILE.toml reads the "
        "settings from a file, and the flags given override it.",
    )
    run.add_argument(
        "--dataset",
        help="mnist1d (generated offline), mnist, fashion-mnist, cifar10 (default mnist1d)",
    )
    run.add_argument(
        "--model",
        help="lenet300100 (MLP 300-100), conv2, conv4, conv6, resnet18, vgg19, or "
        "torchvision:<name> for any torchvision classification model (default lenet300100)",
    )
    run.add_argument("--rounds", type=_positive_int, help="pruning rounds after the dense run (default 15)")
    run.add_argument(
        "--epochs", type=_positive_int, help="epochs per round (default: 30 MNIST-1D, 5 MNIST/Fashion, 20 CIFAR)"
    )
    run.add_argument("--batch-size", type=_positive_int, help="minibatch size (default: the paper's for the model)")
    run.add_argument("--optimizer", choices=("adam", "sgd"), help="optimizer (default: the paper's)")
    run.add_argument("--lr", type=float, help="learning rate (default: the paper's)")
    run.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    run.add_argument("--weight-decay", type=float, help="weight decay (default: the paper's)")
    run.add_argument(
        "--rate", type=float, help="fraction of surviving weights pruned per round (default: the paper's, 0.2)"
    )
    run.add_argument(
        "--scope", choices=("local", "global"), help="local (per layer) or global pruning (default: the paper's)"
    )
    run.add_argument(
        "--output-rate", type=float, help="pruning rate of the output layer (default: the paper's, half the rate)"
    )
    run.add_argument(
        "--rewind-iteration",
        type=_positive_int,
        help="rewind to the weights at this iteration (0 = init; default: the paper's)",
    )
    run.add_argument(
        "--strategy",
        metavar="NAME",
        help=f"the registered strategy that finds the ticket (default imp): {', '.join(_registered())}",
    )
    run.add_argument(
        "--strategy-option",
        action="append",
        metavar="KEY=VALUE",
        help="an option of the strategy, the value read as JSON where it is JSON (rate=0.5, "
        "regrow=true, criterion=magnitude); repeat the flag for several",
    )
    run.add_argument(
        "--controls",
        type=_controls,
        help="comma-separated: reinit, permute, random_pruning, sign_reinit, supermask, or none "
        "(default: the strategy's, reinit,random_pruning for imp and reinit,permute for the others)",
    )
    run.add_argument("--replicates", type=_positive_int, help="seeds per experiment (default 2)")
    run.add_argument("--seed", type=_positive_int, help="first seed (default 0)")
    run.add_argument("--device", help="cpu or cuda (default cpu); data stay resident on it")
    run.add_argument("--data-root", metavar="DIR", help="where torchvision data sets are (or are downloaded to)")
    run.add_argument("--download", action="store_true", help="download torchvision data sets (needs a network)")
    run.add_argument("--validation", type=_positive_int, help="training examples held out for early stopping")
    run.add_argument(
        "--evals-per-epoch",
        type=_positive_int,
        help="validation evaluations per epoch for the early-stopping iteration (default 1)",
    )
    run.add_argument("--out", metavar="DIR", help="output directory (default runs/<dataset>-<model>)")
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start over: remove the state and results a run left in --out (default: a rerun of the same "
        "settings resumes after the last finished training; other settings are refused)",
    )
    run.add_argument(
        "--metric",
        default="test_accuracy",
        choices=METRICS,
        help="what the table and the plot show (default test_accuracy)",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--log",
        type=_logs,
        help="comma-separated loggers of every round: jsonl (log.jsonl), csv (log.csv), tensorboard "
        "(tensorboard/, needs the tensorboard extra), written into --out (default: none)",
    )
    run.add_argument("--layers", action="store_true", help=LAYERS_HELP)
    run.add_argument(
        "--config",
        metavar="FILE",
        help='TOML file of settings: RunConfig\'s fields as keys (rounds = 3, strategy = "snip"), '
        "the strategy's options in a [strategy_options] table; flags given override it",
    )
    for action in run._actions:  # unset unless given: RunConfig's defaults, then --config's, then the flags
        if action.dest in RUN_FIELDS:
            action.default = argparse.SUPPRESS

    report = sub.add_parser(
        "report",
        help="re-render the table and plot of a finished run",
        description="Read DIR/results.json of a finished run, print its table and write its CSV and plot again.",
    )
    report.add_argument("directory", metavar="DIR", help="output directory of a run")
    report.add_argument(
        "--metric",
        default="test_accuracy",
        choices=METRICS,
        help="what the table and the plot show (default test_accuracy)",
    )
    report.add_argument("--layers", action="store_true", help=LAYERS_HELP)

    sub.add_parser(
        "strategies",
        help="list the registered strategies, their plugins and distributions",
        description="List the ticket-finding strategies registered through the plugin hooks: "
        "the name to pass to find_ticket, the plugin and the distribution (and version) that "
        "provide each ('-' for a plugin registered at runtime); then the name conflicts (a "
        "built-in's name stays the built-in, the other strategies get '<plugin>:<name>') and, "
        "on stderr, the plugins that failed to load.",
    )

    from .experiments.compare import DEFAULT_DENSITIES, DEFAULT_STRATEGIES, SETTINGS, STRATEGIES

    compare = sub.add_parser(
        "compare",
        help="several strategies on one setup and the same seeds: accuracy and compute against weights remaining",
        description="Find tickets with several strategies on one data set and model, with the same seeds; "
        "writes compare.json, compare.csv and compare.png (accuracy and training steps against weights "
        "remaining) into --out and prints a table: per strategy and density, mean ± std over the seeds, "
        "the seeds' values, the optimizer steps and seconds that obtained the ticket. See docs/compare.md.",
    )
    compare.add_argument(
        "--strategies",
        default=",".join(DEFAULT_STRATEGIES),
        help=f"comma-separated, of {', '.join(STRATEGIES)} (default {','.join(DEFAULT_STRATEGIES)})",
    )
    compare.add_argument(
        "--densities",
        default=",".join(f"{d:g}" for d in DEFAULT_DENSITIES),
        help="comma-separated fractions of the weights kept, in (0, 1) (default "
        f"{','.join(f'{d:g}' for d in DEFAULT_DENSITIES)})",
    )
    compare.add_argument(
        "--strategy-option",
        action="append",
        default=[],
        metavar="STRATEGY.KEY=VALUE",
        help="an option of one compared strategy, VALUE read as JSON where it parses (e.g. rigl.every=50, "
        "imp.rate=0.5); repeat for more",
    )
    compare.add_argument("--seeds", type=_positive_int, default=3, help="seeds per strategy and density (default 3)")
    compare.add_argument("--out", metavar="DIR", help="output directory (default runs/compare-<dataset>-<model>)")
    compare.add_argument(
        "--report", metavar="DIR", help="train nothing: re-render the table, CSV and plot of DIR/compare.json"
    )
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    for action in run._actions:  # the run command's own definitions of the setup and output flags
        if action.dest in (*SETTINGS, "metric", "json"):
            clone = copy.copy(action)  # with RunConfig's default: run's are unset for --config to fill
            if clone.default is argparse.SUPPRESS:
                clone.default = defaults[RUN_FIELDS[action.dest]]
            compare._add_action(clone)
    return parser


def _check_out(path: str | None) -> None:
    """Refuse an output directory that cannot be created or written, before any work is done."""
    if path:
        check_writable_dir(path, "--out")


def _sum_of_two(args: argparse.Namespace) -> int:
    from .experiments.sum_of_two import format_result, run

    if args.device != "cpu":
        raise ValueError(f"--device={args.device!r}: sum-of-two runs on the cpu")
    _check_out(args.out)
    result = run(seed=args.seed)
    if args.out:
        from .experiments.report import write_text

        os.makedirs(args.out, exist_ok=True)
        write_text(os.path.join(args.out, "result.json"), json.dumps(result, indent=1))
    print(json.dumps(result) if args.json else format_result(result))
    return 0


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The checked settings of ``run``: RunConfig's defaults, then ``--config``'s file, then the flags given.

    Errors name the flag, or the file and its key: ``--strategy-option rate=1.5: ...``,
    ``run.toml: rounds must be an int, got 'x'``.
    """
    from .experiments.config_file import load_config
    from .experiments.options import parse_options
    from .experiments.runner import default_controls
    from .plugins.manager import StrategyError, get_strategy

    path = getattr(args, "config", None)
    settings = load_config(path, "--config") if path else {}
    flags = {RUN_FIELDS[dest]: getattr(args, dest) for dest in RUN_FIELDS if hasattr(args, dest)}
    if "progress" in flags:
        flags["progress"] = False  # --no-progress
    cli_options = parse_options(flags.pop("strategy_options", None) or [])
    file_options = settings.pop("strategy_options", None) or {}
    from_file = set(settings) - set(flags) | ({"strategy_options"} if set(file_options) - set(cli_options) else set())
    settings.update(flags)
    if file_options or cli_options:
        settings["strategy_options"] = {**file_options, **cli_options}
    strategy = settings.get("strategy", "imp")
    if isinstance(strategy, str):
        try:
            get_strategy(strategy)
        except StrategyError as error:
            where = f"{path}: strategy" if "strategy" in from_file else "--strategy"
            raise StrategyError(f"{where}: {error}") from None
        settings.setdefault("controls", default_controls(strategy))
    config = RunConfig(**settings)

    def label(key: str) -> str:
        return f"--strategy-option {key}" if key in cli_options else f"strategy_options.{key}"

    try:
        if config.strategy_options and isinstance(strategy, str):
            config.check_strategy_options(label)
        config.check()
    except (TypeError, ValueError) as error:  # about a setting the file made (RunConfig.check names it first)
        field = re.match(r"\w+", str(error))
        if field and field.group() in from_file:
            raise type(error)(f"{path}: {error}") from None
        raise
    return config


def _run(args: argparse.Namespace) -> int:
    from .experiments.report import layer_table, table
    from .experiments.resume import run_resumable

    config = _run_config(args)
    out = args.out or f"runs/{config.dataset}-{config.model.replace(':', '-')}"
    result, paths = run_resumable(config, out, fresh=args.fresh)  # checks --out, locks it, resumes
    if args.json:
        print(json.dumps(result["summary"]))
    else:
        print(table(result, args.metric))
        if args.layers:
            print("\n" + layer_table(result))
        print(f"\n{result['seconds']} s; wrote {', '.join(paths.values())}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .driver.checkpoints import locked
    from .experiments.report import RESULTS_JSON, check_metric, layer_table, load_results, table, write_outputs

    # under the folder's lock: a run still writing its outputs there is refused, not overwritten
    with locked(args.directory, argument="DIR") if os.path.isdir(args.directory) else contextlib.nullcontext():
        result = load_results(args.directory)
        check_metric(result, args.metric, os.path.join(args.directory, RESULTS_JSON))
        paths = write_outputs(result, args.directory)
    print(table(result, args.metric))
    if args.layers:
        print("\n" + layer_table(result))
    print(f"\nwrote {', '.join(paths.values())}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .experiments.compare import command

    return command(args)


def _strategies(args: argparse.Namespace) -> int:
    from .plugins.manager import StrategyConflictError, plugin_errors, strategy_entries

    with warnings.catch_warnings():  # conflicts and failed plugins are printed below, not warned about too
        warnings.simplefilter("ignore", RuntimeWarning)
        entries, errors = strategy_entries(), plugin_errors()
    header = ("name", "plugin", "distribution", "version")
    rows = [header, *((e.name, e.plugin, e.distribution, e.version) for e in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]))
    conflicts = [e for e in errors if isinstance(e, StrategyConflictError)]
    if conflicts:
        print("\nconflicts:")
        for conflict in conflicts:
            print(f"  {conflict}")
    for error in errors:
        if not isinstance(error, StrategyConflictError):
            print(f"error: {error}", file=sys.stderr)
    return 0


COMMANDS = {"sum-of-two": _sum_of_two, "run": _run, "report": _report, "strategies": _strategies}
COMMANDS["compare"] = _compare
#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def interrupted(command: str | None = None) -> int:
    """Print the one line of an interrupted command on stderr; return :data:`INTERRUPTED`.

    Args:
        command: the subcommand, if it is known yet.

    Returns:
        int: 130.

    Examples:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     status = interrupted("run")
        >>> status, err.getvalue().startswith("torch-lottery run: interrupted")
        (130, True)
    """
    hint = "; run the same command again to resume after the last finished training" if command == "run" else ""
    print(f"torch-lottery{' ' + command if command else ''}: interrupted{hint}", file=sys.stderr)
    return INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``torch-lottery`` with ``argv``; return the exit status (errors: one line, status 2)."""
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return interrupted()
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return interrupted(args.command)
    except (ValueError, TypeError, LookupError, FileNotFoundError, ImportError, RuntimeError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"torch-lottery {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: still one line, unless the traceback is asked for
        if os.environ.get(TRACEBACK_ENV):
            raise
        text = str(error).splitlines()[0] if str(error) else ""
        print(
            f"torch-lottery {args.command}: error: internal error {type(error).__name__}"
            f"{': ' + text if text else ''} (set {TRACEBACK_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
