"""No user mistake is a bug: the mistakes that once crashed, hung, passed in silence or
destroyed an input, each as a user makes it.

On the command line each ends with exit status 2 (130 and 143 for Ctrl-C and ``kill``),
one line naming the culprit, and nothing written but the log; where an input was at risk,
the inputs are byte for byte what they were. Mistakes in the data a run reads are made
through the Python API, on the session's cluster: the same :class:`InputError`, whose
message the command line prints as ``asm-dask: error: MESSAGE`` (held to that by the
command line tests here and in ``test_bad_input.py``), without starting a process each.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.feather as feather
import pytest
import yaml
from builders import OWN_LINE, cli

import asm_dask
from asm_dask.errors import AsmDaskWarning, InputError


def _digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its path, with the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(done: subprocess.CompletedProcess, status: int = 2) -> str:
    """The command's single line of error (after its own progress lines, if any)."""
    assert done.returncode == status, done.stderr
    *own, last = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and all(OWN_LINE.match(line) for line in own), done.stderr
    assert last.startswith("asm-dask: "), done.stderr
    return last


def _refused(folder: Path, client) -> str:
    """The one-line message with which the run of ``folder/job.yaml`` refuses its input."""
    with pytest.raises(InputError) as error:
        asm_dask.run(folder / "job.yaml", client)
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.fixture
def inputs(country, tmp_path):
    """A copy of the small country's labels and features in ``tmp_path``, and a job file
    naming them (output ``out``)."""
    shutil.copy(country.labels, tmp_path / "labels.csv")
    shutil.copy(country.features, tmp_path / "features.feather")
    job = {"labels": {"path": "labels.csv"}, "features": {"path": "features.feather"}, "output": "out"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    return tmp_path, job


# -- an output never touches an input -----------------------------------------------------

def test_a_run_into_its_inputs_folder_is_refused_and_the_inputs_are_untouched(country, tmp_path):
    """The issue's case: labels named as the run's own labelled_cells.csv, output '.'."""
    clash = tmp_path / "clash"
    clash.mkdir()
    shutil.copy(country.labels, clash / "labelled_cells.csv")
    shutil.copy(country.features, clash / "SLE_features.feather")
    (clash / "job.yaml").write_text("labels: {path: labelled_cells.csv}\nfeatures: {path: SLE_features.feather}\n"
                                    "output: .\n")
    before = _digests(clash)
    for _ in range(2):  # the second time once crashed on the file the first had replaced
        line = _one_line(cli("run", clash / "job.yaml"))
        assert line == (f"asm-dask: error: {clash / 'labelled_cells.csv'}: lies in the output folder {clash} "
                        "(labels.path, output), where asm-dask writes its own files; choose an output folder "
                        "apart from the inputs")
        assert _digests(clash) == before  # not even a log


@pytest.mark.parametrize(("where", "message"), [
    # an input inside the folder a run clears (predictions/) or writes (figures/)
    ({"features": "out/predictions/features.feather"}, "lies in the output folder"),
    ({"labels": "out/figures/labels.csv"}, "lies in the output folder"),
    # the output inside a folder of boundaries (a File Geodatabase is one)
    ({"output": "districts.gdb/out"}, "the output folder lies inside"),
    # a feature store of the run's among its outputs
    ({"store_path": "out/store"}, "lies in the output folder"),
])
def test_no_input_lies_where_the_run_writes(inputs, where, message, client):
    folder, job = inputs
    (folder / "out" / "predictions").mkdir(parents=True)
    (folder / "out" / "figures").mkdir()
    (folder / "districts.gdb").mkdir()
    if "features" in where:
        shutil.move(folder / "features.feather", folder / where["features"])
        job["features"]["path"] = where["features"]
    if "labels" in where:
        shutil.move(folder / "labels.csv", folder / where["labels"])
        job["labels"]["path"] = where["labels"]
    if "output" in where:
        job["output"] = where["output"]
        job["report"] = {"boundaries": {"path": "districts.gdb", "name_column": "name"}}
    if "store_path" in where:
        job["features"]["store_path"] = where["store_path"]
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    before = _digests(folder)
    assert message in _refused(folder, client)
    assert _digests(folder) == before


def test_an_output_folder_of_someone_elses_files_is_refused(inputs, client):
    """A folder that holds anything but an earlier asm-dask output is a user's: a run never
    writes among a user's files (hidden ones, such as a file manager's, do not count)."""
    folder, job = inputs
    (folder / "out").mkdir()
    (folder / "out" / "notes.txt").write_text("mine")
    (folder / "out" / ".DS_Store").write_text("")
    assert _refused(folder, client) == (f"{folder / 'out'}: holds files that are not asm-dask's (notes.txt); "
                    "the output folder (output) must be new, empty, or an earlier asm-dask output")
    assert sorted(os.listdir(folder / "out")) == [".DS_Store", "notes.txt"]


@pytest.mark.parametrize(("entry", "message"), [
    ("years/field_notes_2019.csv", "years/field_notes_2019.csv: is not asm-dask's, in a folder asm-dask writes and "
                                   "clears; move it, or choose another output folder (output)"),
    ("predictions/old_predictions.csv", "predictions/old_predictions.csv: is not asm-dask's, in a folder asm-dask "
                                        "writes and clears"),
    ("metrics.json", "out: holds metrics.json but no manifest.json: not an earlier asm-dask output"),
])
def test_someone_elses_files_under_the_runs_own_names_are_refused_and_kept(inputs, entry, message, client):
    """A run clears predictions/ and removes another kind of run's years/: only where those
    are asm-dask's. A user's folder holding files of asm-dask's names, without the manifest
    of an earlier run, is a user's too (a run deleted field notes in years/ before)."""
    folder, _ = inputs
    (folder / "out" / entry).parent.mkdir(parents=True, exist_ok=True)
    (folder / "out" / entry).write_text("mine")
    before = _digests(folder)
    assert message in _refused(folder, client)
    assert _digests(folder) == before


def test_what_an_interrupted_first_run_left_is_taken_up(inputs):
    """A run stopped before its manifest leaves its log, model, figures and first
    partitions, and nothing else: the same job's checks let it go on in that folder."""
    from asm_dask.records.outputs import check_run_paths

    folder, _ = inputs
    (folder / "out" / "figures").mkdir(parents=True)
    (folder / "out" / "predictions").mkdir()
    for entry in ("asm-dask.log", "model.json", "figures/roc.png", "predictions/part-00000.parquet"):
        (folder / "out" / entry).write_text("left")
    check_run_paths(asm_dask.load_job(folder / "job.yaml"))
    (folder / "out" / "metrics.json").write_text("{}")  # written after the manifest: a user's, here
    with pytest.raises(InputError, match="holds metrics.json but no manifest.json"):
        check_run_paths(asm_dask.load_job(folder / "job.yaml"))


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_log_that_is_a_link_to_an_input_is_refused(inputs, link):
    folder, _ = inputs
    (folder / "out").mkdir()
    if link == "symbolic":
        (folder / "out" / "asm-dask.log").symlink_to(folder / "labels.csv")
        expected = f"asm-dask.log: is a link (to {folder / 'labels.csv'}); asm-dask writes and clears its own files"
    else:
        os.link(folder / "labels.csv", folder / "out" / "asm-dask.log")
        expected = "asm-dask.log: is the labels.path input"
    before = _digests(folder)
    assert expected in _one_line(cli("run", folder / "job.yaml", timeout=60))
    assert _digests(folder) == before


@pytest.mark.parametrize("name", ["predictions", "figures"])
def test_a_folder_of_the_runs_own_name_that_is_a_link_is_refused_and_what_it_leads_to_is_untouched(inputs, name,
                                                                                                     client):
    """A link named predictions/ once let a run clear the folder it led to: the inputs."""
    folder, job = inputs
    (folder / "data").mkdir()
    for source in ("labels.csv", "features.feather"):
        shutil.move(folder / source, folder / "data" / source)
    job.update(labels={"path": "data/labels.csv"}, features={"path": "data/features.feather"})
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    (folder / "out").mkdir()
    (folder / "out" / name).symlink_to(folder / "data")
    before = _digests(folder / "data")
    line = _refused(folder, client)
    assert f"{folder / 'out' / name}: is a link (to {folder / 'data'})" in line
    assert _digests(folder / "data") == before


@pytest.mark.parametrize(("make", "message"), [
    (lambda out: (out / "predictions").write_text("x"), "predictions: is a file where asm-dask writes a folder"),
    (lambda out: (out / "metrics.json").mkdir(), "metrics.json: is a folder where asm-dask writes a file"),
    (lambda out: (out / "manifest.json").write_text("[1, 2]"), "manifest.json: not a manifest of asm-dask"),
    (lambda out: (out / ".asm-dask.lock").mkdir(), ".asm-dask.lock: is a folder where asm-dask writes a file"),
    (lambda out: (out / ".asm-dask.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": "abc"})),
     ".asm-dask.lock: not a lock asm-dask can read"),
])
def test_a_damaged_output_folder_is_one_line(inputs, make, message, client):
    folder, _ = inputs
    (folder / "out").mkdir()
    make(folder / "out")
    assert message in _refused(folder, client)
    assert not (folder / "out" / "model.json").exists()


