"""Command line: ``bioglom run CONFIG.toml [--set section.key=value ...] [--out PATH]``,
``bioglom info RUN.h5``, ``bioglom runs FOLDER [--sort METRIC]``, ``bioglom config``,
``bioglom bench``.

A bad configuration exits with status 2 and one line naming the field, the value and what is
allowed -- no traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import ConfigError, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bioglom", description="GLOM with local learning: run and inspect experiments."
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train a model as a TOML config says, writing an HDF5 run")
    r.add_argument("config", help="TOML config file (e.g. experiments/default.toml)")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config field (repeatable); VALUE is read as TOML, else as a string",
    )
    r.add_argument("--out", help="run file to write (default: <run.out_dir>/<config>-<time>.h5)")
    r.add_argument("--device", help="torch device, overrides run.device (cpu, cuda, auto)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run file")
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint (<run>.ckpt), appending to it",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="P",
        help="shard the columns over P processes by bands of grid rows (torch.distributed: "
        "gloo on the CPU, NCCL on GPUs; docs/distributed.md); also launched by "
        "torchrun --nproc-per-node P -m bioglom run CONFIG",
    )
    sub.add_parser(
        "bench",
        help="time a settling step, shared vs unshared, against the machine's matmul rate "
        "(bioglom bench --help)",
        add_help=False,
    )
    i = sub.add_parser("info", help="print a run's status, config summary and last metrics")
    i.add_argument("run", help="an .h5 run file")
    t = sub.add_parser(
        "runs",
        help="one line per run of a folder: status, seed, the config fields that differ, "
        "final metrics (needs pandas: the analysis extra)",
    )
    t.add_argument("folder", nargs="+", help="folders (searched with their sub-folders) or runs")
    t.add_argument(
        "--sort",
        metavar="METRIC",
        help="order by this metric's final value (or best_METRIC), best first where the metric "
        "has a direction, else ascending; shown as a column",
    )
    t.add_argument(
        "--columns",
        default="",
        metavar="A,B,...",
        help="more columns to show: metrics, best_<metric> or config fields (section.key)",
    )
    t.add_argument("--csv", metavar="FILE", help="also write the whole table (every column)")
    c = sub.add_parser(
        "config", help="print a resolved, validated config with every field documented"
    )
    c.add_argument("config", nargs="?", help="TOML config file (default: the built-in defaults)")
    c.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE"
    )
    c.add_argument(
        "--markdown",
        action="store_true",
        help="print the configuration reference (every field, its default and meaning) as "
        "Markdown, as in docs/configuration.md",
    )
    return p


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"


def _print_summary(path: Path, status: str, metrics: dict[str, float], levels: int) -> None:
    print(f"run: {path}  (status: {status})")
    print(f"weights: {path.with_suffix('.pt')}")
    if "elapsed_s" in metrics:
        print(f"updates: {int(metrics.get('updates', 0))} in {metrics['elapsed_s']:.1f} s")
    shown = [k for k in ("loss", "loss_recon", "probe_recon_mse", "probe_fill_mse") if k in metrics]
    if shown:
        print("final: " + ", ".join(f"{k} {_fmt(metrics[k])}" for k in shown))
    islands = [  # the mismatched-image controls first (docs/design.md §10)
        ("obj delta", "probe_dfgari_obj", "{:+.3f}"),
        ("part delta", "probe_dfgari_part", "{:+.3f}"),
        ("obj FG-ARI", "probe_fgari_obj", "{:.3f}"),
        ("part FG-ARI", "probe_fgari_part", "{:.3f}"),
        ("islands/img", "probe_islands", "{:.1f}"),
        ("w nesting", "probe_wnesting", "{:.3f}"),
        ("wnest delta", "probe_dwnesting", "{:+.3f}"),
        ("nesting", "probe_nesting", "{:.3f}"),
    ]
    columns = [
        ("cos within", "probe_cos", "{:.3f}"),
        ("ensemble", "probe_ensemble", "{:.3f}"),
        ("agree BU", "probe_agree_bu", "{:.3f}"),
        ("agree TD", "probe_agree_td", "{:.3f}"),
    ]
    if any(f"probe_islands_L{k}" in metrics for k in range(levels)):
        for table in (islands, columns):
            print("level " + " ".join(f"{title:>11}" for title, _, _ in table))
            for k in range(levels):
                cells = []
                for _, name, form in table:
                    v = metrics.get(f"{name}_L{k}")
                    ok = v is not None and math.isfinite(v)
                    cells.append(f"{form.format(v) if ok else '-':>11}")
                print(f"{k:>5} " + " ".join(cells))
        baselines = _baseline_rows(path)
        if baselines:
            print("baselines that learn nothing, on the same probe images (bioglom.baselines):")
            print(f"{'':>21} " + " ".join(f"{t:>11}" for t, _, _ in islands[:5]))
            for name, cells in baselines:
                print(f"{name:>21} " + " ".join(f"{c:>11}" for c in cells))
        print("delta: score minus the same score against another probe image's islands")
        print("(exactly 0 for islands that ignore the image); a learned score is a result only")
        print("where it and its delta beat every baseline")
        print("w nesting: nesting weighted by island size, single columns left out")


def _baseline_rows(path: Path) -> list[tuple[str, list[str]]]:
    """Object and part FG-ARI with their deltas, and island counts, of every baseline of
    :mod:`bioglom.baselines` on the run's probe images (none where it has no masks)."""
    from .baselines import score_baselines
    from .runs import open_run

    try:
        with open_run(path) as run:
            probe, patch = run.probe, run.config.frontend.patch_size
    except (OSError, ValueError, KeyError):
        return []
    images = probe.get("images")
    masks = {t: probe.get(f"{name}_masks") for t, name in (("obj", "object"), ("part", "part"))}
    if images is None or images.ndim != 4 or any(m is None for m in masks.values()):
        return []
    keys = ("dfgari_obj", "dfgari_part", "fgari_obj", "fgari_part", "count")
    forms = ["{:+.3f}", "{:+.3f}", "{:.3f}", "{:.3f}", "{:.1f}"]
    rows = []
    for name, sc in score_baselines(images, masks, patch).items():
        cells = [sc[k] for k in keys]
        rows.append(
            (
                name,
                [
                    f.format(v) if math.isfinite(v) else "-"
                    for f, v in zip(forms, cells, strict=True)
                ],
            )
        )
    return rows


