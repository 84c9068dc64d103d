//! `comir._comir`: the native half of the `comir` Python package. It calls the library entry
//! points of `comir-pipeline` (what the command-line tool calls too) on numpy arrays, releases
//! the GIL while they compute, and raises `comir.Error` (and its subclasses) with the same
//! one-line messages as the command line. The Python half (`python/comir/__init__.py`) adds
//! keyword defaults, docstrings and a tqdm bar.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comir_image::ops::{warp, Border};
use comir_image::Image;
use comir_pipeline::align::{align as align_collection, AlignOptions};
use comir_pipeline::eval::{evaluate as evaluate_pairs, EvalOptions};
use comir_pipeline::model::{ModelOptions, RegistrationModel};
use comir_pipeline::points::{map_point, PointDirection};
use comir_pipeline::register::{PairRegistrar, RegisterOptions};
use comir_pipeline::train::{train as train_model, TrainOptions, TrainerChoice};
use comir_pipeline::{Console, DisplacementKind, MethodName, Modality, TransformStages};
use comir_represent::Representer;
use comir_transform::{Composite2, TransformRecord};
use indicatif::ProgressBar;
use numpy::ndarray::{Array2, Array3, ArrayViewD, Axis};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArray2, PyReadonlyArrayDyn};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Large buffers start on a cache line, as in the `comir` program (a Python extension may
/// choose its own allocator: Python's objects do not come from it).
#[global_allocator]
static ALLOC: comir_cpu::CacheLineAlloc = comir_cpu::CacheLineAlloc;

create_exception!(
    comir,
    Error,
    PyException,
    "Any error of comir: the message is the line the command-line tool prints."
);
create_exception!(comir, ImageError, Error, "An image that cannot be used: unreadable, empty, of an unsupported type or shape, or holding NaN or infinite values.");
create_exception!(
    comir,
    ModelError,
    Error,
    "A model folder or name that cannot be loaded, or an image the model cannot take."
);
create_exception!(comir, ConfigError, Error, "A setting that is not valid: an unknown name, a bad value, an unreadable or invalid config file.");
create_exception!(
    comir,
    RegistrationError,
    Error,
    "A registration, training, evaluation or alignment that failed while running."
);

/// The Python exception for `e`, by the errors in its chain; `RegistrationError` when none is
/// an image, model or config error.
fn to_py(e: anyhow::Error) -> PyErr {
    to_py_or(e, RegistrationError::new_err)
}

/// [`to_py`] with `other` for errors of no known kind.
fn to_py_or(e: anyhow::Error, other: fn(String) -> PyErr) -> PyErr {
    let message = format!("{e:#}");
    let kind = e.chain().find_map(|cause| {
        if cause.is::<comir_image::Error>() {
            Some(ErrorKind::Image)
        } else if cause.is::<comir_represent::Error>()
            || cause.is::<comir_pipeline::bundled::UnknownModel>()
            || cause.is::<comir_model::StoreError>()
            || cause.is::<comir_model::ModelError>()
        {
            Some(ErrorKind::Model)
        } else if cause.is::<comir_model::ConfigError>() {
            Some(ErrorKind::Config)
        } else {
            None
        }
    });
    match kind {
        Some(ErrorKind::Image) => ImageError::new_err(message),
        Some(ErrorKind::Model) => ModelError::new_err(message),
        Some(ErrorKind::Config) => ConfigError::new_err(message),
        None => other(message),
    }
}

enum ErrorKind {
    Image,
    Model,
    Config,
}

fn config_err(message: impl Into<String>) -> PyErr {
    ConfigError::new_err(message.into())
}

fn parse<T: std::str::FromStr>(what: &str, value: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| config_err(format!("{what}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// numpy arrays ⇄ images

/// An image from a numpy array, as `comir_image::load` gives a file: 2-D (gray) or H×W×C with C
/// 1, 3 or 4 (alpha dropped); uint8 and uint16 scaled to [0, 1], float32 and float64 as they
/// are. `name` labels the errors.
fn image_from_array(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Image> {
    let bad = |reason: String| ImageError::new_err(format!("{name}: {reason}"));
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        return from_view(a.as_array(), |v| f32::from(v) / 255.0).map_err(bad);
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, u16>>() {
        return from_view(a.as_array(), |v| f32::from(v) / 65535.0).map_err(bad);
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        return from_view(a.as_array(), |v| v).map_err(bad);
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, f64>>() {
        return from_view(a.as_array(), |v| v as f32).map_err(bad);
    }
    let dtype = obj
        .getattr("dtype")
        .map(|d| d.to_string())
        .unwrap_or_else(|_| obj.get_type().to_string());
    Err(bad(format!(
        "expected a numpy array of uint8, uint16, float32 or float64, got {dtype}"
    )))
}

fn from_view<T: Copy>(a: ArrayViewD<'_, T>, to_f32: impl Fn(T) -> f32) -> Result<Image, String> {
    let shape = a.shape().to_vec();
    let (h, w, c_in) = match shape.as_slice() {
        [h, w] => (*h, *w, 1),
        [h, w, c @ (1 | 3 | 4)] => (*h, *w, *c),
        _ => {
            return Err(format!(
                "expected a 2-D gray image or H×W×3 colour image, got shape {shape:?}"
            ))
        }
    };
    if h == 0 || w == 0 {
        return Err("image has no pixels (0 width or height)".into());
    }
    let c = c_in.min(3);
    let data: Vec<f32> = if let Some(values) = a.as_slice() {
        // C order is comir's layout (rows, then channels interleaved): one pass over memory.
        if c == c_in {
            values.iter().map(|&v| to_f32(v)).collect()
        } else {
            values
                .chunks_exact(c_in)
                .flat_map(|px| px[..c].iter().map(|&v| to_f32(v)))
                .collect()
        }
    } else if c == c_in {
        // Any other strides: the same order, element by element.
        a.iter().map(|&v| to_f32(v)).collect()
    } else {
        a.outer_iter()
            .flat_map(|row| {
                row.outer_iter()
                    .flat_map(|px| px.iter().take(c).map(|&v| to_f32(v)).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let img = Image::from_vec(w, h, c, data).map_err(|e| e.to_string())?;
    if !img.is_finite() {
        return Err("image contains NaN or infinite values".into());
    }
    Ok(img)
}

/// An image as a float32 array (H×W, or H×W×C), its buffer handed to numpy without a copy.
fn image_to_array(py: Python<'_>, img: Image) -> PyResult<Bound<'_, PyArrayDyn<f32>>> {
    let (w, h, c) = (img.width(), img.height(), img.channels());
    let data = img.into_vec();
    let array = if c == 1 {
        Array2::from_shape_vec((h, w), data)
            .map_err(|e| Error::new_err(e.to_string()))?
            .into_dyn()
    } else {
        Array3::from_shape_vec((h, w, c), data)
            .map_err(|e| Error::new_err(e.to_string()))?
            .into_dyn()
    };
    Ok(array.into_pyarray(py))
}

// ---------------------------------------------------------------------------------------------
// progress: the work runs on its own thread, this one reports its bars to Python

/// The console of a call from Python: bars are kept for the calling thread to read, lines are
/// queued for Python's `logging`.
#[derive(Clone, Default)]
struct SharedConsole {
    bars: Arc<Mutex<Vec<(String, ProgressBar)>>>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Console for SharedConsole {
    fn say(&mut self, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_string());
    }
    fn note(&mut self, line: &str) {
        self.say(line);
    }
    fn bar(&mut self, len: u64, what: &str) -> ProgressBar {
        let pb = ProgressBar::hidden();
        pb.set_length(len);
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((what.to_string(), pb.clone()));
        pb
    }
}

impl SharedConsole {
    /// Sends the queued lines to the `comir` logger.
    fn flush_lines(&self, py: Python<'_>) -> PyResult<()> {
        let lines: Vec<String> =
            std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        if lines.is_empty() {
            return Ok(());
        }
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("comir",))?;
        for line in lines {
            logger.call_method1("info", (line,))?;
        }
        Ok(())
    }
}

/// Runs `work` without the GIL. With a `progress` callable, `work` runs on a thread of its own
/// and this one calls `progress(what, position, length, message)` as its bars move (every 0.2 s
/// at most). An exception in the callback (Ctrl-C included) is raised once the work has ended.
fn run_with_progress<T: Send>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    work: impl FnOnce(&mut dyn Console) -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let console = SharedConsole::default();
    // On the thread pool, as the command line runs its commands (`comir_cpu::on_pool`).
    let work = move |c: &mut SharedConsole| comir_cpu::on_pool(move || work(c));
    let Some(callback) = progress else {
        let mut c = console.clone();
        let out = py.detach(move || work(&mut c));
        console.flush_lines(py)?;
        return out.map_err(to_py);
    };
    let mut reported: Vec<(u64, u64)> = Vec::new();
    let mut callback_error: Option<PyErr> = None;
    let result = std::thread::scope(|s| {
        let mut c = console.clone();
        let handle = s.spawn(move || work(&mut c));
        loop {
            let finished = py.detach(|| {
                for _ in 0..20 {
                    if handle.is_finished() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                handle.is_finished()
            });
            if callback_error.is_none() {
                let bars = console
                    .bars
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for (i, (what, pb)) in bars.iter().enumerate() {
                    let now = (pb.position(), pb.length().unwrap_or(0));
                    if reported.get(i) == Some(&now) {
                        continue;
                    }
                    if reported.len() <= i {
                        reported.resize(i + 1, (u64::MAX, 0));
                    }
                    reported[i] = now;
                    let message = pb.message();
                    if let Err(e) = callback.call1(py, (what.as_str(), now.0, now.1, message)) {
                        callback_error = Some(e);
                        break;
                    }
                }
                if let Err(e) = console.flush_lines(py).and_then(|()| py.check_signals()) {
                    callback_error = Some(e);
                }
            }
            if finished {
                break;
            }
        }
        handle.join()
    });
    console.flush_lines(py)?;
    let out = match result {
        Ok(out) => out.map_err(to_py)?,
        Err(_) => return Err(Error::new_err("the computation panicked")),
    };
    match callback_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

// ---------------------------------------------------------------------------------------------
// registration

/// The result of a registration: the transform from the fixed image to the moving one, and
/// what the registration says about it.
#[pyclass(module = "comir", name = "Registration", frozen)]
struct Registration {
    record: TransformRecord,
    transform: Composite2,
    /// Fixed image's (height, width): the size of `warp`'s output.
    fixed_shape: (usize, usize),
}

fn to_json_text(record: &TransformRecord) -> PyResult<String> {
    serde_json::to_string_pretty(record).map_err(|e| Error::new_err(e.to_string()))
}

#[pymethods]
impl Registration {
    /// The 3×3 matrix of the linear part, `fixed_to_moving` as in the JSON file.
    #[getter]
    fn matrix<'py>(&self, py: Python<'py>) -> Bound<'py, numpy::PyArray2<f64>> {
        let m = self.transform.linear.matrix3();
        Array2::from_shape_fn((3, 3), |(i, j)| m[i][j]).into_pyarray(py)
    }

    /// The whole transform as the JSON file holds it (a dict): the linear part and, for
    /// `bspline`, the grid origin, spacing, size and coefficients.
    #[getter]
    fn transform<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = to_json_text(&self.record)?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// `rigid`, `similarity`, `affine` or `bspline`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.transform.kind_name()
    }

    /// The method, as in the JSON file (`mi`, `comir+aamd`, …).
    #[getter]
    fn method(&self) -> String {
        self.record.method.clone()
    }

    /// The metric at the result; lower is better (MI negated).
    #[getter]
    fn metric_value(&self) -> f64 {
        self.record.metric_value
    }

    /// Seconds the registration took.
    #[getter]
    fn seconds(&self) -> f64 {
        self.record.seconds
    }

    /// Confidence in [0, 1], judged without the truth (`None` when not asked for).
    #[getter]
    fn confidence(&self) -> Option<f64> {
        self.record.confidence
    }

    /// `ok` or `doubtful` (`None` when not judged).
    #[getter]
    fn flag(&self) -> Option<String> {
        self.record.flag.clone()
    }

    /// (height, width) of the fixed image: the shape of `warp`'s output.
    #[getter]
    fn fixed_shape(&self) -> (usize, usize) {
        self.fixed_shape
    }

    /// The transform file's text (what `save` writes): `comir register`'s JSON.
    fn to_json(&self) -> PyResult<String> {
        to_json_text(&self.record)
    }

    /// Writes the JSON file (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| comir_transform::write_json(&path, &self.record))
            .map_err(|e| to_py(e.into()))
    }

    /// Writes the transform as an ITK `.tfm` file (SimpleITK, 3D Slicer).
    fn save_tfm(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| comir_transform::write_itk_composite(&path, &self.transform))
            .map_err(|e| to_py(e.into()))
    }

    /// The moving image resampled into the fixed frame: `moving(T(p))`, bilinear, 0 outside.
    /// `shape` (height, width) defaults to the fixed image's. Returns float32 in the layout of
    /// the input (H×W or H×W×3), uint8/uint16 input scaled to [0, 1].
    #[pyo3(signature = (image, shape=None))]
    fn warp<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
        shape: Option<(usize, usize)>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let img = image_from_array(image, "image")?;
        let (h, w) = shape.unwrap_or(self.fixed_shape);
        let t = &self.transform;
        let out = py.detach(|| warp(&img, w, h, Border::Zero, |p| t.apply(p)));
        image_to_array(py, out)
    }

    /// Maps points (an N×2 array of x = column, y = row) from the fixed image to the moving one,
    /// or back with `inverse=True`.
    #[pyo3(signature = (xy, inverse=false))]
    fn transform_points<'py>(
        &self,
        py: Python<'py>,
        xy: PyReadonlyArray2<'py, f64>,
        inverse: bool,
    ) -> PyResult<Bound<'py, numpy::PyArray2<f64>>> {
        let a = xy.as_array();
        if a.shape()[1] != 2 {
            return Err(config_err(format!(
                "xy: expected an N×2 array of x, y, got shape {:?}",
                a.shape()
            )));
        }
        let direction = if inverse {
            PointDirection::MovingToFixed
        } else {
            PointDirection::FixedToMoving
        };
        let mut out = Array2::<f64>::zeros((a.shape()[0], 2));
        for (i, row) in a.axis_iter(Axis(0)).enumerate() {
            let p = [row[0], row[1]];
            if !(p[0].is_finite() && p[1].is_finite()) {
                return Err(config_err(format!("xy: row {i} is not a finite point")));
            }
            let Some(q) = map_point(&self.transform, p, direction) else {
                return Err(RegistrationError::new_err(format!(
                    "xy: row {i}: the point ({}, {}) cannot be mapped back (the transform is \
                     singular or the deformation folds there)",
                    p[0], p[1]
                )));
            };
            out[[i, 0]] = q[0];
            out[[i, 1]] = q[1];
        }
        Ok(out.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        let conf = self
            .record
            .confidence
            .map_or(String::new(), |c| format!(", confidence={c:.3}"));
        format!(
            "Registration(kind='{}', method='{}', metric_value={:.6}{conf}, seconds={:.3})",
            self.transform.kind_name(),
            self.record.method,
            self.record.metric_value,
            self.record.seconds
        )
    }
}

/// Reads a transform file (`comir register`'s JSON, or ITK `.tfm`) as a Registration.
#[pyfunction]
fn load_transform(py: Python<'_>, path: PathBuf) -> PyResult<Registration> {
    let is_tfm = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tfm"));
    let (record, transform) = py
        .detach(|| -> anyhow::Result<(TransformRecord, Composite2)> {
            if is_tfm {
                let t = comir_transform::read_itk_composite(&path)?;
                Ok((TransformRecord::from_composite(&t, "itk", 0.0, 0.0), t))
            } else {
                let record = comir_transform::read_json(&path)?;
                let t = record.composite();
                Ok((record, t))
            }
        })
        .map_err(to_py)?;
    Ok(Registration {
        record,
        transform,
        fixed_shape: (0, 0),
    })
}

/// Registers `moving` onto `fixed` (numpy arrays) as `comir register` does.
#[pyfunction]
#[pyo3(signature = (fixed, moving, method, transform, model, model_object, fixed_modality, init_global,
    init_file, init_transform, seed, config, grid_spacing, confidence, match_histograms,
    rotation_average, device))]
#[allow(clippy::too_many_arguments)]
fn register(
    py: Python<'_>,
    fixed: &Bound<'_, PyAny>,
    moving: &Bound<'_, PyAny>,
    method: &str,
    transform: &str,
    model: Option<PathBuf>,
    model_object: Option<PyRef<'_, Model>>,
    fixed_modality: &str,
    init_global: bool,
    init_file: Option<PathBuf>,
    init_transform: Option<PyRef<'_, Registration>>,
    seed: u64,
    config: Option<PathBuf>,
    grid_spacing: Option<f64>,
    confidence: bool,
    match_histograms: bool,
    rotation_average: bool,
    device: String,
) -> PyResult<Registration> {
    let fixed = image_from_array(fixed, "fixed")?;
    let moving = image_from_array(moving, "moving")?;
    // A loaded `comir.Model` is registered through as it is, not loaded again.
    let shared = model_object.map(|m| (m.path.clone(), Arc::clone(&m.representer)));
    let model_dir = shared.as_ref().map(|(dir, _)| dir.clone()).or(model);
    let model = model_dir
        .map(|dir| -> PyResult<ModelOptions> {
            Ok(ModelOptions {
                fixed_modality: parse("fixed_modality", fixed_modality)?,
                device: device.clone(),
                match_histograms,
                rotation_average,
                ..ModelOptions::new(dir)
            })
        })
        .transpose()?;
    let options = RegisterOptions {
        method: parse::<MethodName>("method", method)?,
        seed,
        init_global,
        init_file,
        stages: parse::<TransformStages>("transform", transform)?,
        grid_spacing,
        config,
        model,
        confidence,
    };
    let init = match init_transform {
        Some(r) if r.transform.deformation.is_some() => {
            return Err(config_err(
                "init: a B-spline transform cannot start a registration; give its linear part",
            ))
        }
        Some(r) => Some(r.transform.linear),
        None => None,
    };
    let registered = py.detach(move || {
        // Failures before registering are settings (a config file, a start transform).
        let registrar = match (shared, &options.model) {
            (Some((_, representer)), Some(how)) => PairRegistrar::with_model(
                &options,
                RegistrationModel::with_representer(representer, how),
            ),
            _ => PairRegistrar::new(&options),
        };
        let mut registrar = registrar.map_err(|e| to_py_or(e, ConfigError::new_err))?;
        if let Some(t) = init {
            registrar.set_init(t);
        }
        registrar.register_images(&fixed, moving).map_err(to_py)
    })?;
    Ok(Registration {
        fixed_shape: (registered.fixed.height(), registered.fixed.width()),
        record: registered.record,
        transform: registered.transform,
    })
}

// ---------------------------------------------------------------------------------------------
// models

/// A trained CoMIR (a `comir train` folder or a bundled model), loaded once.
#[pyclass(module = "comir", name = "Model", frozen)]
struct Model {
    // Behind a pointer: the engine's buffers are 64-byte aligned, a Python object only 16.
    // Shared with the registrations that run through it.
    representer: Arc<Representer>,
    path: PathBuf,
}

#[pymethods]
impl Model {
    /// Loads a model folder, or a bundled model by name (`comir.models()`).
    #[staticmethod]
    #[pyo3(signature = (path_or_name, device="cpu".to_string()))]
    fn load(py: Python<'_>, path_or_name: PathBuf, device: String) -> PyResult<Model> {
        let (representer, path) = py
            .detach(|| -> anyhow::Result<(Arc<Representer>, PathBuf)> {
                let dir = comir_pipeline::bundled::resolve(&path_or_name)?;
                let device = comir_pipeline::device::select(&device)?;
                Ok((Arc::new(Representer::load(&dir, &device)?), dir))
            })
            .map_err(|e| to_py_or(e, ModelError::new_err))?;
        Ok(Model { representer, path })
    }

    /// The folder the model was loaded from (a bundled model's cache folder).
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Channels of the representation.
    #[getter]
    fn out_channels(&self) -> usize {
        self.representer.out_channels()
    }

    /// `model.json` as text.
    fn card_json(&self) -> PyResult<String> {
        serde_json::to_string_pretty(self.representer.card())
            .map_err(|e| Error::new_err(e.to_string()))
    }

    /// The representation of `image` by the network of `modality` ("a" or "b"): float32, H×W
    /// for one channel, else H×W×C; any size (large images are processed in tiles).
    #[pyo3(signature = (image, modality="a", rotation_average=false))]
    fn represent<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
        modality: &str,
        rotation_average: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let modality: Modality = parse("modality", modality)?;
        let img = image_from_array(image, "image")?;
        let r = &self.representer;
        let rep = py
            .detach(|| {
                if rotation_average {
                    r.represent_rotation_averaged(&img, modality)
                } else {
                    r.represent(&img, modality)
                }
            })
            .map_err(|e| to_py(e.into()))?;
        image_to_array(py, rep)
    }

    fn __repr__(&self) -> String {
        format!("Model(path='{}')", self.path.display())
    }
}

