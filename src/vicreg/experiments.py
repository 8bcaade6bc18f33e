"""The write-up's experiments, each a set of runs with everything else held equal, and a report comparing them.

    vicreg experiment collapse                       invariance only / + variance / all three, E = 2 and 50
    vicreg experiment weights                        (25, 25, 1) vs (1, 1, 1) vs nu = 0
    vicreg experiment dims                           E in {2, 8, 50, 128}
    vicreg experiment seed-vs-resnet                 frozen random VGG16 vs ResNet-18 trained end to end
    vicreg experiment sweep --set loss.nu=0,1,25     any config field(s); several --set give their product
    ... --dataset fashion-mnist                      any dataset (default: the offline 8x8 digits)

An experiment is data: a list of variants, each a label and dotted config overrides, applied over the
dataset's base config (below) and the user's own overrides. Every run is an ordinary run directory
(``vicreg eval/plot/embed`` work on it); a finished run is reused when the experiment is run again, a
stopped one is resumed. The report (report.md and a self-contained report.html) sits beside the runs.
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .config import Config, ConfigError, build_config
from .rundir import CHECKPOINT, LOSS_COLUMNS, is_finished, read_metrics, read_summary, same_config

__all__ = ["EXPERIMENTS", "DATASET_BASES", "Experiment", "Variant", "experiment_configs", "parse_sweep",
           "run_experiment", "sweep_experiment"]


@dataclass(frozen=True)
class Variant:
    label: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    question: str  # what the experiment shows; the report's first paragraph
    variants: tuple[Variant, ...]
    common: dict[str, Any] = field(default_factory=dict)  # overrides shared by every run of the experiment
    expect: str = ""  # what a reader should see in the pictures


# --------------------------------------------------------------------------------------------
# Base configs per dataset: the write-up's head (512-128-32-E) and expander (E-80-80-100) on a small CNN
# trained end to end, the loss weights (25, 25, 1), E = 50. Sized to finish in minutes on a CPU for the
# digits; larger datasets get fewer epochs (they have far more steps per epoch).
# --------------------------------------------------------------------------------------------

WRITEUP_HEAD = {"model.head": "seed", "model.head_widths": [128, 32], "model.embedding_dim": 50,
                "model.expander": [80, 80, 100]}

DATASET_BASES: dict[str, dict[str, Any]] = {
    "digits": {"preset": "demo", **WRITEUP_HEAD, "train.knn_every": 5},
    "fashion-mnist": {"preset": "demo", **WRITEUP_HEAD, "data.dataset": "fashion-mnist", "data.image_size": None,
                      "augment.recipe": "grey28", "train.epochs": 15, "train.batch_size": 256,
                      "optim.warmup_epochs": 1, "train.knn_every": 3},
    "mnist": {"preset": "demo", **WRITEUP_HEAD, "data.dataset": "mnist", "data.image_size": None,
              "augment.recipe": "grey28", "train.epochs": 15, "train.batch_size": 256, "optim.warmup_epochs": 1,
              "train.knn_every": 3},
    "cifar10": {"preset": "demo", **WRITEUP_HEAD, "data.dataset": "cifar10", "data.image_size": None,
                "augment.recipe": "cifar", "train.epochs": 30, "train.batch_size": 256, "optim.warmup_epochs": 2,
                "train.knn_every": 5},
}
DATASET_BASES["cifar100"] = {**DATASET_BASES["cifar10"], "data.dataset": "cifar100"}
DATASET_BASES["stl10"] = {**DATASET_BASES["cifar10"], "data.dataset": "stl10", "augment.recipe": "paper"}
DATASET_BASES["folder"] = {**DATASET_BASES["cifar10"], "data.dataset": "folder", "augment.recipe": "paper"}


def _weights(lam: float, mu: float, nu: float) -> dict[str, float]:
    return {"loss.lam": lam, "loss.mu": mu, "loss.nu": nu}


EXPERIMENTS: dict[str, Experiment] = {
    "collapse": Experiment(
        "collapse", "Collapse: which terms keep the embedding from collapsing?",
        "The same model trained with the invariance term alone, with invariance + variance, and with all three "
        "terms, for a 2-D and a 50-D embedding. Invariance alone is minimised by mapping every image to the same "
        "point; the variance term forbids that, and the covariance term spreads the information over all "
        "dimensions.",
        tuple(Variant(f"{name}, E={e}", {**_weights(25, mu, nu), "model.embedding_dim": e})
              for e in (2, 50) for name, mu, nu in (("invariance only", 0, 0), ("inv + var", 25, 0),
                                                   ("all three", 25, 1))),
        expect="Invariance only: the points fall onto a point or a line (effective rank near 1, k-NN near "
               "chance). With the variance term they spread; with all three the spectrum is flat.",
    ),
    "weights": Experiment(
        "weights", "Loss weights: (25, 25, 1) vs (1, 1, 1) vs no covariance",
        "The paper's weights (lambda, mu, nu) = (25, 25, 1) against equal weights (1, 1, 1) and against dropping "
        "the covariance term (nu = 0), for a 2-D and a 50-D embedding.",
        tuple(Variant(f"{name}, E={e}", {**w, "model.embedding_dim": e})
              for e in (2, 50) for name, w in (("(25, 25, 1)", _weights(25, 25, 1)), ("(1, 1, 1)", _weights(1, 1, 1)),
                                               ("nu = 0", _weights(25, 25, 0)))),
        expect="With a small or zero covariance weight the points line up along a diagonal (dimensional "
               "collapse: the dimensions carry the same information); the covariance term decorrelates them.",
    ),
    "dims": Experiment(
        "dims", "Embedding size: E in {2, 8, 50, 128}",
        "The same model and loss with embeddings of 2, 8, 50 and 128 dimensions.",
        tuple(Variant(f"E={e}", {"model.embedding_dim": e}) for e in (2, 8, 50, 128)),
        expect="Accuracy rises with E and saturates; the effective rank grows with E but stays below it.",
    ),
    "seed-vs-resnet": Experiment(
        "seed-vs-resnet", "The write-up's frozen VGG16 vs ResNet-18 trained end to end",
        "The write-up's model (a frozen, randomly initialised VGG16 conv stack under the trained 512-128-32-E "
        "head) against a CIFAR-stem ResNet-18 trained end to end under the same head, expander and loss.",
        (Variant("frozen random VGG16", {"model.backbone": "vgg16", "model.freeze_backbone": True}),
         Variant("ResNet-18 end to end", {"model.backbone": "resnet18_cifar", "model.freeze_backbone": False})),
        expect="Only the head learns on top of random VGG16 features, so the ResNet-18 trained end to end "
               "should reach a clearly higher k-NN accuracy.",
    ),
}


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def parse_sweep(items: list[str]) -> tuple[Variant, ...]:
    """["loss.nu=0,1,25", "model.embedding_dim=2,50"] -> the product of the values, one Variant each."""
    if not items:
        raise ConfigError("vicreg experiment sweep needs at least one --set key=v1,v2,... (e.g. --set loss.nu=0,1,25)")
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"--set {item!r} is not valid: expected key=v1,v2,... (e.g. loss.nu=0,1,25)")
        texts = values.split(",")
        if len(set(texts)) < len(texts):
            raise ConfigError(f"--set {item!r} is not valid: a value is listed twice (each one is a run)")
        try:
            parsed = [yaml.safe_load(v) for v in texts]
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r} is not valid: the values are YAML scalars split at commas (a list "
                              f"such as [8,8] cannot be one of them)") from None
        axes.append([(key.strip().replace("-", "_"), v) for v in parsed])
    return tuple(Variant(", ".join(f"{k}={v}" for k, v in combo), dict(combo)) for combo in itertools.product(*axes))


def sweep_experiment(items: list[str]) -> Experiment:
    variants = parse_sweep(items)
    keys = ", ".join(dict.fromkeys(k for v in variants for k in v.overrides))
    return Experiment("sweep", f"Sweep of {keys}", f"The same run with {keys} set to each listed value.", variants)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or "run"


def experiment_configs(experiment: Experiment, dataset: str = "digits", overrides: dict[str, Any] | None = None,
                       out_dir: Path | str = "runs/experiments") -> list[tuple[Variant, Config]]:
    """One validated Config per variant: dataset base <- experiment's common overrides <- variant <- user's
    overrides; each run goes to out_dir/<experiment>-<dataset>/<variant slug>."""
    if dataset not in DATASET_BASES:
        raise ConfigError(f"--dataset {dataset!r} is not valid: expected one of {', '.join(DATASET_BASES)}")
    base = dict(DATASET_BASES[dataset])
    preset = base.pop("preset")
    folder = Path(out_dir) / f"{experiment.name}-{dataset}"
    configs = []
    for variant in experiment.variants:
        merged = {**base, **experiment.common, **variant.overrides, **(overrides or {}),
                  "train.out_dir": str(folder), "train.name": _slug(variant.label)}
        try:
            configs.append((variant, build_config(preset, merged)))
        except ConfigError as e:
            raise ConfigError(f"experiment {experiment.name}, run {variant.label!r}: {e}") from None
    return configs


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    folder: Path
    report_md: Path
    report_html: Path
    rows: list[dict]


def _last_window(run_dir: Path, window: int = 50) -> dict[str, float]:
    """Mean of the last ``window`` steps' loss terms from metrics.csv."""
    metrics = read_metrics(run_dir)
    return {k: sum(metrics[k][-window:].tolist()) / max(len(metrics[k][-window:]), 1) for k in LOSS_COLUMNS}


