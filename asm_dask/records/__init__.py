"""A run's bookkeeping in its output folder.

* :mod:`.outputs`: what a run writes there, and that it never touches an input;
* :mod:`.lock`: ``.asm-dask.lock``, one run per output folder;
* :mod:`.manifest`: ``manifest.json``, what a run read and which prediction partitions
  are written, and resuming;
* :mod:`.fingerprint`: the short fingerprints that key runs, stores and tables.
"""
