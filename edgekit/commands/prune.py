"""edgekit prune MODEL.onnx -o PRUNED.onnx: structured channel pruning, magnitude sparsity or
k-means weight sharing, with a size report."""

from __future__ import annotations

import argparse

from edgekit.commands._shapes import share

# library parameter (PruneConfig) -> the flag that sets it, so the library's errors name this command's flags
PARAMETER_FLAGS = {
    "ratio": "--ratio",
    "macs": "--macs",
    "params": "--params",
    "criterion": "--criterion",
    "round_to": "--round-to",
    "allocation": "--allocation",
    "bias_correct": "--bias-correct",
    "samples": "--data",
    "sparsity": "--ratio",
    "clusters": "--clusters",
    "energy": "--energy",
    "rank_fraction": "--rank",
    "threads": "--threads",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the source .onnx model")
    parser.add_argument("-o", "--output", help="the pruned .onnx model to write")
    parser.add_argument("--method", choices=("channel", "magnitude", "cluster", "lowrank"), default="channel")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="ONNX node names to leave alone")
    _add_channel_options(parser)
    _add_allocation_options(parser)
    _add_other_methods(parser)


def _add_channel_options(parser: argparse.ArgumentParser) -> None:
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--ratio", type=share, help="channel: share of each group's channels to remove; magnitude: sparsity"
    )
    budget.add_argument("--macs", type=share, metavar="F", help="channel: keep this fraction of the MACs")
    budget.add_argument("--target-macs", type=share, dest="macs", help=argparse.SUPPRESS)  # the old name of --macs
    budget.add_argument("--params", type=share, metavar="F", help="channel: keep this fraction of the parameters")
    parser.add_argument("--criterion", choices=("l1", "l2", "fpgm"), help="channel: ranking (default l1)")
    parser.add_argument("--min-channels", type=int, help="channel: never keep fewer channels in a group (default 1)")
    parser.add_argument(
        "--round-to",
        type=int,
        default=16,  # converters.prune.channels.ROUND_TO, not imported: this module loads without onnx
        metavar="N",
        help="keep a multiple of N channels in groups wider than N (XNNPACK computes channels in tiles; "
        "default 16, 1: no rounding)",
    )
    parser.add_argument(
        "--bias-correct",
        action="store_true",
        help="channel: shift the biases of the layers that read pruned channels so their output means on --data "
        "match the dense model's (no training)",
    )
    parser.add_argument(
        "--within-blocks",
        action="store_true",
        help="channel: leave the channels joined by residual Adds alone and prune only inside blocks",
    )


def _add_allocation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="table the output SQNR (accuracy with --labels) with each group pruned alone",
    )
    parser.add_argument(
        "--allocation",
        choices=("uniform", "sensitivity", "latency"),
        default="uniform",
        help="how --macs spreads the pruning over groups (latency: in proportion to the LiteRT time each "
        "group's MACs cost, measured here by pruning each group alone)",
    )
    parser.add_argument("--threads", type=int, help="LiteRT threads for --allocation latency timings (default 1)")
    parser.add_argument(
        "--stem-block",
        type=int,
        choices=(2, 4, 8),
        metavar="B",
        help="for --allocation latency: time the models as edgekit convert --stem-block B will build them",
    )
    parser.add_argument(
        "--data", help="sample inputs (.npy, model layout) for --sensitivity / --allocation / --bias-correct"
    )
    parser.add_argument("--labels", help="labels (.npy) for the samples: sensitivity in accuracy instead of SQNR")


def _add_other_methods(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scope", choices=("global", "layer"), help="magnitude: where the threshold applies (default global)"
    )
    parser.add_argument("--clusters", type=int, help="cluster: shared values per output channel (default 16)")
    parser.add_argument(
        "--cluster-scope",
        choices=("channel", "layer"),
        help="cluster: N values per output channel (snapped to its int8 grid; the default) or per layer",
    )
    parser.add_argument("--energy", type=share, help="lowrank: singular-value energy to keep (default 0.9)")
    parser.add_argument(
        "--rank", type=share, help="lowrank: keep this fraction of each layer's full rank (not --energy)"
    )


def run(args: argparse.Namespace) -> int:
    import onnx

    from edgekit.converters.onnx.frontend import read_model
    from edgekit.errors import InputError
    from edgekit.files import check_output_path, write_atomic

    _method_options(args)
    model = read_model(args.model).model
    if args.output:  # before any work: never over an input, nor an ONNX model named .tflite
        inputs = {"MODEL": args.model, "--data": args.data, "--labels": args.labels}
        check_output_path(args.output, named=inputs, model_format="onnx")
    samples = labels = None
    if args.bias_correct and (args.method != "channel" or not args.data):
        raise InputError("--bias-correct needs --method channel (the default) and --data SAMPLES.npy")
    if args.sensitivity or args.allocation == "sensitivity" or args.bias_correct:
        samples, labels = _samples(args, model)
    if args.sensitivity:
        _print_sensitivity(args, model, samples, labels)
        if not args.output:
            return 0
    if not args.output:
        raise InputError("pass -o PRUNED.onnx (or --sensitivity alone for the table)")
    pruned = METHODS[args.method](args, model, _excluded(args, model), samples, labels)
    onnx.checker.check_model(pruned)
    write_atomic(args.output, pruned.SerializeToString())
    if samples is None and args.data:
        samples, _ = _samples(args, model)
    _print_size_report(args, model, pruned, samples)
    print(f"wrote {args.output}")
    return 0


