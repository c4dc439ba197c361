"""Where a run's files live: one fsspec layer for local folders and object storage
(:mod:`.files`), and the checks of the paths a command is given (:mod:`.paths`).

Every stage reads and writes through these functions; see :mod:`asm_dask.storage.files`.
"""

from .files import (
    LOCAL_PROTOCOLS,
    PLACE_ERRNOS,
    RasterReads,
    configure,
    configured,
    create_exclusively,
    exists,
    filesystem,
    is_url,
    join,
    list_names,
    local_path,
    make_folder,
    normalized,
    open_appending,
    read_bytes,
    read_json,
    remove,
    reporting_write_errors,
    temporary_path,
    write_bytes,
    write_text,
    writing,
)

__all__ = [
    "LOCAL_PROTOCOLS",
    "PLACE_ERRNOS",
    "RasterReads",
    "configure",
    "configured",
    "create_exclusively",
    "exists",
    "filesystem",
    "is_url",
    "join",
    "list_names",
    "local_path",
    "make_folder",
    "normalized",
    "open_appending",
    "read_bytes",
    "read_json",
    "remove",
    "reporting_write_errors",
    "temporary_path",
    "write_bytes",
    "write_text",
    "writing",
]
