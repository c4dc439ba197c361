"""``manifest.json``: what a run read, how it was set, the model's hash, and each
prediction partition once its file exists, rewritten whole after every change.

A run of the same key and model skips the partitions already written (resuming); any
difference discards them all.
"""

from __future__ import annotations

import json
from typing import Any

import distributed

from .. import storage
from .outputs import MANIFEST_FILE


def describe_cluster(client: distributed.Client) -> dict[str, Any]:
    """Summarise the cluster behind ``client`` for the run metadata.

    Parameters
    ----------
    client : distributed.Client
        A connected client.

    Returns
    -------
    dict
        ``scheduler`` (address), ``n_workers``, ``threads`` (over all workers) and
        ``memory_bytes`` (sum of the workers' memory limits; workers without a
        limit count as 0).
    """
    info = client.scheduler_info(n_workers=-1)
    workers = info["workers"].values()
    return {
        "scheduler": info["address"],
        "n_workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers),
        "memory_bytes": sum(w["memory_limit"] or 0 for w in workers),
    }


class RunManifest:
    """What a run read, how it was set, and which prediction partitions are written.

    Saved as ``manifest.json`` in the output folder after every change, whole.
    """

    def __init__(self, output: str, run_key: str, description: dict[str, Any]):
        self.output = output
        self.path = storage.join(output, MANIFEST_FILE)
        self.data = {"run_key": run_key, **description, "model_hash": None,
                     "status": "running", "completed_partitions": [], "partition_counts": {}}

    def resume(self, predictions_dir: str, model_digest: str, file_name: Any) -> set[int]:
        """Partitions that a previous run of the same key and model completed, whose
        files (named by ``file_name(index)``) are in ``predictions_dir``.

        Anything else in ``predictions_dir`` is stale and removed.
        """
        previous = storage.read_json(self.path)
        present = set(storage.list_names(predictions_dir))
        keep: set[int] = set()
        if isinstance(previous, dict) and previous.get("run_key") == self.data["run_key"] \
                and previous.get("model_hash") == model_digest:
            counts = previous.get("partition_counts", {})
            keep = {i for i in previous.get("completed_partitions", [])
                    if file_name(i) in present and str(i) in counts}
        wanted = {file_name(i) for i in keep}
        for name in present - wanted:
            storage.remove(storage.join(predictions_dir, name))
        self.data["model_hash"] = model_digest
        self.data["completed_partitions"] = sorted(keep)
        self.data["partition_counts"] = {str(i): previous["partition_counts"][str(i)] for i in sorted(keep)}
        self.data["resumed_partitions"] = len(keep)
        self.save()
        return keep

    def record_model(self, model_digest: str) -> None:
        """The model of a run that predicts into other folders (a map per year) than its own."""
        self.data["model_hash"] = model_digest
        self.save()

    def mark_written(self, index: int, counts: dict[str, int]) -> None:
        self.data["completed_partitions"].append(index)
        self.data["partition_counts"][str(index)] = counts
        self.save()

    def counts(self) -> dict[str, int]:
        """Cells written and rows left out for non-finite features, over every partition."""
        counts = self.data["partition_counts"].values()
        return {name: sum(c[name] for c in counts) for name in ("n_cells", "n_dropped_nonfinite")}

    def finish(self, **extra: Any) -> None:
        self.data["completed_partitions"].sort()
        self.data.update(status="complete", **extra)
        self.save()

    def save(self) -> None:
        storage.write_text(self.path, json.dumps(self.data, indent=1, default=str))
