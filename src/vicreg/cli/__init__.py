"""The ``vicreg`` command: one sub-command per job, each registering its options and its handler
(``set_defaults(handler=...)``) in the module that holds it.

    vicreg --version                          the installed version
    vicreg train                              the offline demo (digits, small CNN, about a minute on CPU)
    vicreg train --preset resnet18-cifar      a preset (vicreg presets lists them)
    vicreg train --preset seed --loss.mu 1    any config field overridden as --section.key value
    vicreg train --config my.yaml             a YAML file of config sections (over the preset)
    vicreg train --resume runs/demo-...       continue a stopped run from its checkpoint
    vicreg presets                            the presets, recipes and backbones
    vicreg config [--preset NAME] [...]       print the resolved config as YAML without training
    vicreg eval RUN_DIR                       k-NN and linear probe per feature level -> RUN_DIR/eval.json
    vicreg plot RUN_DIR                       loss curves, k-NN, spectrum, t-SNE / 2-D scatter -> RUN_DIR/plots
    vicreg embed RUN_DIR -o test.npz          representation, embedding, projection and labels (.npz/.parquet)
    vicreg export RUN_DIR [--format onnx]     the encoder as safetensors + JSON (and ONNX) -> RUN_DIR/export
    vicreg experiment collapse                rerun a write-up experiment (collapse, weights, dims,
                                              seed-vs-resnet) and write a Markdown + HTML report
    vicreg experiment sweep --set loss.nu=0,1,25   sweep any config field(s)
    vicreg train --preset sprites             a frame encoder on moving sprites (temporal views)
    vicreg train-predictor RUN_DIR            the JEPA predictor of the next frame's embedding
    vicreg eval-predictor RUN_DIR             its roll-out errors against baselines, probes, pictures
    vicreg plan RUN_DIR                       plan pushes toward goal frames with it, closed loop in the simulator
    vicreg collect ENV_ID --episodes N --steps T --out DIR    episodes of a Gymnasium environment (Push-T)
"""


from __future__ import annotations

import os
import re
import sys

from .. import __version__
from ..config import ConfigError
from ..errors import FollowedRank0, JobStopped, NodeConfigError, first_line, out_of_memory
from .collect_command import add_collect_command
from .experiment_command import add_experiment_command
from .options import OneLineParser, one_line
from .train_commands import add_train_commands
from .trained_run_commands import add_trained_run_commands
from .world_model_commands import add_world_model_commands

__all__ = ["build_parser", "main", "report_error"]


def build_parser() -> OneLineParser:
    """The command's parser: every sub-command with its options and its handler."""
    parser = OneLineParser(prog="vicreg", description="VICReg self-supervised representation learning.")
    parser.add_argument("--version", action="version", version=f"vicreg {__version__}")
    parser.set_defaults(handler=None, takes_overrides=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_commands(sub)
    add_trained_run_commands(sub)
    add_collect_command(sub)
    add_world_model_commands(sub)
    add_experiment_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv; nothing at all: ``vicreg train``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv or ["train"])
    if args.handler is None:
        parser.print_help()
        return 2
    if overrides and not args.takes_overrides:
        parser.error(f"unexpected arguments: {' '.join(overrides)}")
    args.overrides = overrides
    try:
        return args.handler(args)
    except ConfigError as e:
        return report_error(e, 2)
    except (OSError, ValueError, FloatingPointError, JobStopped, FollowedRank0) as e:
        return report_error(e, 1)
    except (RuntimeError, TypeError, MemoryError) as e:  # a size too large for the memory: one line; others raise
        if not out_of_memory(e):
            raise
        said = re.sub(r"^\[enforce fail at [^]]*\]( err == 0\.)? *", "", first_line(e, None, type(e).__name__))
        return report_error(MemoryError(f"out of memory ({said[:160]}): a size in the config or the options is too "
                                        f"large for this machine"), 1)
    except KeyboardInterrupt:
        print("vicreg: aborted", file=sys.stderr)
        return 130


def report_error(e: Exception, code: int) -> int:
    """The error in one line on stderr; returns the exit code. In a data-parallel job, what is the same on
    every process (a bad config, a world size, a failure rank 0 found) is said by rank 0 alone (by local rank
    0 for what is the same on a node), and the others exit with 0, so that torchrun waits for rank 0 to say
    it; the other ranks say only what is their own (their lost peers, their files), prefixed with their rank."""
    rank = int(os.environ.get("RANK", "0") or 0)
    if isinstance(e, NodeConfigError):
        if int(os.environ.get("LOCAL_RANK", "0") or 0):
            return 0
    elif rank and isinstance(e, (ConfigError, FollowedRank0)):
        return 0
    prefix = f"rank {rank}: " if rank and not str(e).startswith(f"rank {rank}:") else ""
    print(f"vicreg: error: {prefix}{one_line(str(e))}", file=sys.stderr)
    return code
