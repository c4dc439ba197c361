"""Where a run's files live: one fsspec layer for local folders and object storage
(:mod:`.files`), and the checks of the paths a command is given (:mod:`.paths`).

Every stage reads and writes through these functions; see :mod:`asm_dask.storage.files`.
"""

from .files import (LOCAL_PROTOCOLS, PLACE_ERRNOS, is_url, local_path, normalized, join, filesystem, configure, exists, list_names, make_folder, reporting_write_errors, remove, read_bytes, read_json, temporary_path, writing, write_bytes, write_text, open_appending, create_exclusively)

__all__ = ["LOCAL_PROTOCOLS", "PLACE_ERRNOS", "is_url", "local_path", "normalized", "join", "filesystem", "configure", "exists", "list_names", "make_folder", "reporting_write_errors", "remove", "read_bytes", "read_json", "temporary_path", "writing", "write_bytes", "write_text", "open_appending", "create_exclusively"]