# option -> (the --method it belongs to, its default): given with another method it is refused
METHOD_OPTIONS = {
    "criterion": ("channel", "l1"),
    "min_channels": ("channel", 1),
    "scope": ("magnitude", "global"),
    "clusters": ("cluster", 16),
    "cluster_scope": ("cluster", "channel"),
    "energy": ("lowrank", 0.9),
    "rank": ("lowrank", None),
}


def _method_options(args: argparse.Namespace) -> None:
    """Refuse options the run would ignore (another --method's, --threads without latency
    timings, --labels without a sensitivity table), then fill in the defaults of the others."""
    from edgekit.errors import InputError

    if args.energy is not None and args.rank is not None:
        raise InputError("--energy and --rank both set the kept rank; give one")
    table = args.sensitivity or args.allocation == "sensitivity"
    for name, (method, default) in METHOD_OPTIONS.items():
        value = getattr(args, name)
        if value is None:
            setattr(args, name, default)
        elif args.method != method and not (name == "criterion" and table):
            raise InputError(f"--{name.replace('_', '-')} goes with --method {method}; it would change nothing here")
    if args.threads is not None and args.allocation != "latency":
        raise InputError("--threads goes with --allocation latency (the timings it runs)")
    args.threads = 1 if args.threads is None else args.threads
    if args.labels and not table:
        raise InputError("--labels goes with --sensitivity or --allocation sensitivity")
    if args.min_channels < 1:
        raise InputError(f"--min-channels must be 1 or more, not {args.min_channels}")


def _print_sensitivity(args: argparse.Namespace, model, samples, labels) -> None:
    from edgekit.converters.prune.sensitivity import analyse, format_table

    print(format_table(analyse(model, samples, labels, criterion=args.criterion, round_to=args.round_to)))


def _excluded(args: argparse.Namespace, model) -> frozenset[str]:
    """--exclude, and with --within-blocks every group a residual Add joins."""
    exclude = frozenset(args.exclude)
    if args.within_blocks:
        from edgekit.converters.prune import find_groups

        exclude |= {g.name for g in find_groups(model) if g.joins}
    return exclude


def _channel_config(args: argparse.Namespace, samples):
    """The PruneConfig of --method channel: it checks the budget, rounding and bias correction."""
    from edgekit.converters.config import PruneConfig
    from edgekit.errors import InputError

    config = PruneConfig(
        ratio=args.ratio,
        macs=args.macs,
        params=args.params,
        criterion=args.criterion,
        round_to=args.round_to,
        bias_correct=args.bias_correct,
        samples=samples if args.bias_correct else None,
    )
    if not config.channels:
        raise InputError("channel pruning needs --ratio, --macs or --params")
    if args.allocation == "latency" and config.macs is None:
        raise InputError("--allocation latency goes with --macs")
    return config


def _prune_channels(args: argparse.Namespace, model, exclude, samples, labels):
    config = _channel_config(args, samples)
    if config.ratio is not None:
        from edgekit.converters.prune import prune_channels

        pruned = prune_channels(model, config.ratio, config.criterion, args.min_channels, exclude, config.round_to)
    else:
        pruned = BUDGET_ALLOCATIONS[args.allocation](args, config, model, exclude, samples, labels)
    return _correct_bias(model, pruned, samples) if config.bias_correct else pruned


def _uniform_budget(args: argparse.Namespace, config, model, exclude, samples, labels):
    from edgekit.converters.prune.budget import COST_NAMES, prune_to_budget

    what, target = ("macs", config.macs) if config.macs is not None else ("params", config.params)
    pruned, ratio, fraction = prune_to_budget(
        model, target, what, config.criterion, args.min_channels, exclude, config.round_to
    )
    print(f"channel ratio {ratio:.3f} keeps {fraction:.1%} of the {COST_NAMES[what]} {_goal(config)}")
    return pruned


def _latency_budget(args: argparse.Namespace, config, model, exclude, samples, labels):
    from edgekit.converters.prune.budget import prune_by_latency
    from edgekit.converters.prune.latency import format_table, measure

    table = measure(
        model,
        0.5,
        config.criterion,
        config.round_to,
        exclude,
        args.threads,
        convert_options={"stem_block": args.stem_block},
    )
    print(format_table(table))
    pruned, _, fraction = prune_by_latency(
        model, config.macs, config.criterion, args.min_channels, exclude, config.round_to, table=table
    )
    print(f"latency-aware ratios keep {fraction:.1%} of the MACs {_goal(config)}")
    return pruned


def _sensitivity_budget(args: argparse.Namespace, config, model, exclude, samples, labels):
    from edgekit.converters.prune.budget import prune_by_sensitivity

    target = config.macs if config.macs is not None else config.params
    pruned, ratios, fraction = prune_by_sensitivity(model, target, samples, labels, config.criterion, config.round_to)
    print(f"per-group ratios {ratios} keep {fraction:.1%} of the MACs {_goal(config)}")
    return pruned


