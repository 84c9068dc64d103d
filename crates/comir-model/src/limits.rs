//! How large a network comir agrees to build from a file (a model card, a training recipe, a
//! checkpoint, imported weights): every size is checked before anything of that size is
//! allocated, so a hostile or mistaken file gets one clear error instead of the machine's memory.
//!
//! Fixed bounds hold for each field of a [`crate::DenseUNetConfig`] (far above any published
//! CoMIR network); the parameters of the networks of one model must also fit a memory budget,
//! [`DEFAULT_MAX_MODEL_BYTES`], which the environment variable `COMIR_MAX_MODEL_MIB` raises.

/// Most input or representation channels of a network.
pub const MAX_CHANNELS: usize = 1024;
/// Largest `init_filters` and `growth_rate`.
pub const MAX_FILTERS: usize = 1024;
/// Most dense layers in one block.
pub const MAX_BLOCK_LAYERS: usize = 128;
/// Most pooling levels (`down_blocks` entries).
pub const MAX_DEPTH: usize = 16;
/// Default budget for the parameters of a model's networks, as f32: 1 GiB (the histology
/// preset takes 4 MiB).
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 1 << 30;

/// The budget for a model's parameters in bytes: `COMIR_MAX_MODEL_MIB` (mebibytes) when set to
/// a number, else [`DEFAULT_MAX_MODEL_BYTES`].
pub fn max_model_bytes() -> u64 {
    std::env::var("COMIR_MAX_MODEL_MIB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_MAX_MODEL_BYTES, |mib| mib.saturating_mul(1 << 20))
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// Refuses `params` f32 values beyond the budget; `what` names them in the message.
pub fn check_budget(what: &str, params: u64) -> Result<(), String> {
    let (need, limit) = (params.saturating_mul(4), max_model_bytes());
    if need > limit {
        return Err(format!(
            "{what} {params} parameters ({} as f32), more than the limit of {} \
             (raise COMIR_MAX_MODEL_MIB to allow it)",
            mib(need),
            mib(limit)
        ));
    }
    Ok(())
}