/// The bundled models: (name, what it is for).
#[pyfunction]
fn models() -> Vec<(&'static str, &'static str)> {
    comir_pipeline::bundled::BUNDLED
        .iter()
        .map(|m| (m.name, m.purpose))
        .collect()
}

/// Loads an image file as comir does (PNG, TIFF, JPEG, NIfTI): float32 in [0, 1] for 8- and
/// 16-bit files, H×W or H×W×3.
#[pyfunction]
fn load_image(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyArrayDyn<f32>>> {
    let img = py
        .detach(|| comir_image::load(&path))
        .map_err(|e| to_py(e.into()))?;
    image_to_array(py, img)
}

/// Saves an image as comir's command line does: `.png` as 8 bits (values taken as [0, 1]),
/// `.tif`/`.tiff` as 32-bit float; gray or colour; written atomically.
#[pyfunction]
fn save_image(py: Python<'_>, path: PathBuf, image: &Bound<'_, PyAny>) -> PyResult<()> {
    let img = image_from_array(image, "image")?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    py.detach(|| match ext.as_str() {
        "png" => comir_image::save_png(&path, &img).map_err(|e| to_py(e.into())),
        "tif" | "tiff" => comir_image::save_tiff_f32(&path, &img).map_err(|e| to_py(e.into())),
        _ => Err(ImageError::new_err(format!(
            "{}: the file must end in .png, .tif or .tiff",
            path.display()
        ))),
    })
}

// ---------------------------------------------------------------------------------------------
// training, evaluation, alignment

fn get<'py, T: FromPyObjectOwned<'py>>(
    options: Option<&Bound<'py, PyDict>>,
    key: &str,
) -> PyResult<Option<T>> {
    let Some(d) = options else { return Ok(None) };
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v
            .extract::<T>()
            .map(Some)
            .map_err(|e| config_err(format!("{key}: {}", Into::<PyErr>::into(e)))),
        _ => Ok(None),
    }
}

