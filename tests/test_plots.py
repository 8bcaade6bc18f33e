"""Figures from synthetic run directories: the right files appear, are valid images, and say what they show."""

import csv
import json

import numpy as np
import pytest
import yaml
from matplotlib.image import imread

from vicreg.plots import (
    effective_window,
    fig_collapse_over_training,
    fig_compare_embeddings,
    fig_compare_knn,
    fig_compare_loss,
    fig_compare_spectra,
    fig_knn,
    fig_loss_curves,
    fig_spectrum,
    plot_run,
    save_figure,
    tsne_2d,
    windowed_mean,
)
from vicreg.rundir import read_diagnostics, read_knn, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _space(rng, dim: int, n: int = 64, target: float = 1.0, old_format: bool = False) -> dict:
    z = rng.normal(size=(n, dim)) * np.linspace(1.5, 0.05, dim)  # some dims spread, some collapsed
    std = z.std(axis=0)
    s = np.linalg.svd(z - z.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    space = {"dim": dim, "std": std.tolist(), "singular_values": s.tolist(),
             "effective_rank": float(np.exp(-(p * np.log(p)).sum()))}
    if old_format:  # what runs wrote before the dead share and the hinge were recorded
        return {**space, "frac_below_target": float((std < target).mean())}
    median = float(np.median(std))
    return {**space, "median_std": median, "dead_fraction": float((std < max(median / 10, 0.02)).mean()),
            "mean_hinge": float(np.maximum(0.0, target - std).mean())}


def make_run(root, name="run-a", n_steps=300, steps_per_epoch=10, knn=True, diagnostics=True, seed=0):
    """A run directory with the files train() writes (and diagnostics.jsonl), filled with plausible numbers."""
    rng = np.random.default_rng(seed)
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"preset": "demo", "data": {"dataset": "digits"}, "model": {"embedding_dim": 8}, "loss": {"gamma": 1.0}}))
    step = np.arange(1, n_steps + 1)
    inv = 0.5 * np.exp(-step / (100 + 40 * seed)) + 0.01 * rng.random(n_steps)
    var = np.where(step < n_steps // 2, 0.8 * np.exp(-step / 30), 0.0)  # exactly 0 once nothing is below the hinge
    cov = 2.0 * np.exp(-step / 60) + 0.05
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "epoch", "lr", "loss", "invariance", "variance", "covariance", "images_per_s"])
        for i in range(n_steps):
            w.writerow([step[i], (step[i] - 1) // steps_per_epoch + 1, 1e-3, 25 * inv[i] + 25 * var[i] + cov[i],
                        inv[i], var[i], cov[i], 1000.0])
    if knn:
        with open(run / "knn.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "epoch", "knn@20", "knn@200"])
            for e in range(1, n_steps // steps_per_epoch + 1, 5):
                w.writerow([e * steps_per_epoch, e, 95 - 30 * np.exp(-e / (8 + 3 * seed)), 90 - 30 * np.exp(-e / 8)])
        (run / "summary.json").write_text(json.dumps({"knn_raw_pixels": {"20": 70.5, "200": 64.0}}))
    if diagnostics:
        with open(run / "diagnostics.jsonl", "w") as f:
            for e in (1, 10, 20):  # the first entry as older runs wrote it: the figures recompute what it lacks
                old = e == 1
                entry = {"step": e * steps_per_epoch, "epoch": e, "target": 1.0,
                         "embedding": _space(rng, 8, old_format=old), "projection": _space(rng, 16, old_format=old)}
                f.write(json.dumps(entry) + "\n")
    return run


def outputs_for(rng, n=300, e=8, n_classes=3):
    labels = np.arange(n) % n_classes
    centres = rng.normal(0, 8, size=(n_classes, e))
    emb = centres[labels] + rng.normal(size=(n, e))
    return {"representation": rng.normal(size=(n, 16)), "embedding": emb, "projection": rng.normal(size=(n, 12)),
            "labels": labels.astype(np.int64)}


def assert_png(path, min_side=300):
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side
    assert img[..., :3].std() > 0.01  # not a blank canvas


# --------------------------------------------------------------------------------------------


def test_windowed_mean_by_hand():
    x, m = windowed_mean(np.arange(10.0), 4)  # windows [0..3], [4..7], then [8, 9]: half a window, kept
    np.testing.assert_allclose(x, [2.5, 6.5, 9.5])  # 1-based centres: steps 1-4, 5-8, 9-10
    np.testing.assert_allclose(m, [1.5, 5.5, 8.5])
    x, m = windowed_mean(np.arange(9.0), 4)  # [8] alone is a quarter window: dropped
    np.testing.assert_allclose(x, [2.5, 6.5])
    np.testing.assert_allclose(m, [1.5, 5.5])
    x, m = windowed_mean(np.arange(3.0), 10)  # the only window is partial: kept
    np.testing.assert_allclose(x, [2.0])
    np.testing.assert_allclose(m, [1.0])
    x, m = windowed_mean(np.arange(5.0), 1)
    np.testing.assert_allclose(x, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(m, [0, 1, 2, 3, 4])


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_windowed_mean_rejects_bad_window(bad):
    with pytest.raises(ValueError, match=f"window must be an integer >= 1, got {bad}"):
        windowed_mean(np.arange(10.0), bad)


def test_effective_window():
    assert effective_window(100_000, 200) == 200
    assert effective_window(1000, 200) == 200  # exactly 5 windows
    assert effective_window(400, 200) == 20  # too short: about 20 points
    assert effective_window(10, 200) == 1


def test_loss_figure_states_window_and_scales(tmp_path):
    metrics = read_metrics(make_run(tmp_path))
    fig = fig_loss_curves(metrics, 200, title="run-a")
    title = fig._suptitle.get_text()
    assert "run-a" in title and "15-batch windows" in title
    assert "a run of 300 batches is too short for 200-batch windows" in title
    total, _, var, cov = fig.axes
    assert total.get_yscale() == "log"  # positive, spans > 1 decade
    assert var.get_yscale() == "linear"  # has zeros
    assert all(ax.get_xlabel() for ax in (var, cov)) and all(ax.get_ylabel() and ax.get_title() for ax in fig.axes)
    assert len(total.get_lines()[0].get_xdata()) == 20
    assert fig_loss_curves(metrics, 60)._suptitle.get_text().endswith("mean over 60-batch windows")


def test_readers(tmp_path):
    run = make_run(tmp_path)
    m = read_metrics(run)
    assert len(m["loss"]) == 300 and m["step"][0] == 1
    knn = read_knn(run)
    assert list(knn) == ["step", "epoch", "knn@20", "knn@200"] and len(knn["step"]) == 6
    with open(run / "diagnostics.jsonl", "a") as f:
        f.write('{"step": 300, "epo')  # killed while writing the last line
    assert [e["epoch"] for e in read_diagnostics(run)] == [1, 10, 20]
    empty = make_run(tmp_path, "bare", knn=False, diagnostics=False)
    assert read_knn(empty) is None and read_diagnostics(empty) == []
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        read_metrics(tmp_path / "nowhere")


@pytest.mark.slow
def test_plot_run_writes_every_figure(tmp_path):
    rng = np.random.default_rng(0)
    run = make_run(tmp_path)
    paths = plot_run(run, outputs_for(rng, e=8), class_names=["zero", "one", "two"], window=50)
    names = sorted(p.name for p in paths)
    line_plots = [f"{s}.{ext}" for s in ("loss", "knn", "spectrum", "collapse") for ext in ("png", "svg")]
    assert names == sorted(line_plots + ["tsne.png"])
    assert all(p.parent == run / "plots" and p.stat().st_size > 0 for p in paths)
    for p in paths:
        if p.suffix == ".png":
            assert_png(p)
        else:
            assert "<svg" in p.read_text()[:1000]


def test_missing_optional_files_are_skipped(tmp_path):
    run = make_run(tmp_path, knn=False, diagnostics=False)
    (run / "diagnostics.jsonl").write_text("")  # exists but empty: still nothing to plot
    outputs = outputs_for(np.random.default_rng(0), e=2)
    paths = plot_run(run, outputs, out_dir=tmp_path / "out", formats=("png",))
    assert sorted(p.name for p in paths) == ["embedding2d.png", "loss.png"]
    assert_png(tmp_path / "out" / "embedding2d.png")
    assert not (run / "plots").exists()


def test_single_run_figures_have_legends(tmp_path):
    run = make_run(tmp_path)
    knn_fig = fig_knn(read_knn(run), {"20": 70.5, "200": 64.0})
    labels = [t.get_text() for t in knn_fig.axes[0].get_legend().get_texts()]
    assert labels == ["embedding, k = 20", "raw pixels, k = 20: 70.5%",
                      "embedding, k = 200", "raw pixels, k = 200: 64.0%"]
    entries = read_diagnostics(run)
    spectrum = fig_spectrum(entries[-1], "run-a")
    left, right = spectrum.axes
    assert left.get_yscale() == "log"
    assert any("effective rank" in t.get_text() for t in left.get_legend().get_texts())
    assert any("hinge target γ = 1" in t.get_text() for t in right.get_legend().get_texts())
    assert "frac_below_target" in entries[0]["embedding"] and "dead_fraction" in entries[-1]["embedding"]
    collapse = fig_collapse_over_training(entries, "run-a")
    assert [len(line.get_xdata()) for line in collapse.axes[0].get_lines()] == [3, 3]
    hinge = collapse.axes[2].get_lines()[1].get_ydata()  # the projection's mean hinge, old entry and new ones
    expected = [np.maximum(0.0, 1.0 - np.asarray(e["projection"]["std"])).mean() for e in entries]
    np.testing.assert_allclose(hinge, expected, rtol=1e-6)  # recomputed from the stored std where it was missing
    dead = collapse.axes[1].get_lines()[0].get_ydata()
    assert all(0.0 <= d <= 100.0 for d in dead)


def test_tsne_is_deterministic_and_separates_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    x = np.where(labels[:, None] == 0, -5.0, 5.0) + rng.normal(size=(120, 10))
    a, b = tsne_2d(x, seed=1), tsne_2d(x, seed=1)
    np.testing.assert_array_equal(a, b)
    centroids = np.stack([a[labels == c].mean(axis=0) for c in (0, 1)])
    nearest = np.argmin(((a[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).all()


def test_tsne_edge_cases():
    assert tsne_2d(np.ones((20, 5)), seed=0).shape == (20, 2)  # complete collapse: all points equal
    assert np.isfinite(tsne_2d(np.random.default_rng(0).normal(size=(12, 80)))).all()  # small N, PCA to N
    assert np.isfinite(tsne_2d(np.random.default_rng(0).normal(size=(30, 1)))).all()  # a 1-D embedding
    with pytest.raises(ValueError, match="N >= 4"):
        tsne_2d(np.zeros((3, 5)))


@pytest.mark.slow
def test_comparison_figures(tmp_path):
    rng = np.random.default_rng(1)
    runs = {"baseline": make_run(tmp_path, "a", seed=0), "longer": make_run(tmp_path, "b", n_steps=500, seed=1),
            "no knn": make_run(tmp_path, "c", knn=False, seed=2)}
    loss = fig_compare_loss(runs, 200)
    assert [line.get_label() for line in loss.axes[0].get_lines()] == [  # each run's own effective window
        "baseline (15-batch windows)", "longer (25-batch windows)", "no knn (15-batch windows)"]
    knn = fig_compare_knn(runs)
    assert len(knn.axes[0].get_lines()) == 3  # two runs and one shared raw-pixel baseline
    spectra = fig_compare_spectra(runs)
    outputs = {"baseline": outputs_for(rng, n=200, e=2), "longer": outputs_for(rng, n=200, e=8),
               "no knn": outputs_for(rng, n=200, e=8)}
    emb = fig_compare_embeddings(outputs, ["zero", "one", "two"], tsne_points=150)
    titles = [ax.get_title() for ax in emb.axes if ax.get_title()]
    assert titles == ["baseline\n(2-D embedding)", "longer\n(t-SNE of 8-D embedding, 150 of 200 points)",
                      "no knn\n(t-SNE of 8-D embedding, 150 of 200 points)"]
    assert [t.get_text() for t in emb.legends[0].get_texts()] == ["zero", "one", "two"]
    for name, fig in [("loss", loss), ("knn", knn), ("spectra", spectra), ("embeddings", emb)]:
        (path,) = save_figure(fig, tmp_path / "cmp" / f"{name}.v1", ("png",))
        assert path.name == f"{name}.v1.png"
        assert_png(path)


def test_a_file_that_cannot_be_drawn_is_one_line_naming_it_and_no_figure_is_left(tmp_path):
    run = make_run(tmp_path)
    outputs = outputs_for(np.random.default_rng(0), e=2)
    lines = (run / "diagnostics.jsonl").read_text().splitlines()
    (run / "diagnostics.jsonl").write_text("\n".join([json.dumps({"step": 1, "embedding": [1, 2]}), *lines[1:]]))
    with pytest.raises(ValueError, match=f"{run / 'diagnostics.jsonl'} cannot be drawn \\(TypeError: ") as e:
        plot_run(run, outputs, formats=("png",))  # the loss curves came first: drawn, never written
    assert "\n" not in str(e.value) and not (run / "plots").exists()
    (run / "diagnostics.jsonl").write_text("\n".join(lines))
    for name, content in (("summary.json", '{"knn_raw_pixels": [1]}'), ("plan/plan.json", '{"results": {"a": 1}}')):
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_text(content)
        with pytest.raises(ValueError, match=f"{run / name}") as e:
            plot_run(run, outputs, formats=("png",))
        assert "\n" not in str(e.value) and not (run / "plots").exists()
        (run / name).unlink()