def _run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"run.device={args.device}")
    config = load_config(args.config, overrides)
    from .train import default_run_path, train  # heavy imports after the config is checked

    if args.resume and not args.out:
        print("bioglom: error: --resume needs --out RUN.h5 (the run to continue)", file=sys.stderr)
        return 2
    if args.resume and args.overwrite:
        print("bioglom: error: --resume and --overwrite exclude each other", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_run_path(config, Path(args.config).stem)
    if out.exists() and not (args.overwrite or args.resume):
        print(
            f"bioglom: error: {out} exists; pass --resume to continue it or --overwrite to "
            "replace it",
            file=sys.stderr,
        )
        return 2
    from .distributed import init_from_env

    if args.nproc < 1:
        raise ConfigError("nproc", args.nproc, "expected an integer >= 1")
    from .model import resolve_device

    backend = "nccl" if resolve_device(config.run.device).type == "cuda" else "gloo"
    if init_from_env(backend):  # launched by torchrun: this process is one rank
        return _run_rank(config, out, args)
    if args.nproc > 1:
        return _launch(config, out, args)
    result = train(
        config, out, overwrite=args.overwrite, progress=not args.quiet, resume=args.resume
    )
    return _report(result, config)


def _run_rank(config, out: Path, args: argparse.Namespace) -> int:
    """Train this rank's band of columns (the process group is initialised); rank 0 reports."""
    import torch.distributed as dist

    from .distributed import ColumnShard, check_shardable
    from .model import image_geometry
    from .train import train

    _, (h, w) = image_geometry(config)
    p = config.frontend.patch_size
    grid = (h // p, w // p)
    check_shardable(config, grid, dist.get_world_size())
    shard = ColumnShard.of(grid)
    result = train(
        config,
        out,
        overwrite=args.overwrite,
        progress=not args.quiet,
        resume=args.resume,
        shard=shard,
    )
    if shard.rank != 0:
        return {"finished": 0, "interrupted": 130}.get(result.status, 3)
    return _report(result, config)


def _rank_main(rank: int, world: int, rendezvous: str, config_text: str, out: str, args) -> None:
    """One process of ``bioglom run --nproc P`` (started by :func:`_launch`)."""
    import os

    import torch
    import torch.distributed as dist

    from .config import config_from_toml

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    from .model import resolve_device

    config = config_from_toml(config_text)
    backend = "nccl" if resolve_device(config.run.device).type == "cuda" else "gloo"
    dist.init_process_group(
        backend, init_method=f"file://{rendezvous}", rank=rank, world_size=world
    )
    try:
        code = _run_rank(config, Path(out), args)
        # every rank leaves together: none tears its connections down while another still
        # uses them (a gloo rank aborted once at exit in CI, in the sharded Ctrl-C test)
        dist.barrier()
    except (ConfigError, FileNotFoundError) as err:
        print(f"bioglom: rank {rank}: error: {err}", file=sys.stderr)
        code = 2
    finally:
        dist.destroy_process_group()
    sys.exit(code)


def _launch(config, out: Path, args: argparse.Namespace) -> int:
    """Start ``args.nproc`` ranks on this machine and wait for them; returns rank 0's exit
    status. Ctrl-C reaches every rank (one terminal process group): each stops after its
    current update with a checkpoint, as one process does."""
    import signal
    import tempfile

    import torch.multiprocessing as mp

    from .distributed import check_shardable
    from .model import image_geometry

    _, (h, w) = image_geometry(config)
    p = config.frontend.patch_size
    check_shardable(config, (h // p, w // p), args.nproc)
    with tempfile.TemporaryDirectory(prefix="bioglom-rendezvous-") as tmp:
        context = mp.start_processes(
            _rank_main,
            args=(args.nproc, f"{tmp}/group", config.to_toml(), str(out), args),
            nprocs=args.nproc,
            join=False,
            start_method="spawn",
        )
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the ranks handle Ctrl-C
        try:
            _watch(context.processes)
        finally:
            signal.signal(signal.SIGINT, old)
        codes = [process.exitcode for process in context.processes]
    if any(c not in (0, None) for c in codes[1:]) and codes[0] == 0:
        print(f"bioglom: a rank failed (exit codes {codes})", file=sys.stderr)
        return 3
    return codes[0] if codes[0] is not None and codes[0] >= 0 else 1


#: exit statuses of a rank that ended as a run ends (finished, diverged, interrupted)
_RUN_ENDED = (0, 3, 130)


def _watch(processes: list, grace_s: float = 10.0) -> None:
    """Wait for every rank. A rank that fails (an exception, a config error, a signal) would
    leave the others waiting on their next exchange: they are given ``grace_s`` seconds to
    end as well, then terminated (their checkpoints from the last ``run.checkpoint_every``
    resume the run)."""
    import time

    deadline = None
    while any(p.is_alive() for p in processes):
        failed = [(r, p.exitcode) for r, p in enumerate(processes) if p.exitcode is not None
                  and p.exitcode not in _RUN_ENDED]  # fmt: skip
        if failed and deadline is None:
            deadline = time.monotonic() + grace_s
            print(f"bioglom: rank {failed[0][0]} failed (exit code {failed[0][1]}); stopping "
                  "the other ranks", file=sys.stderr)  # fmt: skip
        if deadline is not None and time.monotonic() > deadline:
            for p in processes:
                if p.is_alive():
                    p.terminate()
        alive = [p for p in processes if p.is_alive()]
        if alive:
            alive[0].join(timeout=0.5)


def _report(result, config) -> int:
    """Print a run's summary; the exit status of ``bioglom run``."""
    _print_summary(result.path, result.status, result.summary, config.model.levels)
    if result.status == "interrupted":
        print(f"bioglom: run interrupted: {result.reason}", file=sys.stderr)
        return 130
    if result.status != "finished":
        print(f"bioglom: run {result.status}: {result.reason}", file=sys.stderr)
        return 3
    return 0


def _info(args: argparse.Namespace) -> int:
    from .runs import RunFileError, open_run

    with open_run(args.run) as run:
        cfg = run.config
        try:  # a file cut short while its writer had it open may open and fail here
            n_records, status, steps = run.n_records, run.status, run.steps
            metrics = {k: float(v[-1]) for k, v in run.metrics.items() if len(v) and k != "step"}
        except (OSError, RuntimeError, KeyError) as err:
            why = " ".join(str(err).split())
            raise RunFileError(f"{args.run}: damaged, cannot read its records ({why})") from None
        print(
            f"rule {cfg.train.rule}, sharing {cfg.model.sharing}, levels {cfg.model.levels}, "
            f"d {cfg.model.dim}, state_norm {cfg.model.state_norm}, "
            f"consensus {cfg.consensus.mode}, {n_records} records"
        )
        if len(steps):
            metrics["updates"] = float(steps[-1])
        _print_summary(Path(args.run), status, metrics, cfg.model.levels)
    return 0


#: metrics shown by ``bioglom runs`` beside the config fields that differ, where present
RUNS_COLUMNS = ("loss", "probe_recon_mse")


def _runs(args: argparse.Namespace) -> int:
    from .frames import ANALYSIS_EXTRA, metric_goal, pandas

    try:
        pd = pandas()
    except ImportError:
        print(f"bioglom: error: `bioglom runs` needs pandas: {ANALYSIS_EXTRA}", file=sys.stderr)
        return 2
    from .frames import table

    t = table(args.folder)
    if t.empty:
        print(f"no run files (*.h5) in {' '.join(args.folder)}")
        return 0
    if args.csv:
        t.to_csv(args.csv, index=False)
    config = [c for c in t.columns if "." in c and c not in ("run.seed", "run.out_dir")]
    differ = [c for c in config if t[c].astype(str).nunique() > 1]
    extra = [c for c in args.columns.split(",") if c]
    wanted = [*extra, *([args.sort] if args.sort else [])]
    unknown = [c for c in wanted if c not in t.columns]
    if unknown:
        metrics = sorted(c for c in t.columns if c not in config and not c.startswith("best_"))
        print(
            f"bioglom: error: no column {', '.join(map(repr, unknown))} in these runs; "
            f"metrics: {', '.join(m for m in metrics if m not in ('run', 'path'))}",
            file=sys.stderr,
        )
        return 2
    base = ["run", "status", "seed", "update"]
    shown = [c for c in base if c in t.columns] + differ
    shown += [c for c in (*RUNS_COLUMNS, *wanted) if c in t.columns]
    view = t[list(dict.fromkeys(shown))]
    if args.sort:
        goal = metric_goal(args.sort.removeprefix("best_"))
        view = view.sort_values(args.sort, ascending=goal != "max", na_position="last")
    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.max_colwidth", 40):  # fmt: skip
        print(view.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"{len(t)} runs; config fields that differ: {', '.join(differ) or 'none'}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from .config import documented_markdown, documented_toml

    if args.markdown:
        if args.config or args.overrides:
            print(
                "bioglom: error: --markdown documents the defaults: no CONFIG or --set",
                file=sys.stderr,
            )
            return 2
        print(documented_markdown(), end="")
        return 0
    print(documented_toml(load_config(args.config, args.overrides)), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bioglom`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own options: see bioglom.bench
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    commands = {"run": _run, "info": _info, "runs": _runs, "config": _config}
    try:
        return commands[args.command](args)
    except ConfigError as err:
        print(f"bioglom: config error: {err}", file=sys.stderr)
        return 2
    except FileExistsError as err:
        print(f"bioglom: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"bioglom: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        from .checkpoint import ResumeError
        from .runs import RunFileError

        if not isinstance(err, ResumeError | RunFileError):  # a damaged or foreign run file
            raise
        print(f"bioglom: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bioglom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
