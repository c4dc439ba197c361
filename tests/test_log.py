"""The console and asm-dask.log: what a run leaves for a person, and for whoever debugs it."""

import logging
import os
import sys

from builders import OWN_LINE

from asm_dask.cli.console import LOG_NAME, RunLog
from asm_dask.errors import InputError


def test_a_runs_log_holds_its_stage_lines_and_warnings_and_the_console_only_asm_dasks_lines(local_run):
    out, done = local_run
    assert all(OWN_LINE.match(line) for line in done.stderr.splitlines()), done.stderr
    log = (out / LOG_NAME).read_text()
    assert log.startswith("==== asm-dask run ")
    for line in done.stderr.splitlines():  # every console line is in the log too
        assert line in log
    assert "[asm-dask] fit..." in log and "[asm-dask] warning: blocks of split.block_size=0.5" in log
    assert "Traceback" not in log


def _handlers():
    """Each of ``distributed``'s loggers that has handlers, and its handlers."""
    return {name: set(logger.handlers) for name, logger in logging.root.manager.loggerDict.items()
            if isinstance(logger, logging.Logger) and name.startswith("distributed") and logger.handlers}


def test_an_unexpected_error_is_one_line_naming_the_log_which_holds_the_traceback(tmp_path, capsys):
    import distributed  # noqa: F401  installs the console handlers a log replaces

    console, handlers = sys.stderr, _handlers()
    with RunLog(command="run job.yaml") as log:
        log.open(str(tmp_path / "out"))
        print("[asm-dask] fit...", file=sys.stderr)
        logging.getLogger("distributed.worker").warning("a worker's record")
        logging.getLogger("asyncio").error("Future exception was never retrieved")  # a cluster's shutdown
        try:
            {}["alpha"]
        except KeyError as exc:
            assert log.failed(exc, 1) == 1
    assert sys.stderr is console and _handlers() == handlers  # as they were
    path = tmp_path / "out" / LOG_NAME
    assert capsys.readouterr().err == (
        "[asm-dask] fit...\nasm-dask: internal error (a bug; please report it): KeyError: 'alpha' "
        f"(details: {path})\n")
    text = path.read_text()
    assert text.startswith("==== asm-dask run job.yaml (in ")
    assert "[asm-dask] fit...\n" in text and "distributed.worker WARNING: a worker's record\n" in text
    assert "asyncio ERROR: Future exception was never retrieved\n" in text
    assert "Traceback (most recent call last)" in text and text.endswith("KeyError: 'alpha'\n")


def test_a_failure_before_the_log_is_open_writes_nothing(tmp_path, capsys):
    with RunLog() as log:
        assert log.failed(InputError("job.yaml: model.cv_folds: expected an integer >= 2, got 'five'"), 2) == 2
        assert log.failed(ValueError("unexpected"), 1) == 1
    assert capsys.readouterr().err == (
        "asm-dask: error: job.yaml: model.cv_folds: expected an integer >= 2, got 'five'\n"
        "asm-dask: internal error (a bug; please report it): ValueError: unexpected "
        "(run again with --verbose for the traceback)\n")
    with RunLog(verbose=True) as log:
        try:
            int("five")
        except ValueError as exc:
            log.failed(exc, 1)
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and 'int("five")' in err
    assert err.endswith("\nasm-dask: internal error (a bug; please report it): ValueError: invalid literal "
                        "for int() with base 10: 'five'\n")
    assert list(tmp_path.iterdir()) == []


def test_each_command_appends_its_part_so_a_failed_runs_record_survives(tmp_path, capsys):
    for command in ("run first.yaml", "run second.yaml"):
        with RunLog(command=command) as log:
            log.open(str(tmp_path))
            print(f"[asm-dask] {command}", file=sys.stderr)
    text = (tmp_path / LOG_NAME).read_text()
    assert text.index("==== asm-dask run first.yaml") < text.index("[asm-dask] run first.yaml") \
        < text.index("==== asm-dask run second.yaml") < text.index("[asm-dask] run second.yaml")


def test_a_progress_line_redrawn_in_a_terminal_is_a_line_of_its_own_in_the_log(tmp_path, capsys):
    with RunLog() as log:
        log.open(str(tmp_path))
        sys.stderr.write("\rpredict cells: [##] 1/2")
        sys.stderr.write("\rpredict cells: [####] 2/2\n[asm-dask] report...\n")
    lines = (tmp_path / LOG_NAME).read_text().splitlines()[1:]
    assert lines == ["predict cells: [##] 1/2", "predict cells: [####] 2/2", "[asm-dask] report..."]


def test_the_command_line_ends_with_the_commands_status_after_the_exit_handlers_and_what_it_printed(
        local_run, tmp_path):
    """The process ends without Python's teardown of every module (``command_line``), but
    with the command's status, all it printed and the exit handlers run."""
    import subprocess

    ends = ("import atexit, sys; atexit.register(print, 'an exit handler ran'); "
            "from asm_dask.cli import command_line; sys.argv = ['asm-dask', *sys.argv[1:]]; command_line()")
    done = {}
    for args, status in ((["run", "no_such_job.yaml"], 2), (["sample", local_run[0], "--n", "40", "--out", "drawn"], 0)):
        done[args[0]] = subprocess.run([sys.executable, "-c", ends, *map(str, args)], capture_output=True, text=True,
                                       cwd=tmp_path, timeout=120)
        assert done[args[0]].returncode == status, done[args[0]].stderr
        assert done[args[0]].stdout.endswith("an exit handler ran\n")
    assert done["run"].stderr == "asm-dask: error: no_such_job.yaml: job file not found\n"
    assert "40 cells to label" in done["sample"].stdout and (tmp_path / "drawn" / "sample.csv").is_file()

    # started with standard output or error closed (`>&-`, `2>&-`): the same status, the same files
    for closed, args, status in ((1, ["sample", local_run[0], "--n", "40", "--out", "unseen"], 0),
                                 (1, ["run", "no_such_job.yaml"], 2), (2, ["run", "no_such_job.yaml"], 2),
                                 (2, ["sample", local_run[0], "--n", "40", "--out", "quiet"], 0)):
        ended = subprocess.run([sys.executable, "-m", "asm_dask.cli", *map(str, args)], capture_output=closed == 2,
                               text=True, cwd=tmp_path, timeout=120, preexec_fn=lambda fd=closed: os.close(fd))
        assert ended.returncode == status, (closed, args, ended.stderr)
    assert (tmp_path / "unseen" / "sample.csv").is_file() and (tmp_path / "quiet" / "sample.csv").is_file()
