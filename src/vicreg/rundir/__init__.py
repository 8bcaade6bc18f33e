"""The run directory: the one owner of its layout, and of reading and writing every file in it.

A run directory holds::

    run.json           the format version of the directory (RUN_FORMAT) and the vicreg version that wrote it
    config.yaml        the resolved configuration (all fields)
    metrics.csv        one row per step: lr, loss and its three unweighted terms, images/s
    knn.csv            k-NN accuracy of the embedding on the test split, per evaluation, with the training
                       seconds so far (evaluation, diagnostics and checkpoints not counted)
    diagnostics.jsonl  collapse diagnostics per epoch (vicreg.diagnostics), of the embedding and the projection
    tb/                TensorBoard event files (the same scalars)
    checkpoint.pt      model, optimiser, scheduler, step and RNG states (written atomically)
    summary.json       final k-NN accuracies (learned and raw pixels), time, images/s, compilation
    log.txt            what was printed
    run.lock           present while a run trains: its host and pid (``lock``)
    eval.json, plots/  written by ``vicreg eval`` and ``vicreg plot``
    predictor/         the world model's predictor (vicreg.worldmodel): config.yaml, checkpoint, history, eval
    plan/              ``vicreg plan``'s settings, results and pixel baseline (vicreg.worldmodel.plan_command)

Runs written before ``run.json`` existed have the same layout: they read as format 1.

The package: ``layout`` (the file names, the format version, making a run directory), ``atomic`` (writes that
never leave half a file), ``lock`` (one job per directory), ``parse`` and ``readers`` (reading the files back:
a damaged one is one line naming it), ``checkpoint`` and ``metrics`` (what training writes as it goes).
"""

from .atomic import atomic_save, atomic_write, check_writable, write_json
from .checkpoint import first_non_finite, load_checkpoint, load_weights, rng_state, save_checkpoint
from .layout import (
    CHECKPOINT,
    CONFIG,
    DIAGNOSTICS,
    EVAL,
    FORMAT,
    KNN,
    LOG,
    LOSS_COLUMNS,
    METRIC_COLUMNS,
    METRICS,
    PIXEL_PREDICTOR,
    PLAN,
    PLAN_REPORT,
    PLOTS,
    PREDICTOR,
    PREDICTOR_ENCODER,
    PREDICTOR_HISTORY,
    PREDICTOR_WEIGHTS,
    RUN_FILES,
    RUN_FORMAT,
    STATE_PREDICTOR,
    SUMMARY,
    TENSORBOARD,
    create_run_dir,
    holds_run,
    remove_unstarted_run,
    run_format,
)
from .lock import RunLock
from .metrics import MetricsWriter, RunLog, trim_to_step
from .parse import read_json, read_text
from .readers import (
    is_finished,
    read_config,
    read_config_dict,
    read_diagnostics,
    read_knn,
    read_metrics,
    read_summary,
    same_config,
)

__all__ = [
    "CHECKPOINT", "CONFIG", "DIAGNOSTICS", "EVAL", "FORMAT", "KNN", "LOG", "LOSS_COLUMNS", "METRIC_COLUMNS", "METRICS",
    "PIXEL_PREDICTOR", "STATE_PREDICTOR", "PLAN", "PLAN_REPORT", "PLOTS", "PREDICTOR", "PREDICTOR_ENCODER",
    "PREDICTOR_HISTORY", "PREDICTOR_WEIGHTS", "RUN_FILES", "RUN_FORMAT", "SUMMARY", "TENSORBOARD",
    "MetricsWriter", "RunLock", "RunLog", "atomic_save", "atomic_write", "check_writable", "create_run_dir",
    "first_non_finite", "holds_run", "is_finished", "load_checkpoint", "load_weights", "read_config",
    "read_config_dict", "read_diagnostics", "read_json", "read_knn", "read_metrics", "read_summary", "read_text",
    "remove_unstarted_run", "rng_state", "run_format", "same_config", "save_checkpoint", "trim_to_step", "write_json",
]
