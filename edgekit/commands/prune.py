"""edgekit prune MODEL.onnx -o PRUNED.onnx: structured channel pruning, magnitude sparsity or
k-means weight sharing, with a size report."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the source .onnx model")
    parser.add_argument("-o", "--output", help="the pruned .onnx model to write")
    parser.add_argument("--method", choices=("channel", "magnitude", "cluster", "lowrank"), default="channel")
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="table the output SQNR (accuracy with --labels) with each group pruned alone",
    )
    parser.add_argument(
        "--allocation",
        choices=("uniform", "sensitivity", "latency"),
        default="uniform",
        help="how --target-macs spreads the pruning over groups (latency: in proportion to the LiteRT time each "
        "group's MACs cost, measured here by pruning each group alone)",
    )
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads for --allocation latency timings")
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
    parser.add_argument("--energy", type=float, default=0.9, help="lowrank: singular-value energy to keep")
    parser.add_argument(
        "--rank", type=float, help="lowrank: keep this fraction of each layer's full rank (not --energy)"
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--ratio", type=float, help="channel: share of each group's channels to remove; magnitude: sparsity"
    )
    budget.add_argument("--target-macs", type=float, help="channel: keep this fraction of the MACs")
    budget.add_argument("--target-params", type=float, help="channel: keep this fraction of the parameters")
    parser.add_argument("--criterion", choices=("l1", "l2", "fpgm"), default="l1")
    parser.add_argument("--min-channels", type=int, default=1, help="never keep fewer channels in a group")
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
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="ONNX node names to leave alone")
    parser.add_argument(
        "--within-blocks",
        action="store_true",
        help="channel: leave the channels joined by residual Adds alone and prune only inside blocks",
    )
    parser.add_argument(
        "--scope", choices=("global", "layer"), default="global", help="magnitude: where the threshold applies"
    )
    parser.add_argument("--clusters", type=int, default=16, help="cluster: shared values per output channel")
    parser.add_argument(
        "--cluster-scope",
        choices=("channel", "layer"),
        default="channel",
        help="cluster: N values per output channel (snapped to its int8 grid) or per layer",
    )


def run(args: argparse.Namespace) -> int:

    import numpy as np
    import onnx

    from edgekit.converters.onnx_frontend import read_model
    from edgekit.converters.prune import cluster_weights, magnitude_prune, prune_channels
    from edgekit.converters.prune.budget import COST_NAMES, prune_to_budget
    from edgekit.converters.prune.report import SIZE_KEYS, size_report
    from edgekit.converters.tflite_writer import write_atomic
    from edgekit.errors import InputError

    model = read_model(args.model).model
    samples = labels = None
    if args.bias_correct and (args.method != "channel" or not args.data):
        raise InputError("--bias-correct needs --method channel (the default) and --data SAMPLES.npy")
    if args.sensitivity or args.allocation == "sensitivity" or args.bias_correct:
        samples, labels = _samples(args, model, np)
    if args.sensitivity:
        from edgekit.converters.prune.sensitivity import analyse, format_table

        print(format_table(analyse(model, samples, labels, criterion=args.criterion, round_to=args.round_to)))
        if not args.output:
            return 0
    if not args.output:
        raise InputError("pass -o PRUNED.onnx (or --sensitivity alone for the table)")
    from edgekit.converters.tflite_writer import check_output_path

    check_output_path(args.output, args.model, args.data)
    exclude = frozenset(args.exclude)
    if args.within_blocks:
        from edgekit.converters.prune import find_groups

        exclude |= {g.name for g in find_groups(model) if g.joins}
    if args.method == "channel":
        if args.target_macs is not None or args.target_params is not None:
            what = "macs" if args.target_macs is not None else "params"
            target = args.target_macs if args.target_macs is not None else args.target_params
            goal = f"(target {target * 100:g}%)"
            if args.allocation == "latency":
                from edgekit.converters.prune.budget import prune_by_latency
                from edgekit.converters.prune.latency import format_table, measure

                if what != "macs":
                    raise InputError("--allocation latency goes with --target-macs")
                table = measure(
                    model,
                    0.5,
                    args.criterion,
                    args.round_to,
                    exclude,
                    args.threads,
                    convert_options={"stem_block": args.stem_block},
                )
                print(format_table(table))
                pruned, ratios, fraction = prune_by_latency(
                    model, target, args.criterion, args.min_channels, exclude, args.round_to, table=table
                )
                print(f"latency-aware ratios keep {fraction:.1%} of the MACs {goal}")
            elif args.allocation == "sensitivity":
                from edgekit.converters.prune.budget import prune_by_sensitivity

                pruned, ratios, fraction = prune_by_sensitivity(
                    model, target, samples, labels, args.criterion, args.round_to
                )
                print(f"per-group ratios {ratios} keep {fraction:.1%} of the MACs {goal}")
            else:
                pruned, ratio, fraction = prune_to_budget(
                    model, target, what, args.criterion, args.min_channels, exclude, args.round_to
                )
                print(f"channel ratio {ratio:.3f} keeps {fraction:.1%} of the {COST_NAMES[what]} {goal}")
        else:
            if args.ratio is None:
                raise InputError("channel pruning needs --ratio, --target-macs or --target-params")
            pruned = prune_channels(model, args.ratio, args.criterion, args.min_channels, exclude, args.round_to)
        if args.bias_correct:
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
            pruned = corrected
    elif args.method == "magnitude":
        if args.ratio is None:
            raise InputError("magnitude pruning needs --ratio (the sparsity, e.g. 0.8)")
        pruned, report = magnitude_prune(model, args.ratio, args.scope, exclude)
        for layer, sparsity in report.items():
            print(f"  {sparsity:6.1%}  {layer}")
    elif args.method == "lowrank":
        from edgekit.converters.prune.lowrank import factorize

        energy = None if args.rank is not None else args.energy
        pruned, report = factorize(model, energy=energy, rank_fraction=args.rank, exclude=exclude)
        for layer, (rank, full) in report.items():
            print(f"  rank {rank:>4} of {full:>4}  {layer}")
    else:
        pruned = cluster_weights(model, args.clusters, per_channel=args.cluster_scope == "channel", exclude=exclude)
    onnx.checker.check_model(pruned)
    write_atomic(args.output, pruned.SerializeToString())
    if samples is None and args.data:
        samples, _ = _samples(args, model, np)
    before, after = size_report(model, samples), size_report(pruned, samples)
    note = "" if args.data else " (int8 activation ranges from random inputs: pass --data for real ones)"
    print(f"size report{note}")
    print(f"{'':<22} {'dense':>12} {'pruned':>12} {'ratio':>7}")
    for key in SIZE_KEYS:
        ratio = f"{after[key] / before[key]:.2f}" if before[key] > 0 else "-"
        print(f"{key:<22} {before[key]:>12,} {after[key]:>12,} {ratio:>7}")
    print(f"wrote {args.output}")
    return 0


def _samples(args: argparse.Namespace, model, np):
    """Samples for the sensitivity table: --data (and --labels), else 8 random inputs."""
    from edgekit.converters.onnx_frontend import fixed_input_shapes
    from edgekit.errors import InputError

    shape = next(iter(fixed_input_shapes(model, None).values()))
    if args.data:
        try:
            samples = np.load(args.data).astype(np.float32)
        except (OSError, ValueError):
            raise InputError(f"{args.data} is not a .npy array") from None
        samples = samples.reshape((-1, *shape[1:]))
    else:
        samples = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    labels = np.load(args.labels) if args.labels else None
    return samples, labels