@pytest.mark.parametrize("command", ["sample", "change"])
@pytest.mark.parametrize(("out", "message"), [
    ("users", r"users: holds files that are not asm-dask's \((change|design)\.json, notes\.txt\); the output "
              r"folder \(--out\) must be new, empty, or an earlier asm-dask output"),
    ("run", r"run: lies in the output folder|run, or in it; the change goes to a folder of its own"),
    ("run/figures", r"figures: the output folder lies inside|run, or in it; the change goes to a folder of its own"),
    ("notes.txt", r"notes\.txt: is a file, expected a folder \(--out\)"),
    ("", r"^out: expected a path or URL, got ''$"),
])
def test_a_sample_or_a_change_writes_only_into_a_folder_of_its_own(local_run, tmp_path, monkeypatch, command,
                                                                   out, message):
    """``sample`` and ``change`` check their output folder as ``run`` does: never among a
    user's files (a user's own design.json or change.json was written over), never in
    the run's folder, never over a file."""
    run, _ = local_run
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "users").mkdir()
    for name in ("notes.txt", "users/notes.txt", "users/design.json", "users/change.json"):
        (tmp_path / name).write_text("mine")
    before = _digests(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as error:
        asm_dask.sample("run", 20, out=out) if command == "sample" else asm_dask.change("run", "run", out=out)
    assert re.search(message, str(error.value)), error.value
    assert _digests(tmp_path) == before
    if out == "":  # the command line's empty --out, refused before anything is read
        line = _one_line(cli(command, "run", *(["--n", 20] if command == "sample" else ["run"]), "--out", out,
                             cwd=tmp_path))
        assert line.endswith(f"argument --out: expected a folder, got '' (see asm-dask {command} --help)")


@pytest.mark.parametrize("where", ["store", "inside the store"])
def test_an_output_folder_in_the_feature_store_is_refused(inputs, where, client):
    """The default store lies beside the features; a run's outputs never mix with it."""
    folder, job = inputs
    store = folder / "features.feather.asm_dask_store"
    job.update(features={"path": "features.feather", "store": "always"},
               output=str(store if where == "store" else store / "0123456789abcdef"))
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    line = _refused(folder, client)
    if where == "store":
        assert f"{store}: lies in the output folder {store} (the feature store beside features.path, output)" in line
    else:
        assert f"the output folder lies inside {store} (output, the feature store beside features.path)" in line


def test_a_demo_into_a_folder_holding_a_users_data_is_refused(tmp_path, country):
    """data/ with the demo's file names once got written over."""
    (tmp_path / "data").mkdir()
    shutil.copy(country.labels, tmp_path / "data" / "SLE_mines.csv")
    before = _digests(tmp_path)
    line = _one_line(cli("demo", "--out", tmp_path, timeout=60))
    assert line == (f"asm-dask: error: {tmp_path}: holds files that no asm-dask demo made; the demo's folder (--out) "
                    "must be new, empty, or an earlier demo's")
    assert _digests(tmp_path) == before


def test_a_prediction_into_the_folder_of_its_features_is_refused(local_run, country, tmp_path):
    run_dir, _ = local_run
    shutil.copy(country.features, tmp_path / "features.feather")
    before = _digests(tmp_path)
    line = _one_line(cli("predict", run_dir, tmp_path / "features.feather", "--out", tmp_path, timeout=60))
    assert f"{tmp_path / 'features.feather'}: lies in the output folder {tmp_path} (FEATURES, --out)" in line
    assert _digests(tmp_path) == before


def test_a_demo_into_a_folder_of_someone_elses_files_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    line = _one_line(cli("demo", "--out", tmp_path, timeout=60))
    assert line == (f"asm-dask: error: {tmp_path}: holds files that are not asm-dask's (thesis.tex); the output "
                    "folder (--out) must be new, empty, or an earlier asm-dask output")
    assert os.listdir(tmp_path) == ["thesis.tex"]


# -- a write that fails late is the place's fault, and the run resumes -------------------

def _chattr(flag: str, path: Path) -> bool:
    return shutil.which("chattr") is not None and subprocess.run(["chattr", flag, str(path)]).returncode == 0


def _assert_manifest_claims_only_what_exists(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"
    for index in manifest["completed_partitions"]:
        assert (out / "predictions" / f"part-{index:05d}.parquet").stat().st_size > 0
    return manifest


def _run_with_immutable(folder: Path, immutable: Path) -> str:
    """The one line of error of the run of ``folder/job.yaml`` while ``immutable`` cannot
    be changed (chattr +i stops root too)."""
    if not _chattr("+i", immutable):
        pytest.skip("chattr +i needs root on a filesystem with attributes")
    try:
        return _one_line(cli("run", folder / "job.yaml", timeout=300))
    finally:
        _chattr("-i", immutable)


def test_a_folder_that_refuses_a_late_write_is_one_line_and_the_run_resumes(inputs, local_run):
    """The issue's case: figures/ made immutable."""
    folder, _ = inputs
    figures = folder / "out" / "figures"
    figures.mkdir(parents=True)
    line = _run_with_immutable(folder, figures)
    assert line == (f"asm-dask: error: {figures / 'probability_map.png'}: cannot write: operation not permitted; "
                    "once that is fixed, the same command resumes where it stopped "
                    f"(details: {folder / 'out' / 'asm-dask.log'})")
    manifest = _assert_manifest_claims_only_what_exists(folder / "out")
    assert len(manifest["completed_partitions"]) == manifest["n_partitions"]
    again = cli("run", folder / "job.yaml", timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {manifest['n_partitions']} of {manifest['n_partitions']}" in again.stderr
    assert (figures / "probability_map.png").stat().st_size > 0
    pd.testing.assert_frame_equal(_predictions(folder / "out"), _predictions(local_run[0]))


def test_an_earlier_runs_predictions_that_cannot_be_cleared_are_one_line(inputs, local_run):
    """Another job into a finished run's folder removes its files first: a folder that
    refuses it is the place's fault, one line (it was an internal error)."""
    folder, job = inputs
    shutil.copytree(local_run[0], folder / "out")
    (folder / "out" / "asm-dask.log").unlink()
    predictions = folder / "out" / "predictions"
    (folder / "job.yaml").write_text(yaml.safe_dump({**job, "split": {"seed": 7}}))
    line = _run_with_immutable(folder, predictions)
    assert re.match(rf"asm-dask: error: {re.escape(str(predictions))}(/part-\d{{5}}\.parquet)?: cannot write: "
                    "operation not permitted; once that is fixed, the same command resumes where it stopped", line), line


def _predictions(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "predictions", columns=["cell_id", "score", "probability"])
    return frame.sort_values("cell_id").reset_index(drop=True)


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(inputs, local_run):
    """The output folder on a small tmpfs: whichever write finds the disk full, it is named
    in one line, the manifest lists only partitions that exist, and with room the same
    command finishes with the predictions of a run that never ran out."""
    folder, _ = inputs
    out = folder / "out"
    out.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(out)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        line = _one_line(cli("run", folder / "job.yaml", timeout=300))
        assert line.startswith(f"asm-dask: error: {out}") and ": cannot write: no space left on device; " in line
        if (out / "manifest.json").exists():
            _assert_manifest_claims_only_what_exists(out)
        subprocess.run(["mount", "-o", "remount,size=100m", str(out)], check=True)
        again = cli("run", folder / "job.yaml", timeout=300)
        assert again.returncode == 0, again.stderr
        pd.testing.assert_frame_equal(_predictions(out), _predictions(local_run[0]))
    finally:
        subprocess.run(["umount", str(out)])


# -- user mistakes are not internal errors -----------------------------------------------

@pytest.mark.parametrize("column", ["cell_lat", "cell_id", "index_right", "geometry", "split"])
def test_a_label_column_named_as_one_of_the_runs_own_is_refused_by_name(inputs, column, client):
    folder, _ = inputs
    labels = pd.read_csv(folder / "labels.csv").assign(**{column: 1})
    labels.to_csv(folder / "labels.csv", index=False)
    line = _refused(folder, client)
    assert line.startswith(f"{folder / 'labels.csv'}: column {column!r} has a name asm-dask gives "
                           "a column of its own (reserved: label_row, geometry, cell_id, ")
    assert not (folder / "out").exists()


def test_a_label_column_named_twice_is_refused(inputs, client):
    folder, _ = inputs
    text = (folder / "labels.csv").read_text().splitlines()
    (folder / "labels.csv").write_text("\n".join([text[0] + ",label"] + [row + ",0" for row in text[1:]]) + "\n")
    position = text[0].split(",").index("label") + 1
    line = _refused(folder, client)
    assert line.startswith(f"{folder / 'labels.csv'}: column 'label' appears 2 times in the header "
                           f"(columns {position}, {len(text[0].split(',')) + 1}); keep one")


@pytest.mark.parametrize("value", [1000, 1e300, -0.5])
def test_a_proportion_inspected_outside_0_to_1_is_refused(inputs, value, client):
    folder, _ = inputs
    labels = pd.read_csv(folder / "labels.csv")
    labels.loc[6, "proportion_inspected"] = value
    labels.to_csv(folder / "labels.csv", index=False)
    line = _refused(folder, client)
    assert f"{folder / 'labels.csv'}: row 7: proportion_inspected must be a proportion from 0 to 1, got " in line


@pytest.mark.parametrize(("address", "message"), [
    ("not a url", "'not a url' is not a Dask scheduler address; expected like tcp://HOST:8786"),
    ("http://127.0.0.1:8787", "http://127.0.0.1:8787 is a web address (the dashboard's?)"),
])
def test_a_scheduler_address_that_cannot_be_one(inputs, address, message):
    folder, _ = inputs
    line = _one_line(cli("run", folder / "job.yaml", "--scheduler", address, timeout=60))
    assert line.startswith(f"asm-dask: error: --scheduler: {message}")
    assert os.listdir(folder / "out") == ["asm-dask.log"]


def test_a_scheduler_cluster_file_without_a_port(inputs):
    folder, _ = inputs
    (folder / "cluster.yaml").write_text("kind: scheduler\naddress: tcp://127.0.0.1\n")
    line = _one_line(cli("run", folder / "job.yaml", "--cluster", folder / "cluster.yaml", timeout=60))
    assert line.startswith(f"asm-dask: error: {folder / 'cluster.yaml'}: address: tcp://127.0.0.1: no host and port")


def test_a_cluster_whose_workers_cannot_hold_a_task_is_refused_before_it_starts(inputs):
    """memory_limit: 1KB once sat at 'open features...' for ever, holding the lock."""
    folder, _ = inputs
    (folder / "cluster.yaml").write_text("kind: local\nmemory_limit: 1KB\n")
    line = _one_line(cli("run", folder / "job.yaml", "--cluster", folder / "cluster.yaml", timeout=60))
    assert "memory_limit: '1KB' is too little for a Dask worker to run a task" in line
    assert os.listdir(folder / "out") == ["asm-dask.log"]


@pytest.mark.parametrize(("arguments", "message"), [
    (["--cells", "0"], "argument --cells: expected a whole number >= 100, got '0'"),
    (["--cells", "-5"], "argument --cells: expected a whole number >= 100, got '-5'"),
    (["--cells", "3"], "argument --cells: expected a whole number >= 100, got '3'"),
    (["--features", "0"], "argument --features: expected a whole number >= 1, got '0'"),
    (["--seed", "-1"], "argument --seed: expected a whole number from 0 to 4294967295, got '-1'"),
])
def test_demo_arguments_out_of_range(tmp_path, arguments, message):
    done = cli("demo", "--out", tmp_path / "demo", *arguments, timeout=60)
    assert _one_line(done) == f"asm-dask: error: asm-dask demo: {message} (see asm-dask demo --help)"
    assert not (tmp_path / "demo").exists()


def test_a_feature_column_without_a_finite_value_is_named(inputs, client):
    """Every labelled cell non-finite once blamed the labels' coordinates."""
    folder, _ = inputs
    table = feather.read_table(folder / "features.feather").to_pandas()
    table["feature_7"] = np.nan
    feather.write_feather(table, folder / "features.feather")
    line = _refused(folder, client)
    assert line.startswith(f"{folder / 'features.feather'}: no labelled cell has complete "
                           "features: column(s) feature_7 hold no finite value in the ")


def test_a_feature_far_wider_than_the_rest_is_said_and_the_edge_flagged(inputs, client):
    """Values near float32's limit in every tenth row of one column once gave a chance-level
    model with its alpha at the grid's end, and not a word."""
    folder, job = inputs
    table = feather.read_table(folder / "features.feather").to_pandas()
    table.loc[::10, "feature_3"] = 3e38
    feather.write_feather(table, folder / "features.feather")
    settings = yaml.safe_load((folder / "job.yaml").read_text())
    raw = asm_dask.load_job({**settings, "model": {"standardize": False}}, base=folder)
    with pytest.warns(AsmDaskWarning, match=r"feature\(s\) feature_3 spread over 1e\+06 times wider than the "
                      "typical feature over the training labels"):
        asm_dask.run(raw, client)
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    at_end = metrics["best_alpha"] in (min(metrics["alphas_searched"]), max(metrics["alphas_searched"]))
    assert metrics["alpha_at_grid_edge"] == at_end
    assert any("feature_3 spread over" in w for w in metrics["warnings"])
    # by default the data choose: standardized, ridge sees every feature, and nothing to say
    chosen = asm_dask.run(folder / "job.yaml", client).metrics
    assert chosen.standardize is True and chosen.cv_auc_by_scaling["standardized"] > chosen.cv_auc_by_scaling["raw"]
    assert not any("feature_3 spread over" in w for w in chosen.warnings)


# -- signals ----------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_prediction_says_so_releases_its_lock_and_resumes(local_run, country, tmp_path, signum):
    """Ctrl-C reaches every process of the command (the terminal's process group), kill
    only asm-dask's."""
    from asm_dask.demo import make_country

    run_dir, _ = local_run
    other = make_country(tmp_path / "other", n_cells=1200, n_features=40, seed=22, rows_per_batch=100)
    out = tmp_path / "applied"
    command = [sys.executable, "-m", "asm_dask.cli", "predict", str(run_dir), str(other.features), "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 300
    while True:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        try:
            if json.loads((out / "manifest.json").read_text())["completed_partitions"]:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.01)
    if signum == signal.SIGINT:
        os.killpg(first.pid, signum)
    else:
        first.send_signal(signum)
    stdout, stderr = first.communicate(timeout=120)
    done = subprocess.CompletedProcess(command, first.returncode, stdout, stderr)
    name = signal.Signals(signum).name
    assert _one_line(done, 128 + signum) == (f"asm-dask: interrupted ({name}); run the same command again to "
                                             f"resume (details: {out / 'asm-dask.log'})")
    assert not (out / ".asm-dask.lock").exists()
    assert f"interrupted by {name}" in (out / "asm-dask.log").read_text()
    again = cli("predict", run_dir, other.features, "--out", out)
    assert again.returncode == 0, again.stderr
    assert "resuming: " in again.stderr
    fresh = cli("predict", run_dir, other.features, "--out", tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    pd.testing.assert_frame_equal(_predictions(out), _predictions(tmp_path / "fresh"))


def test_output_piped_to_a_reader_that_stops_early_is_no_error(tmp_path):
    """`asm-dask demo | head -1`: the reader goes away; asm-dask stops as a shell tool does."""
    reader = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    done = subprocess.run([sys.executable, "-m", "asm_dask.cli", "demo", "--out", str(tmp_path / "demo"),
                           "--cells", "300", "--features", "20"], stdout=reader.stdin, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    reader.stdin.close()
    assert reader.stdout.read().decode().startswith("demo country: ")
    assert done.returncode == 128 + signal.SIGPIPE, done.stderr
    assert "error" not in done.stderr


# -- more of the same classes, found by trying inputs as a new user -------------------------

def _rewrite_features(folder: Path, change) -> None:
    table = feather.read_table(folder / "features.feather").to_pandas()
    feather.write_feather(change(table), folder / "features.feather")


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.assign(image_id=np.arange(len(t))), "column 'image_id' is int64, expected text like"),
    (lambda t: t.drop(columns="image_id").assign(lat="north", lon=0.0),
     "coordinate column 'lat' is large_string, expected numbers of degrees"),
])
def test_a_coordinate_column_of_the_wrong_type_is_named(inputs, change, message, client):
    folder, _ = inputs
    _rewrite_features(folder, change)
    assert f"{folder / 'features.feather'}: {message}" in _refused(folder, client)


def test_integer_features_beyond_float32s_precision_are_read(inputs, country, client):
    """An int64 column with values past 2^24 once failed Arrow's checked cast to float32."""
    folder, _ = inputs
    _rewrite_features(folder, lambda t: t.assign(feature_3=(t["feature_3"] * 1e6).astype(np.int64) + 2**40))
    assert asm_dask.run(folder / "job.yaml", client).metrics.n_cells == country.n_cells


def test_a_feature_column_numbered_past_a_billion_costs_nothing(inputs, client):
    """The gap note counted the missing numbers by listing them all: 30 digits took 23 GB."""
    folder, _ = inputs
    _rewrite_features(folder, lambda t: t.rename(columns={"feature_39": "feature_" + "9" * 30}))
    with pytest.warns(AsmDaskWarning) as said:
        asm_dask.run(folder / "job.yaml", client)
    assert any(f"feature numbers have gaps: {10**30 - 1 - 39} missing between feature_0 and feature_{'9' * 30} "
               "(first: 39)" in str(w.message) for w in said)


@pytest.mark.parametrize("service", ["web", "ssh"])
def test_a_scheduler_address_where_another_service_listens_is_one_line(inputs, service):
    """The dashboard's port with tcp://, or an SSH server: once a hang, or a frame of exabytes."""
    import http.server
    import threading

    folder, _ = inputs
    if service == "web":
        server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port, stop = server.server_address[1], server.shutdown
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def greet():
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")

        threading.Thread(target=greet, daemon=True).start()
        stop = listener.close
    try:
        # A web server waits for a whole request: the answer comes at the connect timeout.
        done = cli("run", folder / "job.yaml", "--scheduler", f"tcp://127.0.0.1:{port}", timeout=120,
                   env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
    finally:
        stop()
    line = _one_line(done)
    assert line.startswith(f"asm-dask: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: ")
    said = line.split(f"tcp://127.0.0.1:{port}: ", 1)[1].split(" (details: ")[0]
    assert said == ("nothing answered as a Dask scheduler within 3 s" if service == "web" else
                    "it does not answer as a Dask scheduler (MemoryError)")


@pytest.mark.parametrize(("address", "message"), [
    ("tcp://a:b@127.0.0.1:8786", "'a:b@127.0.0.1' is not a host name or address"),
    ("tcp://tcp://127.0.0.1:1", "'tcp://127.0.0.1' is not a host name or address"),
    ("ucx://127.0.0.1:8786", "unknown scheme 'ucx'"),
])
def test_more_addresses_that_cannot_be_a_schedulers(inputs, address, message):
    folder, _ = inputs
    assert message in _one_line(cli("run", folder / "job.yaml", "--scheduler", address, timeout=60))


@pytest.mark.parametrize(("settings", "message"), [
    ("memory_limit: .inf", "memory_limit: expected a size such as '4GB', a fraction"),
    ("worker_timeout: .inf", "worker_timeout: expected a number of seconds > 0, got inf"),
    ("processes: true\nn_workers: 200", "shared by n_workers: 200 is "),
    ("adapt: {minimum: 1, maximmum: 3}", "adapt: unknown key(s) maximmum"),
])
def test_more_cluster_settings_that_cannot_work(inputs, settings, message):
    folder, _ = inputs
    (folder / "cluster.yaml").write_text(f"kind: local\n{settings}\n")
    assert message in _one_line(cli("run", folder / "job.yaml", "--cluster", folder / "cluster.yaml", timeout=60))


def test_a_cluster_file_that_is_a_folder(inputs):
    folder, _ = inputs
    (folder / "cluster.yaml").mkdir()
    line = _one_line(cli("run", folder / "job.yaml", "--cluster", folder / "cluster.yaml", timeout=60))
    assert f"{folder / 'cluster.yaml'}: is a folder, expected a cluster file" in line


@pytest.mark.parametrize(("damage", "message"), [
    (lambda run: (run / "metrics.json").write_text("[]"), "metrics.json: missing, not JSON, or not a run's metrics"),
    (lambda run: (run / "manifest.json").write_text("[]"), "manifest.json: not a manifest of asm-dask"),
    (lambda run: (run / "manifest.json").write_text('{"status": "complete"}'),
     "manifest.json: not a complete manifest of an asm-dask run (no run_key, model_hash, inputs, versions, settings)"),
])
def test_a_damaged_run_folder_is_one_line_for_predict(local_run, country, tmp_path, damage, message):
    run_dir = tmp_path / "run"
    shutil.copytree(local_run[0], run_dir)
    damage(run_dir)
    with pytest.raises(InputError) as refused:
        asm_dask.predict(run_dir, country.features, out=tmp_path / "applied")
    assert message in str(refused.value) and not (tmp_path / "applied").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.iloc[:0], "no labels: the file holds its header only"),
    (lambda f: f.assign(confidence=True), "column 'confidence' holds true/false; expected numbers"),
    (lambda f: f.assign(proportion_inspected=True), "column 'proportion_inspected' holds true/false"),
    (lambda f: f.assign(confidence=np.where(np.arange(len(f)) == 4, np.inf, 5.0)),
     "row 5: column 'confidence' must be a finite number, got inf"),
])
def test_labels_that_are_clearly_wrong_are_named(inputs, change, message, client):
    folder, _ = inputs
    change(pd.read_csv(folder / "labels.csv")).to_csv(folder / "labels.csv", index=False)
    assert message in _refused(folder, client)


