"""`python -m m3dt`: expected errors end in one line naming the culprit and a non-zero exit;
`--debug` shows the traceback."""

import pytest

from m3dt.__main__ import main


def one_line_error(capsys, argv, *expected):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1, err
    for part in expected:
        assert part in err, err
    return err


def test_unknown_task_and_bad_benchmark(capsys, tmp_path):
    one_line_error(capsys, ["train", "--stage", "backbone", "--tasks", "no-such-task", "--data-dir", str(tmp_path),
                            "--out", str(tmp_path / "r")], "unknown task 'no-such-task'")
    one_line_error(capsys, ["tasks", "--benchmark", "7"], "benchmark size")


def test_missing_files(capsys, tmp_path):
    one_line_error(capsys, ["train", "--stage", "backbone", "--tasks", "pendulum-swingup", "--data-dir",
                            str(tmp_path), "--out", str(tmp_path / "r")], "pendulum-swingup.h5")
    one_line_error(capsys, ["train", "--stage", "backbone", "--tasks", "pendulum-swingup", "--data-dir",
                            str(tmp_path), "--out", str(tmp_path / "r"), "--config", str(tmp_path / "nope.yaml")],
                   "nope.yaml")
    one_line_error(capsys, ["conflict", "--checkpoint", str(tmp_path / "none.pt"), "--benchmark", "10",
                            "--data-dir", str(tmp_path), "--out", str(tmp_path / "c.csv")], "none.pt does not exist")


def test_bad_hdf5_and_bad_checkpoint(capsys, tmp_path):
    (tmp_path / "pendulum-swingup.h5").write_text("junk")
    (tmp_path / "bad.pt").write_text("junk")
    one_line_error(capsys, ["train", "--stage", "backbone", "--tasks", "pendulum-swingup", "--data-dir",
                            str(tmp_path), "--out", str(tmp_path / "r")], "pendulum-swingup.h5: not a readable HDF5")
    one_line_error(capsys, ["conflict", "--checkpoint", str(tmp_path / "bad.pt"), "--benchmark", "10",
                            "--data-dir", str(tmp_path), "--out", str(tmp_path / "c.csv")],
                   "bad.pt could not be read")


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="benchmark size"):
        main(["tasks", "--benchmark", "7", "--debug"])
