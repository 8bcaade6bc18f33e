"""The run directory: format version, config, metrics, summaries and checkpoints, read back as written."""

import json
import re

import pytest
import torch

from vicreg import __version__
from vicreg.config import build_config, with_overrides
from vicreg.rundir import (
    CHECKPOINT,
    FORMAT,
    METRIC_COLUMNS,
    RUN_FORMAT,
    MetricsWriter,
    atomic_save,
    create_run_dir,
    is_finished,
    load_checkpoint,
    load_weights,
    read_config,
    read_config_dict,
    read_diagnostics,
    read_knn,
    read_metrics,
    read_summary,
    run_format,
    same_config,
    trim_to_step,
    write_json,
)


def test_a_new_run_writes_its_format_and_config(tmp_path):
    cfg = build_config("demo", {"train.epochs": 3})
    run = create_run_dir(tmp_path / "run", cfg)
    assert json.loads((run / FORMAT).read_text()) == {"format": RUN_FORMAT, "vicreg": __version__}
    assert run_format(run) == RUN_FORMAT
    assert read_config(run) == cfg and read_config_dict(run)["train"]["epochs"] == 3
    assert same_config(run, with_overrides(cfg, {"train.progress": False}))  # the bar is not part of a run
    assert not same_config(run, with_overrides(cfg, {"train.epochs": 4}))
    assert not is_finished(run, cfg) and read_summary(run) == {}
    write_json(run / "summary.json", {"steps": 1})
    assert is_finished(run, cfg) and read_summary(run) == {"steps": 1}
    assert not list(run.glob("*.tmp"))  # written through a temporary file, renamed


def test_runs_before_the_format_file_read_as_format_1_and_newer_ones_are_refused(tmp_path):
    cfg = build_config("demo")
    run = create_run_dir(tmp_path / "run", cfg)
    (run / FORMAT).unlink()  # as the runs written before run.json existed
    assert run_format(run) == 1 and read_config(run) == cfg
    (run / FORMAT).write_text(json.dumps({"format": RUN_FORMAT + 1}))
    with pytest.raises(ValueError, match=f"run format {RUN_FORMAT + 1}, newer than this vicreg reads"):
        read_config(run)


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a run directory \\(no config.yaml in it\\)"):
        read_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    assert read_knn(tmp_path) is None and read_diagnostics(tmp_path) == [] and read_config_dict(tmp_path) == {}


def test_metrics_are_written_read_back_and_trimmed_on_resume(tmp_path):
    writer = MetricsWriter(tmp_path, keep_until_step=0, tensorboard=False)
    for step in range(1, 7):
        writer.add(step, 1 + (step - 1) // 3, 0.1 * step, torch.tensor([4.0, 1.0, 2.0, 0.5]) * step)
    writer.flush(images_per_s=100.0)
    writer.knn(3, 1, 1.5, {20: 50.0})
    writer.knn(6, 2, 3.0, {20: 60.0})
    for step in (3, 6):
        writer.diagnostics({"step": step, "embedding": {"effective_rank": 1.0, "median_std": 0.5,
                                                        "dead_fraction": 0.0, "mean_hinge": 0.5}})
    writer.close()
    m = read_metrics(tmp_path)
    assert list(m) == METRIC_COLUMNS and m["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert m["loss"].tolist() == [4.0 * s for s in range(1, 7)] and m["images_per_s"].tolist() == [100.0] * 6
    assert read_knn(tmp_path)["knn@20"].tolist() == [50.0, 60.0]
    trim_to_step(tmp_path, 4)  # a checkpoint at step 4: what came after it is dropped
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2, 3, 4]
    assert read_knn(tmp_path)["step"].tolist() == [3] and [d["step"] for d in read_diagnostics(tmp_path)] == [3]


def test_the_check_sees_every_row_before_it_is_written_and_what_it_raises_stops_the_writing(tmp_path):
    seen = []

    def check(step, row):
        seen.append((step, row))
        if step == 3:
            raise FloatingPointError("refused")

    writer = MetricsWriter(tmp_path, keep_until_step=0, tensorboard=False, check=check)
    for step in (1, 2, 3, 4):
        writer.add(step, 1, 0.1, torch.tensor([float(step), 1.0, 2.0, 3.0]))
    with pytest.raises(FloatingPointError, match="refused"):
        writer.flush(images_per_s=1.0)
    assert seen == [(1, [1.0, 1.0, 2.0, 3.0]), (2, [2.0, 1.0, 2.0, 3.0]), (3, [3.0, 1.0, 2.0, 3.0])]
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2]  # the refused row and those after it: not written


