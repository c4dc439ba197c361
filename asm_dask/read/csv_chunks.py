"""Read stage, CSV features: a CSV feature file streamed block by block, and Arrow's
conversion errors said in the user's terms (the column by name, and the row)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InputError
from .features import FeatureChunk, FeatureLayout, open_input, to_chunk

#: bytes of a CSV file parsed at once
CSV_BLOCK_BYTES = 64 << 20


def iter_csv_chunks(layout: FeatureLayout) -> Iterator[FeatureChunk]:
    """Stream a CSV feature file block by block, never holding the whole file."""
    column_types = {c: pa.float32() for c in layout.feature_columns}
    if layout.image_id_column:
        column_types[layout.image_id_column] = pa.string()
    else:
        column_types[layout.lat_column] = column_types[layout.lon_column] = pa.float64()
    first_row = 0
    with open_input(layout.path) as f:
        try:
            reader = pacsv.open_csv(
                f, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    column_types=column_types,
                    include_columns=layout.coordinate_columns + list(layout.feature_columns)))
            for batch in reader:
                yield to_chunk(layout, batch, first_row, layout.feature_columns)
                first_row += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise InputError(f"{layout.path}: {_csv_problem(layout, str(exc))}") from None


def _csv_problem(layout: FeatureLayout, message: str) -> str:
    """Arrow's CSV error in the user's terms: the column by its name, and the row.

    Arrow names the column by its 0-based position in the file and gives the row only
    sometimes (as a line number, which quoted line breaks would throw off), so the
    column is read again, as text, up to its first value that is not a number.
    """
    ragged = re.search(r"CSV parse error: (?:Row #(\d+): )?Expected (\d+) columns, got (\d+): (.*)", message,
                       re.DOTALL)
    if ragged:  # Arrow's "row" counts the file's lines, the header's too, where it gives one
        line = int(ragged.group(1)) if ragged.group(1) else _line_starting_with(layout.path, ragged.group(4))
        return (f"{f'line {line}: ' if line else ''}{ragged.group(3)} fields, where the header has "
                f"{ragged.group(2)} columns")
    match = re.search(r"column #(\d+): (?:Row #\d+: )?CSV conversion error to (float|double): "
                      r"invalid value '(.*)'", message)
    if not match or int(match.group(1)) >= len(layout.columns):
        text = " ".join(message.split())
        return text if len(text) <= 200 else text[:197] + "..."
    column = layout.columns[int(match.group(1))]
    number_type = pa.float32() if match.group(2) == "float" else pa.float64()
    row = _first_row_not_a_number(layout.path, column, number_type)
    return (f"{f'row {row}, ' if row else ''}column '{column}': cannot read '{match.group(3)}' "
            "as a number")


def _line_starting_with(path: str, text: str) -> int | None:
    """The number (from 1, the header's) of the file's first line that starts with
    ``text`` (the line Arrow quotes, for a row of the wrong width), ``None`` if none does.
    Read block by block, only when the file is refused."""
    wanted = b"\n" + text.split("\n", 1)[0].removesuffix(" ...").encode()  # Arrow cuts a long line short
    lines_before, tail = 0, b""
    with open_input(path) as f:
        while block := f.read(CSV_BLOCK_BYTES):
            data = tail + block
            found = data.find(wanted)
            if found >= 0:
                return lines_before + data.count(b"\n", 0, found) + 2
            cut = max(len(data) - len(wanted), 0)  # a match may straddle two blocks
            lines_before += data.count(b"\n", 0, cut)
            tail = data[cut:]
    return None


def _first_row_not_a_number(path: str, column: str, number_type: pa.DataType) -> int | None:
    """The row (from 1 after the header) of ``column``'s first value that does not
    convert to ``number_type`` as the CSV reader converts it; ``None`` if none is found."""
    options = pacsv.ConvertOptions(column_types={column: pa.string()}, include_columns=[column],
                                   strings_can_be_null=True)
    rows_before = 0
    with open_input(path) as f:
        reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                convert_options=options)
        for batch in reader:
            values = batch.column(0)
            if not _converts(values, number_type):
                # Bisect for the first prefix that fails: a few casts, not one per value.
                good, bad = 0, len(values)
                while bad - good > 1:
                    middle = (good + bad) // 2
                    good, bad = (middle, bad) if _converts(values[:middle], number_type) else (good, middle)
                return rows_before + bad
            rows_before += batch.num_rows
    return None


def _converts(values: pa.Array, number_type: pa.DataType) -> bool:
    try:
        values.cast(number_type)
    except pa.ArrowInvalid:
        return False
    return True
