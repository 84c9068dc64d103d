"""comir: multimodal image registration through learned contrastive representations.

The same library as the ``comir`` command-line tool, on numpy arrays::

    import comir
    reg = comir.register(shg, he, method="mi", transform="similarity,affine")
    reg.matrix                 # 3x3 fixed -> moving, as in the JSON file
    he_in_shg = reg.warp(he)   # the moving image in the fixed frame
    reg.save("t.json"); reg.save_tfm("t.tfm")

    model = comir.Model.load("mni152-t1t2")      # bundled, or a `comir train` folder
    rep = model.represent(t2, modality="b")

Images are 2-D (gray) or H x W x 3 (colour) arrays of uint8, uint16 (scaled to [0, 1] as the
command line scales 8- and 16-bit files), float32 or float64. Coordinates are pixels: x the
column, y the row, pixel centres at integers. Computation runs without the GIL. Errors are
``comir.Error`` (``ImageError``, ``ModelError``, ``ConfigError``, ``RegistrationError``), with
the one-line message the command line prints.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _comir
from ._comir import (
    ConfigError,
    Error,
    ImageError,
    Model,
    ModelError,
    Registration,
    RegistrationError,
    load_image,
    load_transform,
    save_image,
)

__version__: str = _comir.__version__
#: The instruction set of comir's kernels on this CPU (``avx512``, ``avx2`` or ``portable``).
isa: str = _comir.isa

__all__ = [
    "Error",
    "ImageError",
    "ModelError",
    "ConfigError",
    "RegistrationError",
    "Registration",
    "Model",
    "register",
    "load_transform",
    "load_image",
    "save_image",
    "models",
    "train",
    "evaluate",
    "align",
]

PathLike = Union[str, "os.PathLike[str]"]
#: ``progress(what, position, length, message)``: called as a long run moves.
ProgressCallback = Callable[[str, int, int, str], None]


def models() -> List[Tuple[str, str]]:
    """The models that ship with comir: ``(name, what it is for)``. Load one by name with
    :meth:`Model.load`, or pass the name as ``model=`` to :func:`register`."""
    return list(_comir.models())


def _config_path(config: Union[None, PathLike, Dict[str, Dict[str, Any]]], stack) -> Optional[str]:
    """A config file path for the native side: a path as it is, a dict of sections written to a
    temporary TOML file (``{"mi": {"bins": 64}}`` becomes ``[mi]\\nbins = 64``)."""
    if config is None:
        return None
    if isinstance(config, dict):
        lines = []
        for section, values in config.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config: section '{section}' must be a dict of settings")
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {_toml_value(key, value)}")
        handle = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        stack.append(handle.name)
        with handle:
            handle.write("\n".join(lines) + "\n")
        return handle.name
    return os.fspath(config)


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(key, v) for v in value) + "]"
    raise ConfigError(f"config: {key}: cannot write a {type(value).__name__} as a setting")


def _model_path(model: Union[None, PathLike, Model]) -> Optional[str]:
    if model is None:
        return None
    if isinstance(model, Model):
        return os.fspath(model.path)
    return os.fspath(model)


def register(
    fixed,
    moving,
    method: str = "mi",
    transform: str = "auto",
    model: Union[None, PathLike, Model] = None,
    init: Union[None, str, PathLike, Registration] = None,
    seed: int = 0,
    config: Union[None, PathLike, Dict[str, Dict[str, Any]]] = None,
    *,
    grid_spacing: Optional[float] = None,
    fixed_modality: str = "a",
    confidence: bool = True,
    match_histograms: bool = True,
    rotation_average: bool = False,
    device: str = "cpu",
) -> Registration:
    """Registers ``moving`` onto ``fixed``: finds the transform from fixed-image coordinates to
    moving-image coordinates, as ``comir register`` does.

    Args:
        fixed, moving: images (2-D or H x W x 3; uint8, uint16, float32 or float64).
        method: ``mi`` (Mattes mutual information, for raw images), ``aamd`` (alpha-AMD),
            ``ncc``, ``ngf`` (``mi`` refined by normalised gradient fields, for CT vs MR),
            ``features`` (SIFT-like + RANSAC) or ``global`` (FFT search).
        transform: ``auto`` (the default: with ``mi``, a rigid and a ``similarity,affine``
            result, the second kept only when it fits clearly better; rigid with the other
            methods), ``rigid``, ``similarity``, ``affine``, or a chain such as
            ``"similarity,affine"`` or ``"rigid,affine,bspline"``.
        model: register the learned representations of a model folder, a bundled model's
            name (``"mni152-t1t2"``) or a loaded :class:`Model`; ``fixed`` is represented as
            ``fixed_modality`` and ``moving`` as the other one.
        init: the start: ``None`` or ``"identity"``, ``"global"`` (global FFT search, for large
            displacements), a transform file (JSON or ``.tfm``) or a :class:`Registration`.
        seed: seed of every random choice of the method.
        config: method settings: a TOML file with sections ``[aamd]``, ``[mi]``, ``[features]``,
            ``[global]``, or the same as a dict (``{"mi": {"bins": 64}}``).
        grid_spacing: control-point spacing of a ``bspline`` stage, in pixels.
        confidence: judge the result without the truth (``confidence``, ``flag``).
        match_histograms, rotation_average, device: how a model represents (as on the
            command line: ``--no-histogram-match``, ``--rotation-average``, ``--device``).

    Returns:
        A :class:`Registration`.
    """
    init_global = False
    init_file = None
    init_transform = None
    if isinstance(init, Registration):
        init_transform = init
    elif init is None or init == "identity":
        pass
    elif init == "global":
        init_global = True
    else:
        init_file = os.fspath(init)
    temporary: List[str] = []
    loaded = model if isinstance(model, Model) else None
    try:
        return _comir.register(
            fixed,
            moving,
            method,
            transform,
            None if loaded is not None else _model_path(model),
            loaded,
            fixed_modality,
            init_global,
            init_file,
            init_transform,
            seed,
            _config_path(config, temporary),
            grid_spacing,
            confidence,
            match_histograms,
            rotation_average,
            device,
        )
    finally:
        for path in temporary:
            os.unlink(path)


def _progress_or_bar(progress: Optional[ProgressCallback], show: bool):
    """The callback to use: the caller's, else a tqdm bar per stage when tqdm is installed."""
    if progress is not None or not show:
        return progress, None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, None
    bars: Dict[str, Any] = {}

    def draw(what: str, position: int, length: int, message: str) -> None:
        bar = bars.get(what)
        if bar is None:
            bar = bars[what] = tqdm(total=length or None, desc=what, leave=False)
        if length and bar.total != length:
            bar.total = length
        bar.n = position
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return draw, close