def test_checkpoints_load_without_unpickling_objects(tmp_path):
    torch.save({"step": 3, "model": {"w": torch.ones(2)}}, tmp_path / CHECKPOINT)
    assert load_checkpoint(tmp_path)["step"] == 3  # a run directory or the file itself
    assert torch.equal(load_checkpoint(tmp_path / CHECKPOINT)["model"]["w"], torch.ones(2))
    torch.save({"bad": object()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refused .*evil.pt: it holds objects other than tensors and plain values"):
        load_checkpoint(tmp_path / "evil.pt")


def test_unreadable_checkpoints_are_one_line(tmp_path):
    torch.save({"step": 3, "model": {"w": torch.ones(1000)}}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save([1, 2], tmp_path / "list.pt")
    for name, message in (("cut.pt", "is not a readable checkpoint"), ("empty.pt", "is not a readable checkpoint"),
                          ("list.pt", "is not a vicreg checkpoint \\(it holds a list\\)")):
        with pytest.raises(ValueError, match=f"{name} {message}") as e:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value)


def test_a_failed_write_leaves_no_temporary_file_and_names_the_path(tmp_path, monkeypatch):
    def full_disk(obj, path):  # what torch.save raises when the disk fills up
        open(path, "wb").write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=f"could not write {tmp_path / CHECKPOINT}: .*inline_container.cc:672.* "
                                      f"\\(nothing was left half-written\\)"):
        atomic_save({"step": 1}, tmp_path / CHECKPOINT)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "summary.json").mkdir()  # a file that cannot be replaced
    with pytest.raises(OSError, match="could not write .*summary.json"):
        write_json(tmp_path / "summary.json", {"a": 1})
    assert not (tmp_path / "summary.json.tmp").exists()


def test_a_new_run_never_takes_over_an_existing_one_and_bad_folders_are_one_line(tmp_path):
    cfg = build_config("demo")
    run = create_run_dir(tmp_path / "run", cfg)
    with pytest.raises(ValueError, match=f"{run} already holds a run \\(config.yaml\\): resume it with"):
        create_run_dir(run, cfg)
    assert create_run_dir(run, cfg, resume=True) == run  # what --resume does
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=f"cannot create the run directory {tmp_path / 'file' / 'run'}: "):
        create_run_dir(tmp_path / "file" / "run", cfg)  # train.out_dir that is a file


def test_resume_trimming_drops_rows_cut_short_by_a_kill(tmp_path):
    (tmp_path / "metrics.csv").write_text(",".join(METRIC_COLUMNS) + "\n1,1,0.1,5,1,1,1,9\n2,1,0.1,4,1,1,1,9\n"
                                          "3,1,0.1,3,1,1,1,9\n1")  # the row of step 14 cut after its first digit
    (tmp_path / "diagnostics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"st')
    trim_to_step(tmp_path, 2)
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2]
    assert read_diagnostics(tmp_path) == [{"step": 1}, {"step": 2}]
    trim_to_step(tmp_path, 5)
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2]


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_damaged_config_yaml_is_one_line_naming_it(tmp_path):
    run = create_run_dir(tmp_path / "run", build_config("demo"))
    path = run / "config.yaml"
    text = path.read_text()
    for content, message in ((b"", "is empty"), (b"\x89PNG\r\n\x1a\n\x00", "is not a text file (byte 0 is not UTF-8)"),
                             (b"- a\n- b\n", "does not hold a mapping of config sections (it holds a list)"),
                             (b"data: [1,\n", "is not valid YAML, line 2, column 1"),
                             (b"version: '3'\nservices: {}\n", "unknown config key 'version'"),
                             (text.replace("gamma: 1.0", "gamma: .nan").encode(), "loss.gamma=nan is not valid"),
                             (text.replace("lr: 0.004", "lr: .inf").encode(), "optim.lr=inf is not valid"),
                             (text.replace("\n  seed: 0", f"\n  seed: {10 ** 30}").encode(), "train.seed=1000000000"),
                             (text.replace("  epochs: 40", "  epochs: -1").encode(), "train.epochs=-1 is not valid")):
        path.write_bytes(content)
        with pytest.raises(ValueError) as e:
            read_config(run)
        assert _one_line(e).startswith(f"{path}") and message in _one_line(e), (content[:40], _one_line(e))


def test_a_damaged_run_json_is_one_line_naming_it(tmp_path):
    run = create_run_dir(tmp_path / "run", build_config("demo"))
    for content, message in (('{"format": ', "is not valid JSON (line 1, column 12"), ("[1, 2]", "holds a JSON list"),
                             ('{"format": "abc"}', "format='abc' is not valid: expected a positive integer"),
                             ("", "is empty")):
        (run / FORMAT).write_text(content)
        with pytest.raises(ValueError, match=re.escape(message)) as e:
            read_config(run)
        assert _one_line(e).startswith(str(run / FORMAT))


