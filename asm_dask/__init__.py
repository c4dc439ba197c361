"""asm_dask: country-scale maps of artisanal and small-scale mining from MOSAIKS features, on Dask.

The Python API::

    import asm_dask

    run = asm_dask.run("jobs/sierra_leone.yaml")        # or a mapping of the same settings
    run.metrics.test_auc_calibrated                      # typed metrics
    run.model.predict_proba(X)[:, 1]                     # P(ASM) of features X: the fitted, calibrated model
    run.predictions()                                    # every cell, a lazy dask-geopandas frame
    other = asm_dask.predict(run, "neighbour_features.feather", out="neighbour")
    again = asm_dask.open_run("out/sierra_leone")        # a finished run, local or on object storage
    asm_dask.featurize("featurize.yaml")                 # a feature table made from imagery
    asm_dask.sample(run, n=400)                          # cells for a field team: the next estimate's sample
    asm_dask.change(run, other)                          # where ASM spread, and where it stopped

The package follows the data flow: (``featurize``: features from imagery) -> ``read`` ->
``spatial`` (join) -> ``model`` (fit, calibrate, validate) -> ``prediction`` -> ``report``,
wired by ``pipeline``; ``records``
keeps a run's books, ``storage`` reaches every file, ``deploy`` provides the cluster, and
``cli`` is the command line. See the documentation's architecture page.
"""

from __future__ import annotations

from importlib.metadata import version as _version
from typing import Any

from .api import change, featurize, load_job, open_run, predict, run, sample
from .config import Job
from .errors import AlphaAtGridEdgeWarning, AsmDaskWarning, FeatureScaleWarning, InputError
from .results import Run

__version__ = _version("asm_dask")

#: public names whose modules import scikit-learn: loaded when first used, so that
#: ``import asm_dask`` stays quick
_LAZY = {"RidgeGridClassifier": "asm_dask.model.ridge", "CalibratedClassifier": "asm_dask.model.classifier",
         "FeaturizeResult": "asm_dask.featurization", "FilterBank": "asm_dask.featurization",
         "FieldSample": "asm_dask.pipeline.sample", "ChangeResult": "asm_dask.pipeline.change"}

__all__ = ["AlphaAtGridEdgeWarning", "AsmDaskWarning", "CalibratedClassifier", "ChangeResult",
           "FeatureScaleWarning", "FeaturizeResult", "FieldSample", "FilterBank", "InputError", "Job",
           "RidgeGridClassifier", "Run", "__version__", "change", "featurize", "load_job", "open_run", "predict",
           "run", "sample"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asm_dask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
