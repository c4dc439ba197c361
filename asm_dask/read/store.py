"""The feature store: the input features converted once into partitions laid out for this job.

Why a store: the inputs come as CSV (slow to parse), compressed Feather with batches of
64k rows (1 GB each at 4000 features) or Parquet, and every stage reads the features in
a different way. The store holds them as uncompressed Arrow IPC files, one per partition
of about 128 MB, each with ``cell_id``, ``lat``, ``lon`` and ``features``, a
``FixedSizeList<float32>`` holding each cell's features side by side (row-major: a
zero-copy 2-D NumPy array). Memory-mapped, a stage reads only what it touches: the join
three small columns of each partition, the training gather the pages of a few rows (a
column per feature would put every row on a page of every column), the prediction one
partition at a time.

A store is keyed by a fingerprint of the input file (its path, size and modification
time) and of the settings that shape it, so a changed input or setting never reuses it.
It is written to a temporary folder and renamed into place when complete and valid.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from distributed import Client

from .. import storage
from ..config import FeaturesConfig
from ..errors import InputError
from ..records.fingerprint import fingerprint
from ..records.lock import process_alive
from .features import FeatureLayout, detect_layout, input_fingerprint
from .ingest import PARTITION_BYTES, ingest
from .store_format import MANIFEST, STORE_VERSION, FeatureStore, load_store


def store_key(config: FeaturesConfig, layout: FeatureLayout) -> tuple[str, dict[str, Any], int]:
    """The store's key for ``config``'s features, their fingerprint and rows per partition."""
    rows = config.rows_per_partition or max(1024, PARTITION_BYTES // (4 * len(layout.feature_columns)))
    source = {"path": config.path, "ukey": input_fingerprint(config.path), "format": layout.format}
    settings = {"cell_size": config.cell_size, "prefix": config.prefix,
                "rows_per_partition": rows, "version": STORE_VERSION}
    key = fingerprint([source, settings])
    return key, source, rows


def find_store(config: FeaturesConfig, layout: FeatureLayout, root: str) -> FeatureStore | None:
    """The complete store of ``config``'s features under ``root``, if one was built."""
    final = storage.join(root, store_key(config, layout)[0])
    return load_store(final) if storage.exists(storage.join(final, MANIFEST)) else None


def open_store(config: FeaturesConfig, root: str, client: Client,
               layout: FeatureLayout | None = None) -> FeatureStore:
    """The store for ``config``'s features under ``root``, ingesting them if needed.

    Raises
    ------
    InputError
        The features file is missing, unreadable, or holds bad values: an unparseable
        ``image_id``, a coordinate out of range, a non-numeric feature or two rows for
        the same cell. Nothing is left behind in ``root`` then.
    """
    layout = layout or detect_layout(config.path, config.prefix)
    key, source, rows = store_key(config, layout)
    final = storage.join(root, key)
    if storage.exists(storage.join(final, MANIFEST)):
        return load_store(final)
    if storage.is_url(root):
        return _build_in_place(layout, root, key, rows, config, source, client)
    _remove_abandoned_partials(root)
    made_root = not os.path.exists(root)
    partial = os.path.join(root, f".{key}.partial-{socket.gethostname()}-{os.getpid()}")
    try:
        os.makedirs(partial)
    except OSError as exc:
        raise InputError(f"{root}: cannot create the feature store here ({exc.strerror}); "
                         "set features.store_path to a writable folder") from None
    try:
        store = ingest(layout, partial, final, rows, config.cell_size, source, client)
        os.replace(partial, final)
    except OSError:
        storage.remove(partial)
        if not storage.exists(storage.join(final, MANIFEST)):
            raise
        # Another run built the same store meanwhile: use it.
        return load_store(final)
    except BaseException:
        storage.remove(partial)
        if made_root and not storage.list_names(root):  # bad input leaves nothing behind
            storage.remove(root)
        raise
    _remove_stale_stores(root, keep=key, source_path=config.path)
    return store


def _build_in_place(layout: FeatureLayout, root: str, key: str, rows: int, config: FeaturesConfig,
                    source: dict[str, Any], client: Client) -> FeatureStore:
    """Build a store on object storage, where there is no rename: into its own folder,
    whose manifest, written last, is what makes it complete. What an abandoned build
    left there is removed first; a failed build removes what it wrote."""
    final = storage.join(root, key)
    storage.remove(final)
    try:
        store = ingest(layout, final, final, rows, config.cell_size, source, client)
    except BaseException:
        storage.remove(final)
        raise
    _remove_stale_stores(root, keep=key, source_path=config.path)
    return store


def _remove_abandoned_partials(root: str) -> None:
    # A run killed while ingesting leaves its partial store behind: up to the size of the
    # features. Its name says which process built it; remove it if that process is gone.
    host = socket.gethostname()
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        match = re.fullmatch(r"\.\w+\.partial-(.+)-(\d+)", entry)
        if match and match.group(1) == host and not process_alive(int(match.group(2))):
            storage.remove(os.path.join(root, entry))


def _remove_stale_stores(root: str, keep: str, source_path: str) -> None:
    # A store of the same file under another key is stale: the file or a setting changed.
    # Stores are large (30 GB for a big country), so they are not left to pile up.
    for entry in storage.list_names(root):
        if entry == keep or entry.startswith("."):
            continue
        meta = storage.read_json(storage.join(root, entry, MANIFEST))
        if meta is not None and meta["source"]["path"] == source_path:
            storage.remove(storage.join(root, entry))