def _train_or_reuse(run_dir: Path, cfg: Config, force: bool, echo: Callable[[str], None]) -> None:
    """A finished run of this config is reused, a stopped one resumed; anything else is trained afresh."""
    from .training import train

    if not force and is_finished(run_dir, cfg):
        echo(f"  reusing the finished run {run_dir}")
        return
    resume = not force and (run_dir / CHECKPOINT).exists() and same_config(run_dir, cfg)
    if run_dir.exists() and not resume:  # forced, or a run of another config: start afresh
        echo(f"  replacing {run_dir} ({'--force' if force else 'its config differs'})")
        shutil.rmtree(run_dir)
    result = train(cfg, run_dir=run_dir, resume=resume, echo=lambda m: None)
    if result.interrupted:
        raise KeyboardInterrupt


def _report_row(label: str, cfg: Config, run_dir: Path, folder: Path, ev: dict) -> dict:
    """One row of the comparison table, from a run's evaluation, its metrics and its summary."""
    emb = ev["levels"].get("embedding") or ev["levels"]["representation"]
    rep = ev["levels"]["representation"]
    diag, proj = ev["collapse"]["embedding"], ev["collapse"]["projection"]
    last = _last_window(run_dir)
    k_lo, k_hi = (str(k) for k in (min(cfg.train.knn_k), max(cfg.train.knn_k)))
    return {"run": label, "E": cfg.model.embedding_dim or rep["dim"],
            f"k-NN@{k_lo} (E)": emb["knn"][k_lo], f"k-NN@{k_hi} (E)": emb["knn"][k_hi],
            "linear (E)": emb["linear_probe"], "linear (repr.)": rep["linear_probe"],
            "eff. rank (E)": diag["effective_rank"], "dead (E)": f"{100 * diag['dead_fraction']:.0f}%",
            "mean std (E)": sum(diag["std"]) / len(diag["std"]),
            f"k-NN@{k_lo} (proj.)": ev["levels"]["projection"]["knn"][k_lo],
            "eff. rank (proj.)": proj["effective_rank"], "mean std (proj.)": sum(proj["std"]) / len(proj["std"]),
            "hinge (proj.)": proj["mean_hinge"],
            "inv": last["invariance"], "var": last["variance"], "cov": last["covariance"],
            "train s": read_summary(run_dir)["train_seconds"], "run_dir": str(run_dir.relative_to(folder))}


