"""The command line: one-line errors, presets, config printing, a tiny training run."""

import pytest
import yaml

from vicreg.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--loss.muu", "1"], "vicreg: error: unknown config key 'loss.muu' (known keys in loss:"),
        (["train", "--loss.mu", "abc"], "vicreg: error: loss.mu='abc' is not valid: expected a number"),
        (["train", "--preset", "nope"], "vicreg: error: unknown preset 'nope'"),
        (["train", "--optim.name", "adam"], "vicreg: error: optim.name='adam' is not valid: expected one of"),
        (["train", "--resume", "/nonexistent/run"], "vicreg: error: /nonexistent/run is not a run directory"),
        (["train", "--model.expander", "[64,{"], "vicreg: error: model.expander='[64,{' is not valid: expected a "
                                                 "comma-separated list of integers"),
    ],
)
def test_bad_input_is_one_line_on_stderr(argv, message, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert message in err
    assert err.count("\n") == 1


def test_in_a_job_rank_0_says_what_every_rank_shares_and_the_others_only_their_own(monkeypatch, capsys):
    from vicreg.cli import report_error
    from vicreg.config import ConfigError
    from vicreg.errors import FollowedRank0, JobStopped, NodeConfigError

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    # every rank has these: rank 0 says them, the others exit with 0 so that torchrun waits for rank 0
    assert report_error(ConfigError("train.batch_size=7 is not valid with 2 processes"), 2) == 0
    assert report_error(FollowedRank0("stopped with rank 0, which found a failing loss"), 1) == 0
    assert report_error(NodeConfigError("4 processes on a node with 2 GPU(s)"), 1) == 0  # local rank 0 says it
    assert capsys.readouterr().err == ""
    assert report_error(FileNotFoundError("no such file: /data/x"), 1) == 1  # this rank's own problem
    assert report_error(JobStopped("rank 1: the job stopped (...)"), 1) == 1  # already names its rank
    assert capsys.readouterr().err.splitlines() == ["vicreg: error: rank 1: no such file: /data/x",
                                                    "vicreg: error: rank 1: the job stopped (...)"]
    monkeypatch.setenv("RANK", "9")  # local rank 0 of another node
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert report_error(NodeConfigError("4 processes on a node with 2 GPU(s)"), 1) == 1
    assert capsys.readouterr().err == "vicreg: error: rank 9: 4 processes on a node with 2 GPU(s)\n"
    monkeypatch.setenv("RANK", "0")
    assert report_error(ConfigError("train.batch_size=7 is not valid with 2 processes"), 2) == 2
    assert capsys.readouterr().err == "vicreg: error: train.batch_size=7 is not valid with 2 processes\n"


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "--preset", "seed", "--loss.mu", "1"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["preset"] == "seed" and cfg["loss"]["mu"] == 1.0 and cfg["model"]["embedding_dim"] == 50


def test_presets_lists_everything(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "seed", "resnet18-cifar", "resnet18-fashion", "small_cnn", "vgg16", "grey28"):
        assert name in out


def test_train_prints_run_dir_and_knn(tmp_path, capsys):
    code = main(["train", "--train.epochs", "1", "--train.batch_size", "128", "--data.image_size", "8",
                 "--model.expander", "32,32", "--train.out_dir", str(tmp_path), "--train.progress", "false"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"run directory: {tmp_path}" in out
    assert "k-NN top-1, learned embedding, test split: k=20:" in out
    assert "k-NN top-1, raw pixels,        test split: k=20:" in out


def test_resume_from_the_command_line(tmp_path, capsys):
    base = ["--train.epochs", "1", "--train.batch_size", "128", "--data.image_size", "8", "--model.expander", "32,32",
            "--train.progress", "false", "--train.out_dir", str(tmp_path), "--train.name", "r"]
    assert main(["train", *base]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r"), "--train.epochs", "5"]) == 2
    assert "vicreg: error: --resume cannot change train.epochs" in capsys.readouterr().err
    # a finished run resumes to the same end: nothing left to train, the summary is printed again
    assert main(["train", "--resume", str(tmp_path / "r"), "--train.progress", "false"]) == 0
    out = capsys.readouterr().out
    assert "k-NN top-1, learned embedding" in out and "trained from epoch 1 to 1 (resumed; 1 in all)" in out
    # the same name again: a new run never takes over an existing one
    assert main(["train", *base]) == 2
    err = capsys.readouterr().err
    assert err == (f"vicreg: error: {tmp_path / 'r'} already holds a run (config.yaml, checkpoint.pt, metrics.csv, "
                   f"summary.json): resume it with `vicreg train --resume {tmp_path / 'r'}`, or choose another "
                   f"train.name (a new run never overwrites one)\n")


def test_config_file_round_trip(tmp_path, capsys):
    assert main(["config", "--preset", "seed", "--loss.nu", "0"]) == 0
    (tmp_path / "c.yaml").write_text(capsys.readouterr().out)
    assert main(["config", "--config", str(tmp_path / "c.yaml"), "--train.epochs", "3"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["preset"] == "seed" and cfg["loss"]["nu"] == 0.0 and cfg["train"]["epochs"] == 3
    (tmp_path / "partial.yaml").write_text("loss:\n  mu: 2\n")
    assert main(["config", "--config", str(tmp_path / "partial.yaml")]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["preset"] == "demo" and cfg["loss"]["mu"] == 2.0


def test_an_error_naming_a_value_with_line_breaks_or_control_characters_stays_one_line(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "two\nlines\x1b.yaml")]) == 2
    assert capsys.readouterr().err == f"vicreg: error: cannot read {tmp_path}/two\\nlines\\x1b.yaml: No such file or " \
                                      f"directory\n"
    with pytest.raises(SystemExit) as e:  # argparse's own errors: one line too
        main(["presets", "x\ny", "\u202e"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("vicreg: error: unexpected arguments: x\\ny \\u202e (see `vicreg --help`)\n")


def test_the_preset_option_wins_over_the_files_preset_and_no_other_name_is_kept(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("preset: ../../x\nloss:\n  mu: 2\n")
    assert main(["config", "--preset", "seed", "--config", str(tmp_path / "c.yaml")]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["preset"] == "seed" and cfg["loss"]["mu"] == 2.0 and cfg["model"]["head"] == "seed"
    assert main(["config", "--config", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.startswith("vicreg: error: unknown preset '../../x' (known presets: demo, seed")


def test_a_run_name_with_a_path_in_it_is_refused_before_anything_is_written(tmp_path, capsys):
    for name in ("a/b", "../outside", ".."):
        assert main(["train", "--train.out_dir", str(tmp_path / "runs"), "--train.name", name]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"vicreg: error: train.name={name!r} is not valid: a run name is one folder name")
        assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_fields_set_but_not_used_are_noted_once_on_stderr(tmp_path, capsys):
    assert main(["config", "--model.embedding_dim", "64", "--optim.momentum", "0.5", "--train.compile", "false",
                 "--train.compile_mode", "default"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ("vicreg: note: model.embedding_dim=64 is not used: model.head is 'none'\n"
                            "vicreg: note: optim.momentum=0.5 is not used: optim.name is 'adamw' (momentum is for lars "
                            "and sgd)\n"
                            "vicreg: note: train.compile_mode='default' is not used: train.compile is false\n")
    assert yaml.safe_load(captured.out)["model"]["embedding_dim"] == 64  # still printed as set
    assert main(["train", "--train.epochs", "0", "--optim.eta", "0.5"]) == 2  # a bad config: its error alone
    assert capsys.readouterr().err == "vicreg: error: train.epochs=0 is not valid: must be >= 1\n"


def test_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden(monkeypatch, capsys):
    import vicreg.cli.train_commands as commands

    def raises(error):
        def handler(args):
            raise error
        return handler

    alloc = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                         "you tried to allocate 4000000000000 bytes. Error code 12 (Cannot allocate memory)\nframe #0")
    monkeypatch.setattr(commands, "config_command", raises(alloc))
    assert main(["config"]) == 1
    assert capsys.readouterr().err == (
        "vicreg: error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000000 "
        "bytes. Error code 12 (Cannot allocate memory)): a size in the config or the options is too large for this "
        "machine\n")
    monkeypatch.setattr(commands, "config_command", raises(MemoryError()))
    assert main(["config"]) == 1
    assert capsys.readouterr().err == ("vicreg: error: out of memory (MemoryError): a size in the config or the "
                                       "options is too large for this machine\n")
    monkeypatch.setattr(commands, "config_command", raises(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
        main(["config"])


def test_an_empty_resume_preset_or_config_is_refused_not_taken_as_left_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --resume '' trained the demo preset for 40 epochs into ./runs
    for option, message in (("--resume", "--resume '' is not valid: give the run directory to continue"),
                            ("--preset", "unknown preset '' (known presets: demo, seed"),
                            ("--config", "cannot read '': No such file or directory")):
        assert main(["train", option, ""]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"vicreg: error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