# --allocation -> how a MAC or parameter budget is spread over the groups
BUDGET_ALLOCATIONS = {"uniform": _uniform_budget, "latency": _latency_budget, "sensitivity": _sensitivity_budget}


def _goal(config) -> str:
    target = config.macs if config.macs is not None else config.params
    return f"(target {target * 100:g}%)"


def _correct_bias(model, pruned, samples):
    from edgekit.converters.prune.recovery import correct_bias
    from edgekit.converters.prune.sensitivity import _outputs
    from edgekit.converters.verification import sqnr_db

    corrected = correct_bias(model, pruned, samples)
    reference = _outputs(model, samples)
    print(
        f"bias correction on {len(samples)} samples: output SQNR vs dense on them "
        f"{sqnr_db(reference, _outputs(pruned, samples)):.2f} dB -> "
        f"{sqnr_db(reference, _outputs(corrected, samples)):.2f} dB"
    )
    return corrected


def _magnitude(args: argparse.Namespace, model, exclude, samples, labels):
    from edgekit.converters.config import PruneConfig
    from edgekit.converters.prune import magnitude_prune
    from edgekit.errors import InputError

    if args.ratio is None:
        raise InputError("magnitude pruning needs --ratio (the sparsity, e.g. 0.8)")
    pruned, report = magnitude_prune(model, PruneConfig(sparsity=args.ratio).sparsity, args.scope, exclude)
    for layer, sparsity in report.items():
        print(f"  {sparsity:6.1%}  {layer}")
    return pruned


def _lowrank(args: argparse.Namespace, model, exclude, samples, labels):
    from edgekit.converters.prune.lowrank import factorize

    energy = None if args.rank is not None else args.energy
    pruned, report = factorize(model, energy=energy, rank_fraction=args.rank, exclude=exclude)
    for layer, (rank, full) in report.items():
        print(f"  rank {rank:>4} of {full:>4}  {layer}")
    return pruned


def _cluster(args: argparse.Namespace, model, exclude, samples, labels):
    from edgekit.converters.config import PruneConfig
    from edgekit.converters.prune import cluster_weights

    clusters = PruneConfig(clusters=args.clusters).clusters
    return cluster_weights(model, clusters, per_channel=args.cluster_scope == "channel", exclude=exclude)


# --method -> the function that prunes: (args, model, excluded node names, samples, labels) -> pruned model
METHODS = {"channel": _prune_channels, "magnitude": _magnitude, "lowrank": _lowrank, "cluster": _cluster}


def _print_size_report(args: argparse.Namespace, model, pruned, samples) -> None:
    from edgekit.converters.prune.report import SIZE_KEYS, size_report
    from edgekit.package import XZ_PRESET

    before, after = (size_report(m, samples, xz_preset=XZ_PRESET) for m in (model, pruned))
    note = "" if args.data else " (int8 activation ranges from random inputs: pass --data for real ones)"
    print(f"size report{note}")
    print(f"{'':<22} {'dense':>12} {'pruned':>12} {'ratio':>7}")
    for key in SIZE_KEYS:
        ratio = f"{after[key] / before[key]:.2f}" if before[key] > 0 else "-"
        print(f"{key:<22} {before[key]:>12,} {after[key]:>12,} {ratio:>7}")


def _samples(args: argparse.Namespace, model):
    """Samples for the sensitivity table: --data (and --labels), else 8 random inputs."""
    import numpy as np

    from edgekit.converters.onnx.frontend import fixed_input_shapes

    name, shape = next(iter(fixed_input_shapes(model, None).items()))
    if args.data:
        samples = _data_samples(args.data, name, shape)
    else:
        samples = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    return samples, _labels(args.labels, len(samples)) if args.labels else None


def _data_samples(data: str, name: str, shape: tuple[int, ...]):
    """--data as samples of the model's input ``name`` (of ``shape``): [N, *shape[1:]] float32,
    refused in one line when unreadable, not float, not finite, or not of the model's shape."""
    import numpy as np

    from edgekit.converters.quant.calibration_data import check_array, split_samples
    from edgekit.converters.verification import load_samples
    from edgekit.errors import InputError

    array = load_samples(data, [name], what="--data")[name]
    array = check_array(array, data, what="--data", error=InputError)
    return np.concatenate(split_samples(array, tuple(shape), f"--data samples for input '{name}'", InputError))


def _labels(path: str, count: int):
    """--labels: one whole-number class for each of the ``count`` samples, from a .npy file."""
    import numpy as np

    from edgekit.converters.quant.calibration_data import load_array_file
    from edgekit.errors import InputError

    labels = load_array_file(path, "--labels")
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer) or labels.shape != (count,):
        held = "a .npz" if isinstance(labels, dict) else f"shape {list(labels.shape)} of {labels.dtype}"
        raise InputError(f"--labels {path} holds {held}; give a .npy of {count} whole-number classes, one per sample")
    return labels
