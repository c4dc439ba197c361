"""asm_dask: country-scale maps of artisanal and small-scale mining from MOSAIKS features.

The stages, one module each, in the order a job runs them: ``labels`` and ``features``
(read), ``store`` (the feature store), ``join``, ``split``, ``ridge`` (fit),
``calibrate``, ``predict``, ``report``. ``job`` wires them together, ``cli`` is the
command line, and ``cluster`` is the only module that knows where workers come from.
"""
