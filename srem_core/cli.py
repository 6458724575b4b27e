"""The ``srem`` command: encode, train, eval, score, export and baseline. It parses, builds a config, calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from srem_core import __version__
from srem_core.config import (
    BIASES, CLEAN_TERMS, CMBCL_FORMS, DEVICES, ENERGY_RULES, HEADS, METHODS, NOISE_LEVELS, SELECTIONS, WEIGHTINGS,
    NoiseConfig, ObjectiveConfig, RunConfig, TrainConfig,
)

logger = logging.getLogger("srem_core.cli")
DEFAULT_OBJECTIVE = ObjectiveConfig()
DEFAULT_TRAIN = TrainConfig()


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data and noise")
    data.add_argument("--data", default="demo", help="manifest (CSV, TSV, JSONL, Parquet), research-features folder, or 'demo' (default)")
    data.add_argument("--noise", type=float, default=0.0, help="fraction of training captions (or images) to shuffle, 0-1 (default 0: natural noise only)")
    data.add_argument("--noise-level", choices=NOISE_LEVELS, default="caption", help="caption-level (NCR) or image-level (DECL/RCL) injection")
    data.add_argument("--noise-seed", type=int, default=0, help="seed of the noise injection")
    data.add_argument("--noise-file", help="load a saved noise index (.npy) instead of sampling one")
    data.add_argument("--encoder", default="offline", help="'offline' (EfficientNet-Lite0 + MiniLM) or 'open_clip:<model name>'")
    data.add_argument("--pretrained", help="open_clip weights: a hub tag or a local file")
    data.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/srem or $SREM_CACHE_DIR)")

    train = parser.add_argument_group("optimisation")
    train.add_argument("--method", choices=METHODS, default=DEFAULT_TRAIN.method, help="training objective (default srem)")
    train.add_argument("--epochs", type=int, default=DEFAULT_TRAIN.epochs)
    train.add_argument("--batch-size", type=int, default=DEFAULT_TRAIN.batch_size)
    train.add_argument("--lr", type=float, default=DEFAULT_TRAIN.learning_rate, help="AdamW learning rate")
    train.add_argument("--weight-decay", type=float, default=DEFAULT_TRAIN.weight_decay)
    train.add_argument("--embed-dim", type=int, default=DEFAULT_TRAIN.embed_dim, help="size of the joint embedding")
    train.add_argument("--head", choices=HEADS, default=DEFAULT_TRAIN.head, help="projection head on the frozen towers")
    train.add_argument("--margin", type=float, default=DEFAULT_TRAIN.triplet_margin, help="triplet margin (triplet and ncr)")
    train.add_argument("--seed", type=int, default=DEFAULT_TRAIN.seed)
    train.add_argument("--device", choices=DEVICES, default=DEFAULT_TRAIN.device)
    train.add_argument("--no-amp", action="store_true", help="disable bfloat16 mixed precision on CUDA")
    train.add_argument("--unfreeze", action="store_true", help="fine-tune the pretrained towers too (meant for a GPU; slow on a CPU)")
    train.add_argument("--threshold", type=float, default=DEFAULT_TRAIN.noise_threshold, help="flag a pair when clean_prob is below this")

    objective = parser.add_argument_group("SREM objective (see docs/method.md)")
    objective.add_argument("--tau", type=float, default=DEFAULT_OBJECTIVE.tau, help="logit temperature")
    objective.add_argument("--lambda-cmbcl", type=float, default=DEFAULT_OBJECTIVE.lambda_cmbcl, help="weight of the complementary loss")
    objective.add_argument("--bias", choices=BIASES, default=DEFAULT_OBJECTIVE.bias, help="transition matrix of the complementary loss")
    objective.add_argument("--tau-q", type=float, default=DEFAULT_OBJECTIVE.tau_q, help="temperature of the biased transition matrix")
    objective.add_argument("--cmbcl-form", choices=CMBCL_FORMS, default=DEFAULT_OBJECTIVE.cmbcl_form, help="sum over candidates or expectation under Q")
    objective.add_argument("--energy-rule", choices=ENERGY_RULES, default=DEFAULT_OBJECTIVE.energy_rule)
    objective.add_argument("--energy-quantile", type=float, default=DEFAULT_OBJECTIVE.energy_quantile)
    objective.add_argument("--selection", choices=SELECTIONS, default=DEFAULT_OBJECTIVE.selection)
    objective.add_argument("--weighting", choices=WEIGHTINGS, default=DEFAULT_OBJECTIVE.weighting, help="swapped-entropy weights")
    objective.add_argument("--weight-floor", type=float, default=DEFAULT_OBJECTIVE.weight_floor)
    objective.add_argument("--clean-term", choices=CLEAN_TERMS, default=DEFAULT_OBJECTIVE.clean_term)
    objective.add_argument("--gmm-threshold", type=float, default=DEFAULT_OBJECTIVE.gmm_threshold)
    objective.add_argument("--warmup-epochs", type=int, default=DEFAULT_OBJECTIVE.warmup_epochs)
    objective.add_argument("--warmup-clean-weight", type=float, default=DEFAULT_OBJECTIVE.warmup_clean_weight)


def config_from_arguments(arguments: argparse.Namespace) -> RunConfig:
    """Build the run config from parsed ``srem train`` arguments (no side effects)."""
    return RunConfig(
        data=arguments.data,
        encoder=arguments.encoder,
        pretrained=arguments.pretrained,
        cache_dir=arguments.cache_dir,
        noise=NoiseConfig(rate=arguments.noise, level=arguments.noise_level, seed=arguments.noise_seed, noise_file=arguments.noise_file),
        objective=ObjectiveConfig(
            tau=arguments.tau, lambda_cmbcl=arguments.lambda_cmbcl, bias=arguments.bias, tau_q=arguments.tau_q, cmbcl_form=arguments.cmbcl_form,
            energy_rule=arguments.energy_rule, energy_quantile=arguments.energy_quantile, selection=arguments.selection,
            weighting=arguments.weighting, weight_floor=arguments.weight_floor, clean_term=arguments.clean_term,
            gmm_threshold=arguments.gmm_threshold, warmup_epochs=arguments.warmup_epochs,
            warmup_clean_weight=arguments.warmup_clean_weight,
        ),
        train=TrainConfig(
            method=arguments.method, epochs=arguments.epochs, batch_size=arguments.batch_size, learning_rate=arguments.lr,
            weight_decay=arguments.weight_decay, embed_dim=arguments.embed_dim, head=arguments.head,
            triplet_margin=arguments.margin, seed=arguments.seed, device=arguments.device, amp=not arguments.no_amp,
            unfreeze=arguments.unfreeze,
            noise_threshold=arguments.threshold,
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srem", description="Find mismatched image-caption pairs and train noise-robust retrieval (SREM).")
    parser.add_argument("--version", action="version", version=f"srem {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only and hide progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    encode = commands.add_parser("encode", help="encode a dataset into the feature cache, or WebDataset shards into a feature store")
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="manifest, research-features folder or 'demo': fill the feature cache")
    source.add_argument("--shards", help="WebDataset shards (a folder, a glob or a brace pattern such as 'pairs-{00000..00099}.tar')")
    encode.add_argument("--store", help="feature store folder to write (with --shards); a rerun resumes at the first unfinished shard")
    encode.add_argument("--encoder", default="offline", help="'offline' (EfficientNet-Lite0 + MiniLM) or 'open_clip:<model name>'")
    encode.add_argument("--pretrained", help="open_clip weights: a hub tag or a local file")
    encode.add_argument("--cache-dir", help="feature cache folder (with --data; default ~/.cache/srem or $SREM_CACHE_DIR)")
    encode.add_argument("--batch-size", type=int, default=64, help="images per forward pass (with --shards)")
    encode.add_argument("--device", choices=DEVICES, default="auto")

    train = commands.add_parser("train", help="train a model and write a run directory")
    _add_train_arguments(train)
    train.add_argument("--out", required=True, help="run directory to write")
    train.add_argument("--resume", action="store_true",
                       help="continue a killed run from its last checkpoint in --out (same options; a larger --epochs extends a run)")
    train.add_argument("--config", help="JSON config file (as stored in a run's config.json 'config'); overrides the options")

    evaluate = commands.add_parser("eval", help="print a run's retrieval and detection metrics")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")

    score = commands.add_parser("score", help="score another manifest, or a feature store of any size, with a trained run")
    score.add_argument("run", help="run directory")
    target = score.add_mutually_exclusive_group(required=True)
    target.add_argument("--data", help="manifest or research-features folder to score")
    target.add_argument("--store", help="feature store written by 'srem encode --shards' (scored chunk by chunk)")
    score.add_argument("--out", required=True, help="output file: .parquet, .csv or .jsonl with --data, .parquet with --store")
    score.add_argument("--device", choices=DEVICES, default="auto")
    score.add_argument("--cache-dir", help="feature cache folder")
    score.add_argument("--chunk-rows", type=int, help="with --store: rows per scoring chunk (default 65536)")

    export = commands.add_parser("export", help="write the manifest rows with scores, dropping or keeping flagged pairs")
    export.add_argument("run", nargs="?", help="run directory (or give --scores)")
    export.add_argument("--scores", help="a store's scores file from 'srem score --store', exported row group by row group")
    export.add_argument("--threshold", type=float, help="with --scores: flag clean_prob below this instead of the stored is_noisy")
    keep = export.add_mutually_exclusive_group()
    keep.add_argument("--drop-noisy", action="store_true", help="write the pairs kept as clean (default)")
    keep.add_argument("--only-noisy", action="store_true", help="write only the flagged pairs")
    keep.add_argument("--all", action="store_true", help="write every pair with its scores")
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="csv (default), jsonl or parquet. With --scores, a suffix on --out sets the format")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--ignore-decisions", action="store_true", help="ignore the decisions saved in the app")

    baseline = commands.add_parser("baseline", help="zero-training detection baseline (ImageNet-label bridge or CLIP score)")
    baseline.add_argument("--data", default="demo")
    baseline.add_argument("--noise", type=float, default=0.0)
    baseline.add_argument("--noise-level", choices=NOISE_LEVELS, default="caption")
    baseline.add_argument("--noise-seed", type=int, default=0)
    baseline.add_argument("--encoder", default="offline")
    baseline.add_argument("--pretrained")
    baseline.add_argument("--cache-dir")
    baseline.add_argument("--out", help="write per-pair baseline scores here (.parquet)")
    return parser


def _configure_logging(arguments: argparse.Namespace) -> None:
    level = logging.INFO
    if arguments.verbose:
        level = logging.DEBUG
    elif arguments.quiet:
        level = logging.WARNING
    if int(os.environ.get("RANK", "0")) > 0 and not arguments.verbose:
        # Under torchrun every rank logs the same epochs; rank 0 speaks for the job.
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _run_train(arguments: argparse.Namespace) -> int:
    from srem_core.pipeline import train_run

    config = config_from_arguments(arguments)
    if arguments.config:
        config = RunConfig.from_dict(json.loads(Path(arguments.config).read_text()))
    metrics = train_run(config, arguments.out, resume=arguments.resume, progress=not arguments.quiet)
    _print_metrics(metrics)
    return 0


def _print_metrics(metrics: dict) -> None:
    for key in sorted(metrics):
        value = metrics[key]
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        sys.stdout.write(f"{key:28s} {text}\n")


def _run_eval(arguments: argparse.Namespace) -> int:
    from srem_core.reports import evaluate_run

    metrics = evaluate_run(arguments.run)
    if arguments.json:
        sys.stdout.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    else:
        _print_metrics(metrics)
    return 0


def _run_encode(arguments: argparse.Namespace) -> int:
    from srem_core.reports import encode_shards_to_store, encode_to_cache

    if arguments.shards:
        if not arguments.store:
            raise ValueError("--shards needs --store: the feature store folder to write (it is created if missing)")
        summary = encode_shards_to_store(arguments.shards, arguments.store, encoder=arguments.encoder, pretrained=arguments.pretrained,
                                         batch_size=arguments.batch_size, device=arguments.device, progress=not arguments.quiet)
    else:
        if arguments.store:
            raise ValueError("--store goes with --shards; with --data the features go to the feature cache (--cache-dir)")
        summary = encode_to_cache(arguments.data, encoder=arguments.encoder, pretrained=arguments.pretrained,
                                  cache_dir=arguments.cache_dir, device=arguments.device, progress=not arguments.quiet)
    _print_metrics(summary)
    return 0


def _run_score(arguments: argparse.Namespace) -> int:
    from srem_core.reports import score_manifest, score_store_with_run

    if arguments.store:
        if Path(arguments.out).suffix.lower() != ".parquet":
            raise ValueError(f"--out {arguments.out}: a store's scores are written as Parquet; name the file *.parquet "
                             "and convert with 'srem export --scores FILE --all --format csv'")
        _print_metrics(score_store_with_run(arguments.run, arguments.store, arguments.out, device=arguments.device,
                                            chunk_rows=arguments.chunk_rows, progress=not arguments.quiet))
        return 0
    path = score_manifest(arguments.run, arguments.data, arguments.out, device=arguments.device, cache_dir=arguments.cache_dir,
                          progress=not arguments.quiet)
    logger.info("scores written to %s", path)
    return 0


def _run_export(arguments: argparse.Namespace) -> int:
    from srem_core.export import export_pairs
    from srem_core.runs import load_run

    keep = "clean"
    if arguments.only_noisy:
        keep = "noisy"
    elif arguments.all:
        keep = "all"
    if (arguments.run is None) == (arguments.scores is None):
        raise ValueError("give either a run directory or --scores FILE (a store's scores from 'srem score --store')")
    if arguments.threshold is not None and not 0.0 <= arguments.threshold <= 1.0:
        raise ValueError(f"--threshold {arguments.threshold} is outside [0, 1]; clean_prob is a probability")
    if arguments.scores:
        from srem_core.streaming import export_store

        if not Path(arguments.scores).is_file():
            raise FileNotFoundError(f"--scores {arguments.scores} not found. Write it with 'srem score RUN --store FOLDER --out FILE.parquet'.")

        out = Path(arguments.out)
        if out.suffix == "":
            out = out.with_suffix(f".{arguments.format or 'csv'}")
        elif arguments.format and out.suffix.lower() != f".{arguments.format}":
            raise ValueError(f"--out {out} does not end in .{arguments.format}; with --scores the file suffix sets the format")
        rows = export_store(arguments.scores, out, keep=keep, threshold=arguments.threshold)
        logger.info("exported %d pairs to %s", rows, out)
        return 0
    if arguments.threshold is not None:
        raise ValueError("--threshold applies to --scores; a run's flags follow its threshold and the app's decisions")
    path = export_pairs(load_run(arguments.run), keep=keep, fmt=arguments.format or "csv", out=arguments.out, apply_decisions=not arguments.ignore_decisions)
    logger.info("exported to %s", path)
    return 0


def _run_baseline(arguments: argparse.Namespace) -> int:
    from srem_core.reports import run_zero_training_baseline

    metrics = run_zero_training_baseline(
        data=arguments.data, noise=NoiseConfig(rate=arguments.noise, level=arguments.noise_level, seed=arguments.noise_seed),
        encoder=arguments.encoder, pretrained=arguments.pretrained, cache_dir=arguments.cache_dir, out=arguments.out,
    )
    _print_metrics(metrics)
    return 0


COMMANDS = {"encode": _run_encode, "train": _run_train, "eval": _run_eval, "score": _run_score, "export": _run_export, "baseline": _run_baseline}


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    _configure_logging(arguments)
    try:
        return COMMANDS[arguments.command](arguments)
    except (ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
