"""The one exception users see: bad input, reported on one line."""


class InputError(Exception):
    """Bad input: a file, column, row or setting that asm_dask cannot use.

    The message names the file (or job setting) and what is wrong with it, on one line,
    so that the command line can print it as is and exit non-zero.
    """
