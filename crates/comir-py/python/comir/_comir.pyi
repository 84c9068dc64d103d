"""Type stubs of comir's native module (the Rust half of the package)."""

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, "os.PathLike[str]"]
_Progress = Optional[Callable[[str, int, int, str], None]]

__version__: str
isa: str

class Error(Exception):
    """Any error of comir: the message is the line the command-line tool prints."""

class ImageError(Error):
    """An image that cannot be used: unreadable, empty, of an unsupported type or shape, or
    holding NaN or infinite values."""

class ModelError(Error):
    """A model folder or name that cannot be loaded, or an image the model cannot take."""

class ConfigError(Error):
    """A setting that is not valid: an unknown name, a bad value, an invalid config file."""

class RegistrationError(Error):
    """A registration, training, evaluation or alignment that failed while running."""

class Registration:
    """The result of a registration: the transform from the fixed image to the moving one."""

    @property
    def matrix(self) -> npt.NDArray[np.float64]:
        """3x3 ``fixed_to_moving`` of the linear part, as in the JSON file."""
    @property
    def transform(self) -> Dict[str, Any]:
        """The whole transform as the JSON file holds it (with the B-spline grid)."""
    @property
    def kind(self) -> str:
        """``rigid``, ``similarity``, ``affine`` or ``bspline``."""
    @property
    def method(self) -> str: ...
    @property
    def metric_value(self) -> float:
        """The metric at the result; lower is better (MI negated)."""
    @property
    def seconds(self) -> float: ...
    @property
    def confidence(self) -> Optional[float]:
        """In [0, 1], judged without the truth; ``None`` when not asked for."""
    @property
    def flag(self) -> Optional[str]:
        """``ok`` or ``doubtful``; ``None`` when not judged."""
    @property
    def fixed_shape(self) -> Tuple[int, int]:
        """(height, width) of the fixed image: the shape of :meth:`warp`'s output."""
    def to_json(self) -> str: ...
    def save(self, path: _Path) -> None:
        """Writes the JSON file of ``comir register`` (atomically)."""
    def save_tfm(self, path: _Path) -> None:
        """Writes an ITK ``.tfm`` file (SimpleITK, 3D Slicer)."""
    def warp(
        self, image: npt.ArrayLike, shape: Optional[Tuple[int, int]] = None
    ) -> npt.NDArray[np.float32]:
        """``moving(T(p))`` on the fixed grid (or ``shape``), bilinear, 0 outside."""
    def transform_points(
        self, xy: npt.NDArray[np.float64], inverse: bool = False
    ) -> npt.NDArray[np.float64]:
        """N x 2 points (x = column, y = row) from the fixed image to the moving one, or back."""

class Model:
    """A trained CoMIR, loaded once."""

    @staticmethod
    def load(path_or_name: _Path, device: str = "cpu") -> "Model":
        """A ``comir train`` folder, or a bundled model's name (:func:`comir.models`)."""
    @property
    def path(self) -> Path: ...
    @property
    def out_channels(self) -> int: ...
    def card_json(self) -> str:
        """``model.json`` as text."""
    def represent(
        self, image: npt.ArrayLike, modality: str = "a", rotation_average: bool = False
    ) -> npt.NDArray[np.float32]:
        """The representation (H x W, or H x W x C) by the network of ``modality``."""

def register(
    fixed: npt.ArrayLike,
    moving: npt.ArrayLike,
    method: str,
    transform: str,
    model: Optional[str],
    model_object: Optional[Model],
    fixed_modality: str,
    init_global: bool,
    init_file: Optional[str],
    init_transform: Optional[Registration],
    seed: int,
    config: Optional[str],
    grid_spacing: Optional[float],
    confidence: bool,
    match_histograms: bool,
    rotation_average: bool,
    device: str,
) -> Registration: ...
def load_transform(path: _Path) -> Registration: ...
def load_image(path: _Path) -> npt.NDArray[np.float32]: ...
def save_image(path: _Path, image: npt.ArrayLike) -> None: ...
def models() -> List[Tuple[str, str]]: ...
def train(
    a: _Path, b: _Path, out: _Path, config: Optional[_Path],
    overrides: Optional[Dict[str, Any]], progress: _Progress,
) -> str: ...
def evaluate(
    pairs: _Path, methods: List[str], out: _Path, options: Optional[Dict[str, Any]],
    progress: _Progress,
) -> str: ...
def align(
    pairs: _Path, out: _Path, options: Optional[Dict[str, Any]], progress: _Progress
) -> str: ...