def train(
    a_dir: PathLike,
    b_dir: PathLike,
    out: PathLike,
    config: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    show_progress: bool = True,
    **overrides: Any,
) -> Dict[str, Any]:
    """Trains a CoMIR on aligned pairs (file names matching in ``a_dir`` and ``b_dir``) into
    the model folder ``out``, as ``comir train`` does.

    ``config`` is a recipe (TOML, e.g. ``configs/histology-30min.toml``); ``overrides`` are the
    command line's flags: ``preset``, ``steps``, ``batch``, ``critic``, ``tau``, ``bottleneck``,
    ``bottleneck_weight``, ``seed``, ``test_fraction``, ``minutes``, ``device``, ``resume``,
    ``trainer``. ``progress(what, step, steps, message)`` is called as training moves; without
    it a tqdm bar is drawn when tqdm is installed (``show_progress=False``: none).

    Returns:
        A summary: ``model`` (the folder), ``steps``, ``steps_this_run``, ``train_pairs``,
        ``validation_pairs``, ``test_pairs`` and ``last`` (the last step's losses).
    """
    callback, close = _progress_or_bar(progress, show_progress)
    try:
        text = _comir.train(
            os.fspath(a_dir),
            os.fspath(b_dir),
            os.fspath(out),
            None if config is None else os.fspath(config),
            overrides,
            callback,
        )
    finally:
        if close:
            close()
    return json.loads(text)


