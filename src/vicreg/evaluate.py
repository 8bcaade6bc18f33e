"""Evaluation of a frozen representation: feature extraction, weighted k-NN and a linear probe.

Weighted k-NN as in the instance-discrimination literature (Wu et al. 2018; DINO): features are
L2-normalised, the k most cosine-similar training samples vote for their class with weight
exp(similarity / temperature), and the class with the largest total wins. Top-1 accuracy in percent.

Linear probe: a single linear layer on frozen features standardised with the training split's mean and
std, trained with cross-entropy, AdamW and a cosine schedule for a fixed number of epochs (no early
stopping, no tuning on the test split), then top-1 on the test split.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .device import cpu_threads
from .image_ops import resize_images
from .schedule import warmup_cosine

__all__ = ["LEVELS", "ProbeResult", "extract_features", "extract_outputs", "knn_accuracy", "linear_probe", "ridge_r2",
           "raw_pixel_features"]

LEVELS = ("representation", "embedding", "projection")  # backbone output, head output E, expander output


@torch.no_grad()
def extract_outputs(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], input_size: int,
                    autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
                    levels: Iterable[str] = LEVELS) -> tuple[dict[str, Tensor], Tensor]:
    """The model's outputs at each of ``levels`` (representation, embedding, projection) for every image of
    ``batches`` (uint8 on the device), resized to ``input_size`` without augmentation, in eval mode.
    Returns ({level: float32 (N, dim)}, int64 labels (N,)), on the device."""
    levels = tuple(levels)
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown feature level {unknown[0]!r}; choose from {', '.join(LEVELS)}")
    was_training = model.training
    model.eval()
    feats: dict[str, list[Tensor]] = {lv: [] for lv in levels}
    labels = []
    for images, y in batches:
        x = resize_images(images, input_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = model(x) if "projection" in levels else None
            if out is None:  # the expander is not needed: stop at the embedding
                r = model.represent(x)
                out = {"representation": r, "embedding": model.head(r)}
            else:
                out = out._asdict()
        for lv in levels:
            feats[lv].append(out[lv].float())
        labels.append(y)
    model.train(was_training)
    return {lv: torch.cat(f) for lv, f in feats.items()}, torch.cat(labels)


def extract_features(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], input_size: int,
                     autocast_dtype: torch.dtype | None = None, channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """Embeddings (N, E) of every image of ``batches`` and their labels (N,): extract_outputs at one level."""
    feats, labels = extract_outputs(model, batches, input_size, autocast_dtype, channels_last, ("embedding",))
    return feats["embedding"], labels


def raw_pixel_features(batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Flattened raw pixels in [0, 1] (N, C*H*W) and labels: the baseline a representation must beat."""
    feats, labels = [], []
    for images, y in batches:
        feats.append(images.flatten(1).float() / 255)
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def knn_accuracy(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
                 ks: Iterable[int] = (20, 200), temperature: float = 0.1, chunk: int = 1024) -> dict[int, float]:
    """Weighted k-NN top-1 accuracy (%) for each k. Features (N, D), labels int64 (N,); unlabelled
    training samples (label -1) are ignored."""
    keep = train_labels >= 0
    bank = F.normalize(train_features[keep].float(), dim=1)  # (Ntr, D)
    bank_labels = train_labels[keep]
    ks = sorted(set(int(k) for k in ks))
    if bank.shape[0] == 0:
        raise ValueError("knn_accuracy needs labelled training features, got none")
    if ks[0] < 1 or ks[-1] > bank.shape[0]:
        bad = ks[0] if ks[0] < 1 else ks[-1]
        raise ValueError(f"k={bad} is not valid for a k-NN bank of {bank.shape[0]} labelled images: choose k in "
                         f"1..{bank.shape[0]}")
    num_classes = int(bank_labels.max()) + 1
    k_max = ks[-1]
    correct = {k: 0 for k in ks}
    for start in range(0, test_features.shape[0], chunk):
        q = F.normalize(test_features[start:start + chunk].float(), dim=1)  # (B, D)
        y = test_labels[start:start + chunk]
        sim, idx = (q @ bank.T).topk(k_max, dim=1)  # (B, k_max), sorted by similarity
        weights = (sim / temperature).exp()
        neighbour_labels = bank_labels[idx]  # (B, k_max)
        for k in ks:
            kk = min(k, k_max)
            votes = torch.zeros(q.shape[0], num_classes, device=q.device)
            votes.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk])
            correct[k] += int((votes.argmax(dim=1) == y).sum())
    n = test_features.shape[0]
    return {k: 100.0 * correct[k] / n for k in ks}


@dataclass
class ProbeResult:
    top1: float  # % on the test split
    train_top1: float  # % on the training split (a large gap means the probe overfits)
    seconds: float