CAPTIONS = {
    "embeddings": "Test-set embeddings of each run, coloured by class (the 2-D embedding itself when E = 2, "
                  "else its t-SNE).",
    "spectra": "Singular values of the centred test embedding (normalised) and the per-dimension std, "
               "sorted, against the variance hinge's target.",
    "loss": "Loss terms during training, averaged over windows of batches (the window is given in the figure; "
            "runs too short for the requested window use a smaller one).",
    "knn": "k-NN accuracy of the embedding on the test split during training.",
}


def _comparison_figures(folder: Path, runs: dict[str, Path], outputs: dict, window: int) -> list[tuple[str, Path]]:
    """The four comparison figures in ``folder``; (caption, png) for the report."""
    from . import plots

    saved = {
        "embeddings": plots.save_figure(plots.fig_compare_embeddings(outputs, _class_names(outputs)),
                                        folder / "compare_embeddings", ("png",)),
        "spectra": plots.save_figure(plots.fig_compare_spectra(runs), folder / "compare_spectra", ("png", "svg")),
        "loss": plots.save_figure(plots.fig_compare_loss(runs, window), folder / "compare_loss", ("png", "svg")),
        "knn": plots.save_figure(plots.fig_compare_knn(runs), folder / "compare_knn", ("png", "svg")),
    }
    return [(CAPTIONS[key], png[0]) for key in ("embeddings", "spectra", "loss", "knn")
            if (png := [p for p in saved[key] if p.suffix == ".png"])]


