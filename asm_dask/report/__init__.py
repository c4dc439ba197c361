"""Report stage: what people read, drawn from the predictions already on disk.

One module per output: ``figures`` (PNG figures and ``metrics.json``), ``raster``
(the probability grid and ``probability.tif``), ``hotspots``, ``importance``
(``feature_importance.csv``), ``districts`` (``admin_summary.csv``), ``webmap``
(``map.html``) and ``page`` (``report.html``).
"""
