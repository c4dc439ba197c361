"""What asm_dask's estimators share as scikit-learn classifiers: two classes (ASM or
not), the larger label the positive one."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target


class BinaryClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier of exactly two classes; ``classes_[1]`` is the positive one."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _binary_targets(self, y: np.ndarray) -> np.ndarray:
        """Set ``classes_`` from ``y``, which must hold exactly two classes; return ``y`` as
        0 and 1 (1 for ``classes_[1]``)."""
        check_classification_targets(y)
        kind = type_of_target(y, input_name="y", raise_unknown=True)
        if kind != "binary":
            raise ValueError(f"Only binary classification is supported (ASM or not). The type of the target is "
                             f"{kind}: {np.unique(y).tolist()[:5]}")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y holds one class only ({classes.tolist()}); a classifier needs both (ASM and not)")
        self.classes_ = classes
        return (y == classes[1]).astype(int)