/// Rejects keys that are not settings.
fn check_keys(options: Option<&Bound<'_, PyDict>>, known: &[&str]) -> PyResult<()> {
    let Some(d) = options else { return Ok(()) };
    for key in d.keys() {
        let key: String = key.extract()?;
        if !known.contains(&key.as_str()) {
            return Err(config_err(format!(
                "unknown setting '{key}' (expected one of: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn parse_opt<T: std::str::FromStr>(what: &str, value: Option<String>) -> PyResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    value.map(|v| parse(what, &v)).transpose()
}

/// Trains a CoMIR as `comir train` does; returns a summary (JSON text).
#[pyfunction]
#[pyo3(signature = (a, b, out, config, overrides, progress))]
fn train(
    py: Python<'_>,
    a: PathBuf,
    b: PathBuf,
    out: PathBuf,
    config: Option<PathBuf>,
    overrides: Option<&Bound<'_, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    const KNOWN: &[&str] = &[
        "preset",
        "steps",
        "batch",
        "critic",
        "tau",
        "bottleneck",
        "bottleneck_weight",
        "seed",
        "test_fraction",
        "minutes",
        "device",
        "resume",
        "trainer",
    ];
    check_keys(overrides, KNOWN)?;
    let trainer = match get::<String>(overrides, "trainer")?.as_deref() {
        None | Some("auto") => TrainerChoice::Auto,
        Some("engine") => TrainerChoice::Engine,
        Some("burn") => TrainerChoice::Burn,
        Some(other) => {
            return Err(config_err(format!(
                "trainer: '{other}' is not auto, engine or burn"
            )))
        }
    };
    let options = TrainOptions {
        a,
        b,
        out,
        preset: parse_opt("preset", get(overrides, "preset")?)?,
        config,
        steps: get(overrides, "steps")?,
        batch: get(overrides, "batch")?,
        critic: parse_opt("critic", get(overrides, "critic")?)?,
        tau: get(overrides, "tau")?,
        bottleneck: parse_opt("bottleneck", get(overrides, "bottleneck")?)?,
        bottleneck_weight: get(overrides, "bottleneck_weight")?,
        seed: get(overrides, "seed")?,
        test_fraction: get(overrides, "test_fraction")?,
        minutes: get(overrides, "minutes")?,
        device: get(overrides, "device")?.unwrap_or_else(|| "cpu".to_string()),
        resume: get(overrides, "resume")?.unwrap_or(false),
        trainer,
    };
    let summary = run_with_progress(py, progress, |console| train_model(&options, console))?;
    let last = summary.history.last();
    let text = serde_json::json!({
        "model": options.out,
        "steps": summary.steps,
        "steps_this_run": summary.steps_this_run,
        "train_pairs": summary.split.train,
        "validation_pairs": summary.split.validation,
        "test_pairs": summary.split.test,
        "last": last,
    });
    Ok(text.to_string())
}

/// Evaluates methods on aligned pairs as `comir eval` does; returns the rows (JSON text).
#[pyfunction]
#[pyo3(signature = (pairs, methods, out, options, progress))]
fn evaluate(
    py: Python<'_>,
    pairs: PathBuf,
    methods: Vec<String>,
    out: PathBuf,
    options: Option<&Bound<'_, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    const KNOWN: &[&str] = &[
        "levels",
        "seed",
        "limit",
        "transform",
        "displacement",
        "init_global",
        "grid_spacing",
        "config",
        "model",
        "fixed_modality",
        "raw_methods",
        "report",
        "confidence",
        "resume",
    ];
    check_keys(options, KNOWN)?;
    let methods = methods
        .iter()
        .map(|m| parse::<MethodName>("methods", m))
        .collect::<PyResult<Vec<_>>>()?;
    let mut o = EvalOptions::new(pairs, methods, out);
    if let Some(levels) = get(options, "levels")? {
        o.levels = levels;
    }
    if let Some(seed) = get(options, "seed")? {
        o.seed = seed;
    }
    o.limit = get(options, "limit")?;
    if let Some(t) = get::<String>(options, "transform")? {
        o.stages = parse("transform", &t)?;
    }
    if let Some(d) = get::<String>(options, "displacement")? {
        o.displacement = match d.as_str() {
            "rigid" => DisplacementKind::Rigid,
            "affine" => DisplacementKind::Affine,
            "elastic" => DisplacementKind::Elastic,
            other => {
                return Err(config_err(format!(
                    "displacement: '{other}' is not rigid, affine or elastic"
                )))
            }
        };
    }
    o.init_global = get(options, "init_global")?.unwrap_or(false);
    o.grid_spacing = get(options, "grid_spacing")?;
    o.config = get(options, "config")?;
    if let Some(dir) = get::<PathBuf>(options, "model")? {
        let mut m = ModelOptions::new(dir);
        if let Some(f) = get::<String>(options, "fixed_modality")? {
            m.fixed_modality = parse("fixed_modality", &f)?;
        }
        o.model = Some(m);
    }
    if let Some(raw) = get::<Vec<String>>(options, "raw_methods")? {
        o.raw_methods = raw
            .iter()
            .map(|m| parse::<MethodName>("raw_methods", m))
            .collect::<PyResult<Vec<_>>>()?;
    }
    o.report = get(options, "report")?;
    if let Some(c) = get(options, "confidence")? {
        o.confidence = c;
    }
    o.resume = get(options, "resume")?.unwrap_or(false);
    let evaluated = run_with_progress(py, progress, |console| evaluate_pairs(&o, console))?;
    serde_json::to_string(&evaluated.rows).map_err(|e| Error::new_err(e.to_string()))
}

/// Aligns a collection of unaligned pairs as `comir align` does; returns a summary (JSON text).
#[pyfunction]
#[pyo3(signature = (pairs, out, options, progress))]
fn align(
    py: Python<'_>,
    pairs: PathBuf,
    out: PathBuf,
    options: Option<&Bound<'_, PyDict>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    const KNOWN: &[&str] = &[
        "transform",
        "grid_spacing",
        "raw_method",
        "rounds",
        "minutes",
        "preset",
        "config",
        "steps",
        "seed",
        "resume",
        "warped",
        "report",
        "device",
    ];
    check_keys(options, KNOWN)?;
    let o = AlignOptions {
        pairs,
        out,
        stages: match get::<String>(options, "transform")? {
            Some(t) => parse("transform", &t)?,
            None => parse("transform", "auto")?,
        },
        raw_method: parse(
            "raw_method",
            &get::<String>(options, "raw_method")?.unwrap_or_else(|| "mi".into()),
        )?,
        grid_spacing: get(options, "grid_spacing")?,
        rounds: get(options, "rounds")?.unwrap_or(3),
        minutes: get(options, "minutes")?,
        preset: parse_opt("preset", get(options, "preset")?)?,
        config: get(options, "config")?,
        steps: get(options, "steps")?,
        seed: get(options, "seed")?.unwrap_or(0),
        resume: get(options, "resume")?.unwrap_or(false),
        warped: get(options, "warped")?.unwrap_or(false),
        report: get(options, "report")?.unwrap_or(false),
        device: get(options, "device")?.unwrap_or_else(|| "cpu".to_string()),
    };
    let summary = run_with_progress(py, progress, |console| align_collection(&o, console))?;
    let text = serde_json::json!({
        "rounds": summary.rounds,
        "skipped": summary.skipped,
        "stop": summary.stop,
    });
    Ok(text.to_string())
}

/// The native module.
#[pymodule]
fn _comir(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // The pool's threads get a main thread's stack; a pool already built keeps its own.
    let _ = comir_cpu::build_pool();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ImageError", py.get_type::<ImageError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("RegistrationError", py.get_type::<RegistrationError>())?;
    m.add_class::<Registration>()?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(register, m)?)?;
    m.add_function(wrap_pyfunction!(load_transform, m)?)?;
    m.add_function(wrap_pyfunction!(load_image, m)?)?;
    m.add_function(wrap_pyfunction!(save_image, m)?)?;
    m.add_function(wrap_pyfunction!(models, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(align, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("isa", comir_cpu::active().name())?;
    Ok(())
}
