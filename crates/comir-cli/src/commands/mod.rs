//! One module per subcommand.

pub mod align;
pub mod analyze;
pub mod demo;
pub mod eval;
pub mod experiment;
pub mod import_torch;
pub mod models;
pub mod register;
pub mod represent;
pub mod train;
pub mod transform_points;
