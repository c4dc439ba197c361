"""The one exception users see, bad input reported on one line, and the one warning,
a caveat of a run's results, with the kinds the estimators raise."""

import os
import sys
import warnings


class InputError(Exception):
    """Bad input: a file, column, row or setting that asm_dask cannot use.

    The message names the file (or job setting) and what is wrong with it, on one line,
    so that the command line can print it as is and exit non-zero.
    """


class AsmDaskWarning(UserWarning):
    """What a reader of a run's numbers must know first: the best penalty at the edge of
    its grid, a test set too small to judge, a feature that swamps the others...

    Each is also listed in ``metrics.json``'s ``warnings`` and in the report.
    """


class AlphaAtGridEdgeWarning(AsmDaskWarning):
    """:class:`~asm_dask.RidgeGridClassifier`'s best penalty is the smallest or largest one
    searched: a wider grid may find a better one."""


class FeatureScaleWarning(AsmDaskWarning):
    """Some features spread so much wider than the rest that ridge sees only them:
    standardize the features, or check those columns."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = AsmDaskWarning) -> None:
    """Warn at the first line outside asm_dask that led here: the notebook's call of
    ``asm_dask.run``, a script's ``fit``, not a line deep in the pipeline (as pandas
    finds its stack level)."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