def test_damaged_metrics_knn_and_diagnostics_are_one_line_naming_the_file_and_line(tmp_path):
    rows = "1,1,0.1,5,1,1,1,9\n2,1,0.1,4,1,1,1,9\n"
    (tmp_path / "metrics.csv").write_text(",".join(METRIC_COLUMNS) + "\n" + rows + "3,1,0.1,3,1,1,1,9\n4,1,0.")
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2, 3]  # a last row cut short by a kill: skipped
    for content, message in (("name,age\nann,3\n", "does not have the columns vicreg writes (its header is "
                                                    "'name,age'; no step, epoch"),
                             (",".join(METRIC_COLUMNS) + "\n1,1,abc,5,1,1,1,9\n" + rows, "line 2: 'abc' is not a "
                                                                                        "number"),
                             (",".join(METRIC_COLUMNS) + "\n1,1\n" + rows, "line 2: 2 values where the header names 8"),
                             ("step,epoch\x00", "is not a text file (it holds NUL bytes)"), ("", "is empty")):
        (tmp_path / "metrics.csv").write_text(content)
        with pytest.raises(ValueError, match=re.escape(message)) as e:
            read_metrics(tmp_path)
        assert _one_line(e).startswith(str(tmp_path / "metrics.csv"))
        if content:  # what resuming reads too (an empty metrics.csv is made again, with its header)
            with pytest.raises(ValueError, match=re.escape(message)):
                trim_to_step(tmp_path, 1)
    (tmp_path / "knn.csv").write_text("step,epoch,knn@x\n1,1,50\n")
    with pytest.raises(ValueError, match="knn.csv does not have the columns vicreg writes \\(knn@K for each k"):
        read_knn(tmp_path)
    (tmp_path / "diagnostics.jsonl").write_text('{"step": 1}\n[1, 2]\n{"step": 3}\n')
    with pytest.raises(ValueError, match="diagnostics.jsonl, line 2 is not a mapping with an integer step"):
        read_diagnostics(tmp_path)
    (tmp_path / "summary.json").write_text("[1]")
    with pytest.raises(ValueError, match="summary.json holds a JSON list where a mapping is expected"):
        read_summary(tmp_path)


def test_resuming_with_an_empty_knn_csv_starts_it_again(tmp_path):
    (tmp_path / "knn.csv").write_text("")
    trim_to_step(tmp_path, 3)
    assert not (tmp_path / "knn.csv").exists()  # the next evaluation writes it with its header
    assert read_metrics(tmp_path)["step"].tolist() == []  # metrics.csv made with its header


def test_damaged_checkpoints_are_refused_in_one_line_naming_the_file_and_the_tensor(tmp_path):
    good = {"config": {}, "step": 3, "model": {"w": torch.ones(4), "n": torch.tensor(2)}}
    cases = {"nan.pt": ({**good, "model": {"w": torch.tensor([1.0, float("nan")])}},
                        "is not a usable checkpoint: model.w has NaN (a damaged file"),
             "inf.pt": ({**good, "model": {"w": torch.tensor([float("inf")])}},
                        "is not a usable checkpoint: model.w has an infinite value"),
             "text.pt": (b"hello world\n", "is not a readable checkpoint (truncated or not a checkpoint: "),
             "png.pt": (b"\x89PNG\r\n\x1a\n", "is not a readable checkpoint (truncated or not a checkpoint: "
                                             "Unsupported operand 80)"),  # a picture, not an unsafe pickle
             "model.pt": ({**good, "model": [1, 2]}, "is not a usable checkpoint: its model is not a mapping of "
                                                     "names to tensors"),
             "step.pt": ({**good, "step": "abc"}, "is not a usable checkpoint: step='abc' is not a number of steps"),
             "config.pt": ({**good, "config": [1]}, "is not a usable checkpoint: its config is a list, not a mapping"),
             "nostep.pt": ({"config": {}, "model": {}}, "is not a vicreg checkpoint (no 'step' in it)")}
    for name, (content, message) in cases.items():
        if isinstance(content, bytes):  # on "hello world" torch.load raises a KeyError
            (tmp_path / name).write_bytes(content)
        else:
            torch.save(content, tmp_path / name)
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name} {message}")) as e:
            load_checkpoint(tmp_path / name, require=("model", "step"))
        _one_line(e)


def test_load_weights_refuses_what_load_state_dict_would_cast_silently():
    module = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="weight is torch.int64 where the model holds torch.float32"):
        load_weights(module, {"weight": torch.zeros(2, 2, dtype=torch.int64), "bias": torch.zeros(2)})
    load_weights(module, {"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    assert torch.equal(module.weight.detach(), torch.ones(2, 2))
