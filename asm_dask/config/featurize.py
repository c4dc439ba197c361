"""Featurize files: YAML in, a validated :class:`FeaturizeJob` out (``asm-dask featurize``).

The same rules as job files (:mod:`asm_dask.config`): strict types, unknown keys refused,
every problem on one line with its key path, relative paths resolved against the file's
folder.
"""

from __future__ import annotations

import os
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic.dataclasses import dataclass

from .problems import Expect
from .reading import read_yaml, validated
from .values import (
    KNOWN_KEYS_ONLY,
    InputPath,
    Number,
    Text,
    Whole,
    expected_at,
    folder_path,
    or_defaults,
    path_shorthand,
)


def _a_file(value: str) -> str:
    """A path written as a folder's (``features/``) is not the file a table is written to."""
    if value.endswith(("/", os.sep)):
        raise ValueError("expected a path of a Parquet file, not of a folder (features/SLE_2024.parquet)")
    return value


def _four_numbers(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and len(value) != 4:
        raise ValueError(f"expected [west, south, east, north] in degrees: 4 numbers, not {len(value)}")
    return value


def _bbox(value: tuple[float, ...] | None) -> tuple[float, ...] | None:
    if value is not None and not (-180 <= value[0] < value[2] <= 180 and -90 <= value[1] < value[3] <= 90):
        raise ValueError("expected [west, south, east, north] in degrees, west < east and south < north")
    return value


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class ImageryConfig:
    """The imagery: raster files in any CRS, the bands read and how values are scaled."""

    #: a file, a folder of them, a glob pattern (``s2/*.tif``), or a STAC ItemCollection
    #: saved as ``.json``; local or fsspec URLs
    path: InputPath
    #: the bands, in the order the features see them: 1-based band numbers in every file,
    #: or, where ``path`` holds ``{band}`` (``IMG_DATA/*_{band}.jp2``), the names that fill
    #: it, a band per file (``[B04, B03, B02, B08]``), or a STAC ItemCollection's asset keys;
    #: ``None``: every band of the files
    bands: Annotated[tuple[Annotated[Whole, Field(ge=1)], ...] | tuple[Text, ...] | None, Field(min_length=1),
                     Expect("a non-empty list of band numbers >= 1 or of band names, or null")] = None
    #: values are ``value * scale + offset``; ``None``: 0.0001 for integer imagery
    #: (Sentinel-2 digital numbers to reflectance), 1 for floating-point imagery
    scale: Annotated[Number | None, Field(gt=0), Expect("a number > 0, or null")] = None
    offset: Annotated[Number, Expect("a number")] = 0
    #: a value that marks a missing pixel, beside each file's own nodata value
    nodata: Annotated[Number | None, Expect("a number, or null")] = None


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class GridConfig:
    """The cells to featurize: those of an area or a box, or those of an existing feature table."""

    #: side of a cell in degrees; ``None`` with ``like``: the table's
    cell_size: Annotated[Number | None, Field(gt=0), Expect("a number > 0, or null")] = None
    #: polygons (a country's outline: GeoPackage, GeoJSON, Shapefile; any CRS): the cells
    #: of the grid of whole cells that overlap them
    area: Annotated[InputPath | None, Expect("a path or URL of polygons, or null")] = None
    #: ``[west, south, east, north]`` (EPSG:4326): the cells of the grid of whole cells that overlap it
    bbox: Annotated[tuple[Number, Number, Number, Number] | None, BeforeValidator(_four_numbers), AfterValidator(_bbox),
                    Expect("[west, south, east, north] in degrees, or null")] = None
    #: a feature table whose cells are featurized, with its centroids exactly
    like: Annotated[InputPath | None, Expect("a path or URL, or null")] = None

    @model_validator(mode="after")
    def _one_source(self) -> GridConfig:
        given = [key for key in ("area", "bbox", "like") if getattr(self, key) is not None]
        if len(given) != 1:
            raise expected_at((), given, "one of area, bbox or like (the cells to featurize)")
        if self.like is None and self.cell_size is None:
            raise expected_at(("cell_size",), None, f"a number > 0 with grid.{given[0]}")
        return self


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class MethodConfig:
    """How pixels become features: ``rcf`` (MOSAIKS random convolutional features) or
    ``pool`` (each band's statistics, for embedding rasters)."""

    name: Annotated[Literal["rcf", "pool"], Expect("'rcf' or 'pool'")] = "rcf"
    #: rcf: features made (half of them filters, half the ReLU of their negatives)
    n_features: Annotated[Whole, Field(ge=2, multiple_of=2), Expect("an even integer >= 2")] = 4000
    #: rcf: the filters' side, in pixels
    kernel_size: Annotated[Whole, Field(ge=1), Expect("an integer >= 1")] = 3
    #: rcf: ``empirical`` (whitened patches of the imagery, as the paper) or ``gaussian``
    mode: Annotated[Literal["empirical", "gaussian"], Expect("'empirical' or 'gaussian'")] = "empirical"
    #: rcf: the ReLUs' threshold: mean(ReLU(conv - bias)) and mean(ReLU(-conv - bias))
    bias: Annotated[Number, Expect("a number")] = 0
    #: rcf: the seed the filters are drawn with
    seed: Annotated[Whole, Field(ge=0, lt=2**32), Expect("an integer from 0 to 4294967295")] = 0
    #: pool: statistics of each band
    stats: Annotated[tuple[Literal["mean", "std", "min", "max"], ...], Field(min_length=1),
                     Expect("a non-empty list of mean, std, min, max")] = ("mean",)

    @model_validator(mode="before")
    @classmethod
    def _only_the_methods_own(cls, raw: Any) -> Any:
        """A setting of the other method is a mistake, not something to ignore."""
        if isinstance(raw, dict):
            name = raw.get("name", "rcf")
            others = ["stats"] if name == "rcf" else ["n_features", "kernel_size", "mode", "bias", "seed"]
            given = [key for key in others if key in raw]
            if given and name in ("rcf", "pool"):
                raise expected_at((given[0],), raw[given[0]], f"no {given[0]} with method.name: {name} (a setting "
                                                                f"of {'pool' if name == 'rcf' else 'rcf'})")
        return raw


@dataclass(frozen=True, config=KNOWN_KEYS_ONLY)
class FeaturizeJob:
    """A validated featurization: imagery in, a feature table out."""

    imagery: Annotated[ImageryConfig, BeforeValidator(path_shorthand)]
    grid: GridConfig
    #: the feature table written: Parquet, a row group per block of cells
    output: Annotated[Text, AfterValidator(_a_file), AfterValidator(folder_path),
                      Expect("a path or URL of a Parquet file")]
    method: Annotated[MethodConfig, BeforeValidator(or_defaults)] = field(default_factory=MethodConfig)
    #: cells covered by less than this share of pixels are left out, and counted
    min_coverage: Annotated[Number, Field(gt=0, le=1), Expect("a proportion in (0, 1]")] = 0.5
    #: cells per side of the square blocks featurized by one task
    block_cells: Annotated[Whole, Field(ge=1), Expect("an integer >= 1")] = 16
    #: fsspec options by protocol, as a job file's
    storage_options: Annotated[dict[str, dict[str, Any]], BeforeValidator(or_defaults),
                               Expect("a mapping of protocol to options")] = field(default_factory=dict)


def load_featurize_job(path: str | os.PathLike) -> FeaturizeJob:
    """Read and validate a featurize file; relative paths resolve against its folder."""
    path = Path(path)
    return featurize_job_from_dict(read_yaml(path, "featurize file"), base=path.parent, source=str(path))


def featurize_job_from_dict(raw: Any, base: str | os.PathLike = ".", source: str = "featurize") -> FeaturizeJob:
    """Build a :class:`FeaturizeJob` from plain data; every problem on one line."""
    return validated(FeaturizeJob, raw, base, source, "imagery, grid and output")