def test_labels_written_as_true_and_false_are_ones_and_zeros(inputs, local_run, client):
    folder, _ = inputs
    labels = pd.read_csv(folder / "labels.csv")
    labels.assign(label=labels["label"] == 1).to_csv(folder / "labels.csv", index=False)
    asm_dask.run(folder / "job.yaml", client)
    pd.testing.assert_frame_equal(_predictions(folder / "out"), _predictions(local_run[0]))


@pytest.mark.parametrize("store", ["never", "always"])
def test_a_cell_size_larger_than_the_grids_is_named_not_a_duplicate_cell(inputs, client, store):
    """Cells of 0.02 degrees on centroids 0.01 apart once read as two rows for one cell."""
    folder, job = inputs
    job["features"].update(cell_size=0.02, store=store)
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    assert _refused(folder, client) == (
        f"{folder / 'features.feather'}: cell centroids are 0.01 degrees apart (the latitudes 8.485 and 8.495 of "
        "rows 596 and 557), where cells of features.cell_size=0.02 degrees would overlap; set features.cell_size to "
        "the side of the grid's cells")
    assert not (folder / "out").exists()


@pytest.mark.parametrize("store", ["never", "always"])
def test_two_cells_nearer_than_a_cell_are_named_by_their_rows(inputs, client, store):
    """A centroid moved 0.004 degrees (a near-duplicate cell) is named with its neighbour:
    their latitudes and their rows of the features file."""
    folder, job = inputs
    table = pd.read_feather(folder / "features.feather")
    lat = table["image_id"].str.extract(r"lat_(.*)__lon_")[0].str.replace("--", ".").astype(float)
    row = int(np.flatnonzero(lat == lat.min())[0])
    moved = f"{lat[row] + 0.004:.3f}".replace(".", "--")
    table.loc[row, "image_id"] = table.loc[row, "image_id"].replace(f"lat_{lat[row]:.3f}".replace(".", "--"),
                                                                    f"lat_{moved}")
    table.to_feather(folder / "features.feather")
    job["features"].update(store=store)
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    message = _refused(folder, client)
    assert re.search(rf"cell centroids are 0.004 degrees apart \(the latitudes {lat[row]:g} and "
                     rf"{lat[row] + 0.004:g} of rows \d+ and {row + 1}\)", message), message


def test_a_cell_size_smaller_than_the_grids_is_said_and_so_are_the_labels_on_no_cell(inputs, client):
    """Cells of 0.005 degrees on centroids 0.01 apart once mapped a quarter of each cell and
    left most labels out, with no word but a count."""
    folder, job = inputs
    job["features"]["cell_size"] = 0.005
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    with pytest.warns(AsmDaskWarning) as said:
        run = asm_dask.run(folder / "job.yaml", client)
    messages = [str(w.message) for w in said if issubclass(w.category, AsmDaskWarning)]
    assert f"{folder / 'features.feather'}: no two cells touch: the nearest centroids are 0.01 degrees apart, " \
           "2 cells of 0.005 degrees; if the grid's cells are 0.01 degrees wide, set features.cell_size: 0.01" \
           in messages
    unmatched = run.metrics.n_labels_unmatched
    assert unmatched > 0.5 * run.metrics.n_labels_kept
    assert any(m.startswith(f"{unmatched} of the {run.metrics.n_labels_kept} labels kept") for m in messages)
    assert set(messages) == set(run.warnings)  # in metrics.json and the report too