def evaluate(
    pairs_dir: PathLike,
    methods: Union[str, Sequence[str]] = ("mi",),
    out: Optional[PathLike] = None,
    *,
    levels: Sequence[int] = (1, 2, 3, 4),
    seed: int = 0,
    limit: Optional[int] = None,
    transform: str = "rigid",
    displacement: str = "rigid",
    init_global: bool = False,
    grid_spacing: Optional[float] = None,
    config: Optional[PathLike] = None,
    model: Union[None, PathLike, Model] = None,
    fixed_modality: str = "a",
    raw_methods: Sequence[str] = (),
    report: Optional[PathLike] = None,
    confidence: bool = True,
    resume: bool = False,
    progress: Optional[ProgressCallback] = None,
    show_progress: bool = True,
) -> List[Dict[str, Any]]:
    """Evaluates methods on aligned pairs (``pairs_dir/A``, ``pairs_dir/B``) with the
    MultiRegEval protocol, as ``comir eval`` does: every B image displaced at each level, every
    method registering the same cases.

    Returns one dict per case (the columns of ``results.csv``: ``pair``, ``level``, ``method``,
    ``error_px``, ``success``, ``seconds``, ``confidence``, ...), ready for
    ``pandas.DataFrame(rows)``. ``out`` keeps the CSV (a temporary file otherwise).
    """
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    options: Dict[str, Any] = {
        "levels": list(levels),
        "seed": seed,
        "limit": limit,
        "transform": transform,
        "displacement": displacement,
        "init_global": init_global,
        "grid_spacing": grid_spacing,
        "config": None if config is None else os.fspath(config),
        "model": _model_path(model),
        "fixed_modality": fixed_modality,
        "raw_methods": list(raw_methods),
        "report": None if report is None else os.fspath(report),
        "confidence": confidence,
        "resume": resume,
    }
    callback, close = _progress_or_bar(progress, show_progress)
    with tempfile.TemporaryDirectory() as scratch:
        csv_path = os.fspath(out) if out is not None else os.path.join(scratch, "results.csv")
        try:
            text = _comir.evaluate(
                os.fspath(pairs_dir), list(methods), csv_path, options, callback
            )
        finally:
            if close:
                close()
    return json.loads(text)


def align(
    pairs_dir: PathLike,
    out: PathLike,
    *,
    transform: str = "auto",
    raw_method: str = "mi",
    rounds: int = 3,
    minutes: Optional[float] = None,
    preset: Optional[str] = None,
    config: Optional[PathLike] = None,
    steps: Optional[int] = None,
    seed: int = 0,
    grid_spacing: Optional[float] = None,
    resume: bool = False,
    warped: bool = False,
    report: bool = False,
    device: str = "cpu",
    progress: Optional[ProgressCallback] = None,
    show_progress: bool = True,
) -> Dict[str, Any]:
    """Registers a collection of unaligned pairs (``pairs_dir/A`` fixed, ``pairs_dir/B``
    moving, matched by file name), learning a CoMIR from the collection itself, as ``comir
    align`` does. ``out`` receives ``transforms/``, ``results.csv``, the model (and ``warped/``,
    ``report/``). ``transform`` is ``auto`` (rigid unless a ``similarity,affine`` fit is
    clearly better on the raw images; ``similarity,affine`` through the model) or a chain.
    ``raw_method`` is ``mi`` or ``ngf`` (MI refined by normalised gradient fields, for CT vs
    MR).

    Returns:
        ``rounds`` (per round: every pair's kept result with its confidence, the pairs that
        changed, seconds), ``skipped`` (pairs left out, with why) and ``stop`` (why the rounds
        ended).
    """
    options: Dict[str, Any] = {
        "transform": transform,
        "raw_method": raw_method,
        "grid_spacing": grid_spacing,
        "rounds": rounds,
        "minutes": minutes,
        "preset": preset,
        "config": None if config is None else os.fspath(config),
        "steps": steps,
        "seed": seed,
        "resume": resume,
        "warped": warped,
        "report": report,
        "device": device,
    }
    callback, close = _progress_or_bar(progress, show_progress)
    try:
        text = _comir.align(os.fspath(pairs_dir), os.fspath(out), options, callback)
    finally:
        if close:
            close()
    return json.loads(text)
