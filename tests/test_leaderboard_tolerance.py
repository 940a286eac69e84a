"""What real sweeps leave behind: corrupt and partial JSONs, runs in progress, nothing valid at all."""

from __future__ import annotations

import json

import pandas as pd

from peftbench.cli.leaderboard import main as leaderboard_main
from peftbench.results.leaderboard import build
from tests.test_leaderboard_reference import write_run


def _problems(tmp_path):
    return pd.read_csv(tmp_path / "leaderboard" / "problems.csv")


def test_corrupt_and_partial_jsons_are_skipped_with_path_and_reason(tmp_path, capsys):
    good = write_run(tmp_path, task="cifar", acc=70.0)
    truncated = write_run(tmp_path, task="dtd", acc=60.0)
    truncated.write_text(truncated.read_text()[:40])  # a copy cut short
    no_accuracy = write_run(tmp_path, task="svhn", metrics={"trainable_params": 10, "trainable_params_without_head": 5})
    no_task = write_run(tmp_path, task="eurosat")
    res = json.loads(no_task.read_text())
    del res["task"]
    no_task.write_text(json.dumps(res))
    a_list = write_run(tmp_path, task="kitti")
    a_list.write_text("[1, 2]")

    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 0
    err = capsys.readouterr().err
    for path in (truncated, no_accuracy, no_task, a_list):
        assert f"skipped {path}" in err
    assert "JSONDecodeError" in err and "accuracy" in err and "no task" in err and "Traceback" not in err
    problems = _problems(tmp_path).set_index("result_path")
    assert set(problems.loc[[str(truncated), str(no_accuracy), str(no_task), str(a_list)], "status"]) == {"unreadable"}
    table = pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv").iloc[0]
    assert table["cifar"] == 70.0 and table["tasks_present"] == 1
    runs = pd.read_csv(tmp_path / "leaderboard" / "runs.csv")
    assert runs["result_path"].tolist() == [str(good)]


def test_runs_in_progress_are_counted_not_averaged(tmp_path, capsys):
    write_run(tmp_path, task="cifar", seed=0, acc=70.0)
    write_run(tmp_path, task="cifar", seed=1, status="running")  # the record a run writes at its start
    started = tmp_path / "runs" / "vtab" / "dtd" / "vit_b16_in21k" / "lora" / "final-seed0-0123abcd"
    started.mkdir(parents=True)  # a run folder whose JSON is not written yet
    (started / "metrics.csv").write_text("epoch\n")

    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 0
    assert "2 run(s) in progress" in capsys.readouterr().out
    problems = _problems(tmp_path)
    assert (problems["status"] == "in_progress").sum() == 2
    assert str(started / "result.json") in set(problems["result_path"])
    table = pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv").iloc[0]
    assert table["cifar"] == 70.0 and table["cifar_n"] == 1 and table["dtd_n"] == 0


def test_nothing_valid_exits_nonzero_with_a_message(tmp_path, capsys):
    broken = tmp_path / "runs" / "vtab" / "cifar" / "x" / "result.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("")
    write_run(tmp_path, task="dtd", status="running")
    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "no finished, readable run JSON" in err and "1 unreadable, 1 in progress" in err
    assert "Traceback" not in err
    assert (tmp_path / "leaderboard" / "problems.csv").exists()  # still written, to show what is wrong


def test_failed_runs_count_as_valid_records(tmp_path):
    write_run(tmp_path, task="cifar", status="failed")
    board = build(tmp_path)
    assert board.valid_runs == 1 and "vtab1k" not in board.written
    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 0


def test_missing_reference_folder_is_a_clear_error(tmp_path, capsys):
    write_run(tmp_path, task="cifar")
    assert leaderboard_main(["--results-dir", str(tmp_path), "--reference-dir", str(tmp_path / "nope"),
                             "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "no reference folder" in err and "Traceback" not in err


def test_malformed_reference_table_is_a_clear_error(tmp_path, capsys):
    write_run(tmp_path, task="cifar")
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "vtab.csv").write_text("suite,backbone,method,display_name\nvtab,vit_b16_in21k,lora,LoRA\n")
    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "lacks the column(s) source" in err and "Traceback" not in err


def test_interrupted_run_with_a_checkpoint_is_in_progress(tmp_path, capsys):
    from peftbench.engine.checkpoint import RESUME_META

    write_run(tmp_path, task="cifar", seed=0, acc=70.0)
    interrupted = write_run(tmp_path, task="cifar", seed=1, status="failed")
    (interrupted.parent / RESUME_META).write_text('{"epoch": 7}')
    plain_failure = write_run(tmp_path, task="dtd", status="failed")
    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 0
    assert "1 run(s) in progress" in capsys.readouterr().out
    problems = _problems(tmp_path).set_index("result_path")
    assert problems.loc[str(interrupted), "status"] == "in_progress"
    assert "after epoch 7" in problems.loc[str(interrupted), "message"]
    assert problems.loc[str(plain_failure), "status"] == "failed"