def _notes(experiment: Experiment, probe_epochs: int, seconds: float) -> list[str]:
    return [n for n in (experiment.expect,) if n] + [
        "E columns: the embedding (the head's output; the backbone's when there is no head), on the test split. "
        "k-NN: weighted, cosine, temperature 0.1, training split as the bank. linear: a linear probe on frozen, "
        f"standardised features, {probe_epochs} epochs, top-1 on the test split.",
        "proj.: the expander output, the loss's input. eff. rank: exp(entropy of the normalised singular values) "
        "of the centred test matrix; it ignores scale, so read it with the mean std: a matrix whose stds are far "
        "below the hinge target γ has collapsed whatever its rank. dead: share of dimensions whose std is below a "
        "tenth of the median std (or 2√eps); hinge: mean of max(0, γ - std) over the projection's dimensions, the "
        "variance term (a healthy run sits a little above 0, a collapsed one near γ); inv/var/cov: the unweighted "
        "loss terms, mean of the last 50 steps.",
        f"Total time {seconds:.0f} s.",
    ]


def run_experiment(experiment: Experiment, dataset: str = "digits", overrides: dict[str, Any] | None = None,
                   out_dir: Path | str = "runs/experiments", device: str | None = None, probe_epochs: int = 30,
                   window: int = 200, force: bool = False, progress: bool = True,
                   echo: Callable[[str], None] = print) -> ExperimentResult:
    """Train (or reuse) every run of the experiment, evaluate and plot each, and write the comparison report."""
    from . import plots
    from .loaded_run import embed_run, evaluate_run, load_run
    from .report import write_report

    overrides = dict(overrides or {})
    if device is not None:
        overrides["train.device"] = device
    overrides.setdefault("train.progress", progress)
    configs = experiment_configs(experiment, dataset, overrides, out_dir)
    folder = Path(configs[0][1].train.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    echo(f"experiment {experiment.name} on {dataset}: {len(configs)} runs in {folder}")
    runs, outputs, rows = {}, {}, []
    t0 = time.perf_counter()
    for i, (variant, cfg) in enumerate(configs, 1):
        run_dir = folder / cfg.train.name
        echo(f"[{i}/{len(configs)}] {variant.label}  ({', '.join(f'{k}={v}' for k, v in variant.overrides.items())})")
        _train_or_reuse(run_dir, cfg, force, echo)
        loaded = load_run(run_dir, device=cfg.train.device)  # once for the evaluation and the embeddings
        ev = evaluate_run(loaded, ks=tuple(cfg.train.knn_k), probe_epochs=probe_epochs,
                          levels=("representation", "embedding", "projection"), raw_pixels=False, log=lambda m: None)
        arrays = embed_run(loaded, "test")
        outputs[variant.label], runs[variant.label] = arrays, run_dir
        plots.plot_run(run_dir, outputs=arrays, class_names=[str(c) for c in arrays["classes"]], window=window)
        row = _report_row(variant.label, cfg, run_dir, folder, ev)
        rows.append(row)
        k_lo, diag = min(cfg.train.knn_k), ev["collapse"]["embedding"]
        echo(f"  k-NN@{k_lo} {row[f'k-NN@{k_lo} (E)']:.2f}%  linear {row['linear (E)']:.2f}%  "
             f"effective rank {diag['effective_rank']:.2f}/{diag['dim']}  ({row['train s']:.0f} s)")

    figures = _comparison_figures(folder, runs, outputs, window)
    columns = [c for c in rows[0] if c != "run_dir"] + ["run_dir"]
    cfg0 = configs[0][1]
    intro = (f"{experiment.question}\n\nDataset {dataset}; backbone {cfg0.model.backbone} (unless a run sets "
             f"another), head {cfg0.model.head}, expander {cfg0.model.expander}, {cfg0.train.epochs} epochs of batch "
             f"{cfg0.train.batch_size}, optimiser {cfg0.optim.name} lr {cfg0.optim.lr}, seed {cfg0.train.seed}. "
             f"Everything else is held equal; each run's full config is in its run directory.")
    md, html = write_report(folder, experiment.title, intro, columns, rows, figures,
                            _notes(experiment, probe_epochs, time.perf_counter() - t0))
    echo(f"report: {md}\n        {html}")
    return ExperimentResult(folder, md, html, rows)


def _class_names(outputs: dict) -> list[str] | None:
    first = next(iter(outputs.values()))
    return [str(c) for c in first["classes"]] if "classes" in first else None
