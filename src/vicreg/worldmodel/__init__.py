"""The JEPA world model on a trained frame encoder: predict the next frame's embedding, roll it out, evaluate it.

    vicreg train --preset sprites                           the frame encoder (VICReg, temporal views)
    vicreg train-predictor runs/<run> [--predictor.model transformer ...]
    vicreg eval-predictor runs/<run>
    vicreg train --preset sprites-control                   an encoder of a pushed digit (actions)
    vicreg plan runs/<run>                                  plan pushes toward goal frames, closed loop

Modules, in the order a run uses them:

``sequences``           the sequences the encoder run saw, made again (seeded) with their labels, and their embeddings
``predictor``           the predictors (MLP, transformer) on standardised embeddings, and their input checks
``fit``                 training a predictor on embeddings; saving and loading it; the joint-training loss
``joint``               training the predictor and the encoder together (predictor.joint)
``rollout``             autoregressive roll-outs, the next = last and linear baselines, errors per horizon
``probes``              linear-probe R^2 of positions, velocities and distractors, from embeddings and raw pixels
``env``                 planning episodes in the sprite simulator (the training data's physics and drawing)
``action_search``       the searches over actions: cross-entropy method, MPPI, gradient descent
``closed_loop``         the costs, the controllers (world model, oracle, random) and the closed loop
``predictor_commands``  ``vicreg train-predictor`` and ``vicreg eval-predictor`` on a run directory
``plan_command``        ``vicreg plan``: the world model against a pixel-space one, an oracle and random pushes

Their pictures are drawn by :mod:`vicreg.plots.worldmodel`.

Everything goes to ``runs/<run>/predictor/`` (see vicreg.rundir):

    config.yaml     the PredictorConfig
    predictor.pt    predictor weights, embedding normalisation, training history
    encoder.pt      the encoder's weights after joint training (predictor.joint); else the run's checkpoint is used
    history.csv     loss per epoch
    eval.json       roll-out errors per horizon (predictor, next = last, linear extrapolation) and the probes
    rollout_error.png/.svg, predictions.png, probes.png    the pictures of ``eval-predictor``

and ``runs/<run>/plan/`` (``vicreg plan``): config.yaml, plan.json, pixel_predictor.pt, trajectories.png,
success_horizon.png.
"""

from .fit import FitResult, fit_predictor, load_predictor, prediction_loss, save_predictor
from .plan_command import WorldModel, load_world_model, plan_pushes, plan_run
from .predictor import EmbeddingNorm, MLPPredictor, TransformerPredictor, build_predictor
from .predictor_commands import evaluate_predictor, format_rollout_table, load_predictor_config, train_predictor
from .probes import probe_report
from .rollout import baseline_last, baseline_linear, rollout, rollout_errors
from .sequences import embed_sequences, load_sequences

__all__ = [
    "EmbeddingNorm",
    "FitResult",
    "MLPPredictor",
    "TransformerPredictor",
    "WorldModel",
    "baseline_last",
    "baseline_linear",
    "build_predictor",
    "embed_sequences",
    "evaluate_predictor",
    "fit_predictor",
    "format_rollout_table",
    "load_predictor",
    "load_predictor_config",
    "load_sequences",
    "load_world_model",
    "plan_pushes",
    "plan_run",
    "prediction_loss",
    "probe_report",
    "rollout",
    "rollout_errors",
    "save_predictor",
    "train_predictor",
]