def linear_probe(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
                 epochs: int = 30, batch_size: int | None = None, lr: float = 1e-2, weight_decay: float = 1e-4,
                 seed: int = 0) -> ProbeResult:
    """Train a linear classifier on frozen features (N, D) and report top-1 (%) on the test features.

    Features are standardised with the training split's mean and std; unlabelled samples (label -1) are
    dropped. Fixed schedule: AdamW, cosine decay from ``lr`` over ``epochs`` epochs of shuffled mini-batches
    (seeded), so the figure is reproducible and never tuned on the test split. Runs where the features are.
    batch_size None: N // 20 clamped to [64, 1024], so small datasets still get about 20 steps per epoch."""
    t0 = time.perf_counter()
    if batch_size is None:
        batch_size = min(1024, max(64, int((train_labels >= 0).sum()) // 20))
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"linear_probe needs epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
    keep = train_labels >= 0
    x, y = train_features[keep].float(), train_labels[keep]
    if x.shape[0] == 0:
        raise ValueError("linear_probe needs labelled training features, got none")
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    x = (x - mean) / std
    x_test = (test_features.float() - mean) / std
    num_classes = int(max(int(y.max()), int(test_labels.max()))) + 1
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = nn.Linear(x.shape[1], num_classes).to(x.device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    small = x.device.type == "cpu" and batch_size * x.shape[1] <= 1 << 20
    with torch.enable_grad(), cpu_threads(1, small):
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator).to(x.device)
            for idx in order.split(batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = warmup_cosine(step, total, 0, lr)
                loss = F.cross_entropy(probe(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1

    @torch.no_grad()
    def top1(features: Tensor, labels: Tensor) -> float:
        correct = sum(int((probe(f).argmax(dim=1) == t).sum())
                      for f, t in zip(features.split(8192), labels.split(8192)))
        return 100.0 * correct / max(len(labels), 1)

    return ProbeResult(top1(x_test, test_labels), top1(x, y), time.perf_counter() - t0)


def _spectrum(x: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues l and eigenvectors V of X^T X (float64), from the smaller of X^T X (D x D) and X X^T (N x N):
    with fewer rows than features (raw pixels: thousands of features), X X^T = W diag(l) W^T gives the same nonzero
    spectrum and V = X^T W diag(1 / sqrt(l)); the directions of eigenvalue 0 are left out (columns of zeros), where
    every ridge fit is 0 anyway."""
    if len(x) >= x.shape[1]:
        evals, evecs = torch.linalg.eigh(x.T @ x)
        return evals.clamp_min(0), evecs  # rounding can leave tiny negative eigenvalues of a PSD matrix
    evals, w = torch.linalg.eigh(x @ x.T)
    evals = evals.clamp_min(0)
    root = evals.sqrt()
    keep = root > root.max() * 1e-10
    evecs = (x.T @ w) / torch.where(keep, root, torch.ones_like(root))
    return torch.where(keep, evals, torch.zeros_like(evals)), evecs * keep


def ridge_r2(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
             alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)) -> float:
    """R^2 on the test set of a linear regression (ridge) from features (N, D) to targets (N, Q).

    Features are standardised with the training statistics, features and targets centred on the training
    means; the ridge strength (times the number of training rows) is the one of ``alphas`` with the lowest
    leave-one-out error on the training rows (each row left out of the fit, the standardisation and centring
    kept at all rows'). The R^2 is averaged over the Q targets (1 = perfect, 0 = no
    better than the training mean, negative = worse). Solved in float64 through one eigendecomposition of
    X^T X (or of X X^T, the smaller: :func:`_spectrum`), which gives the weights and those leave-one-out
    residuals of every strength in closed form:
    with X^T X = V diag(l) V^T and U = X V, the fit is U diag(1 / (l + a)) U^T y, the hat matrix's diagonal
    h_i = sum_j U_ij^2 / (l_j + a), and the residual of row i left out is (y_i - fit_i) / (1 - h_i).
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"ridge_r2 needs (N, D) features with the same D, got {tuple(train_x.shape)} and "
                         f"{tuple(test_x.shape)}")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y) or len(train_x) < 10:
        raise ValueError(f"ridge_r2 needs as many targets as features and at least 10 training rows, got "
                         f"{len(train_x)}/{len(train_y)} train and {len(test_x)}/{len(test_y)} test")
    x, xt = train_x.double().cpu(), test_x.double().cpu()
    y, yt = train_y.double().cpu().reshape(len(x), -1), test_y.double().cpu().reshape(len(xt), -1)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x, xt = (x - mean) / std, (xt - mean) / std  # x is centred now
    y_mean = y.mean(0)
    y = y - y_mean
    evals, evecs = _spectrum(x)
    u = x @ evecs  # (N, D)
    projected = u.T @ y  # (D, Q)
    u2 = u * u

    def loo_error(alpha: float) -> float:
        inverse = 1.0 / (evals + alpha * len(x))
        fitted = u @ (projected * inverse[:, None])
        leverage = (u2 @ inverse).clamp_max(1 - 1e-12)
        return float((((y - fitted) / (1 - leverage)[:, None]) ** 2).sum())

    best = min(alphas, key=loo_error)
    pred = xt @ (evecs @ (projected / (evals + best * len(x))[:, None])) + y_mean
    ss_res = ((yt - pred) ** 2).sum(0)
    ss_tot = ((yt - yt.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())
