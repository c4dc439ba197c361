"""The one exception users see, bad input reported on one line, and the one warning:
a caveat of a run's results."""


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
