//! Which vector instructions comir's hand-written kernels use, and the CPU's FP32 peak.
//!
//! Every kernel with an instruction-set-specific form has one per [`Isa`]: AVX-512 (16 `f32`
//! lanes), AVX2 + FMA (8 lanes) and a portable form that compiles for any target. The
//! instruction set is chosen once per process ([`active`]): the best the CPU runs
//! ([`Isa::detected`]), or the one the environment variable `COMIR_ISA` names (`avx512`,
//! `avx2`, `portable`), so that every path can be run and compared on one machine. Programs
//! check the variable at start ([`requested`]) to refuse a bad value with a clear message;
//! [`active`] itself never fails (a value it cannot honour falls back to the detected set).
//!
//! [`Peak`] estimates the machine's FP32 peak from the instruction set (cores × lanes × 2
//! flops per fused multiply-add × FMA units × clock), for benchmarks to report the share of
//! it they reach; `PEAK_GFLOPS` overrides the estimate. [`MeasuredPeak`] measures it instead,
//! with every core running chains of vector FMAs: the machine's own peak.
//!
//! [`CacheLineAlloc`] is a global allocator for comir's programs that starts every large block
//! on a cache line, so that the kernels' whole-vector row accesses do not straddle two.
//!
//! [`on_pool`] runs work on rayon's thread pool, so that the many parallel loops of a training
//! step or a registration start there instead of each being handed over from outside;
//! [`build_pool`] gives the pool's threads a main thread's stack.
#![warn(missing_docs)]

mod alloc;
mod pool;

pub use alloc::{CacheLineAlloc, CACHE_LINE, LARGE_BLOCK};
pub use pool::{build_pool, on_pool, POOL_STACK};

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The environment variable that forces an instruction set.
pub const ENV: &str = "COMIR_ISA";

/// An instruction set for comir's kernels, ordered from the narrowest to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Plain Rust (and the `gemm` crate's matrix products): any target.
    Portable,
    /// x86-64 AVX2 with FMA: 8 `f32` lanes.
    Avx2,
    /// x86-64 AVX-512 (F): 16 `f32` lanes and masked loads and stores.
    Avx512,
}

impl Isa {
    /// Every instruction set, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The name `COMIR_ISA` takes: `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Reads a name as [`Isa::name`] writes it (case and `-`/`_` ignored: `AVX-512` works).
    ///
    /// # Errors
    /// The accepted names, when `text` is none of them.
    pub fn parse(text: &str) -> Result<Isa, String> {
        let key: String = text
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        match key.as_str() {
            "portable" | "scalar" | "generic" => Ok(Isa::Portable),
            "avx2" => Ok(Isa::Avx2),
            "avx512" | "avx512f" => Ok(Isa::Avx512),
            _ => Err(format!(
                "unknown instruction set '{text}' (expected avx512, avx2 or portable)"
            )),
        }
    }

    /// `f32` lanes of one vector register (4 for the portable path: what SSE2 or NEON give the
    /// compiler's own vectorisation).
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Portable => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Whether this CPU runs the instruction set. The kernels ask before every call, so the
    /// answer is one relaxed atomic load after the first detection.
    #[inline]
    pub fn supported(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx2 => cpu_flags() & AVX2 != 0,
            Isa::Avx512 => cpu_flags() & AVX512 != 0,
        }
    }

    /// The widest instruction set this CPU runs.
    pub fn detected() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.supported())
            .unwrap_or(Isa::Portable)
    }

    /// The instruction sets this CPU runs, narrowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.supported()).collect()
    }
}

const KNOWN: u8 = 1;
const AVX2: u8 = 2;
const AVX512: u8 = 4;

/// The detected instruction sets as bits (`KNOWN` once detection has run).
#[inline]
fn cpu_flags() -> u8 {
    static FLAGS: AtomicU8 = AtomicU8::new(0);
    let flags = FLAGS.load(Ordering::Relaxed);
    if flags & KNOWN != 0 {
        return flags;
    }
    let flags = KNOWN | detect_flags();
    FLAGS.store(flags, Ordering::Relaxed);
    flags
}

#[cold]
fn detect_flags() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let avx512 = avx2 && std::arch::is_x86_feature_detected!("avx512f");
        (if avx2 { AVX2 } else { 0 }) | (if avx512 { AVX512 } else { 0 })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The instruction set `COMIR_ISA` asks for: `None` when it is unset or empty.
///
/// # Errors
/// One line naming the variable and the problem: an unknown name, or an instruction set this
/// CPU does not run.
pub fn requested() -> Result<Option<Isa>, String> {
    let Some(value) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    if value.trim().is_empty() {
        return Ok(None);
    }
    let isa = Isa::parse(&value).map_err(|e| format!("{ENV}: {e}"))?;
    if !isa.supported() {
        return Err(format!(
            "{ENV}={value}: this CPU does not run {isa} (it runs {})",
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Some(isa))
}

/// The instruction set of this process: `COMIR_ISA` when it names one the CPU runs, else
/// [`Isa::detected`]. Read once; later changes of the variable have no effect.
#[inline]
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| requested().ok().flatten().unwrap_or_else(Isa::detected))
}

/// An estimate of the machine's FP32 peak for one instruction set.
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    /// The instruction set the estimate is for.
    pub isa: Isa,
    /// Cores (threads) counted.
    pub cores: usize,
    /// `f32` lanes per vector.
    pub lanes: usize,
    /// Vector FMA units per core assumed.
    pub fma_units: usize,
    /// Clock in GHz (`/sys` maximum frequency, else `/proc/cpuinfo`, else 2.5).
    pub ghz: f64,
    /// Peak GFLOP/s: the product above × 2, or `PEAK_GFLOPS`.
    pub gflops: f64,
    /// Where the number comes from, for people.
    pub source: String,
}

impl Peak {
    /// The peak of `cores` cores running `isa`: `PEAK_GFLOPS` when it is set to a positive
    /// number, else cores × lanes × 2 × FMA units × clock. Two FMA units are assumed for AVX2
    /// (Haswell and Zen 2 onwards) and for AVX-512 on Intel; one 512-bit unit for AVX-512 on
    /// AMD (Zen 4 splits it in two 256-bit halves) and for the portable path.
    pub fn estimate(isa: Isa, cores: usize) -> Peak {
        let lanes = isa.f32_lanes();
        let amd = cpu_vendor().is_some_and(|v| v.contains("AMD"));
        let fma_units = match isa {
            Isa::Portable => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 if amd => 1,
            Isa::Avx512 => 2,
        };
        let (ghz, clock_source) = clock_ghz();
        let computed = cores as f64 * lanes as f64 * 2.0 * fma_units as f64 * ghz;
        let forced = std::env::var("PEAK_GFLOPS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0);
        let (gflops, source) = match forced {
            Some(p) => (p, "PEAK_GFLOPS".to_string()),
            None => (
                computed,
                format!(
                    "{cores} cores x {lanes} lanes x 2 x {fma_units} FMA units x {ghz:.2} GHz ({clock_source})"
                ),
            ),
        };
        Peak {
            isa,
            cores,
            lanes,
            fma_units,
            ghz,
            gflops,
            source,
        }
    }
}

/// The FP32 throughput this machine delivers, measured: every one of `cores` threads runs
/// independent chains of vector fused multiply-adds of one instruction set at once. Unlike
/// [`Peak::estimate`], it needs no clock or unit count (virtual machines often report neither
/// truly) and includes what the CPU does to its clock under wide vectors on every core.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredPeak {
    /// The instruction set measured (the portable path: SSE2 multiply then add on x86-64, the
    /// baseline target's vectors; plain Rust elsewhere).
    pub isa: Isa,
    /// Threads run together.
    pub cores: usize,
    /// The whole machine's GFLOP/s with `cores` threads (the best of a few repeats).
    pub gflops: f64,
}

impl MeasuredPeak {
    /// Measures `isa` (the portable path when the CPU does not run it) on `cores` threads, for
    /// about 0.1 s per repeat and three repeats.
    pub fn measure(isa: Isa, cores: usize) -> MeasuredPeak {
        let isa = if isa.supported() { isa } else { Isa::Portable };
        let cores = cores.max(1);
        // Iterations per thread; each does 12 vector FMAs (24 flops a lane).
        let iterations: u64 = match isa {
            Isa::Portable => 4_000_000,
            _ => 10_000_000,
        };
        let flops = (iterations * 12 * 2 * isa.f32_lanes() as u64 * cores as u64) as f64;
        let best = (0..3)
            .map(|_| {
                let start = std::time::Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..cores {
                        scope.spawn(|| std::hint::black_box(fma_chains(isa, iterations)));
                    }
                });
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        MeasuredPeak {
            isa,
            cores,
            gflops: flops / best.max(1e-9) / 1e9,
        }
    }
}

/// Twelve independent chains `a = a · b + c`, `iterations` times, in `isa`'s vectors (enough
/// chains to cover two units' FMA latency); returns a sum so that nothing is optimised away.
fn fma_chains(isa: Isa, iterations: u64) -> f32 {
    match isa {
        // SAFETY: `measure` runs only an instruction set the CPU supports.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { fma_chains_avx512(iterations) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { fma_chains_avx2(iterations) },
        // SAFETY: SSE2 is part of every x86-64 CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Portable => unsafe { mul_add_chains_sse2(iterations) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => {
            let (b, c) = (
                std::hint::black_box(0.999f32),
                std::hint::black_box(0.001f32),
            );
            let mut a = [0.0f32; 12];
            for _ in 0..iterations {
                for x in a.iter_mut() {
                    *x = *x * b + c;
                }
            }
            a.iter().sum()
        }
    }
}

/// SSE2's multiply then add, the baseline x86-64 target's counterpart of an FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sse2_mul_add(
    a: std::arch::x86_64::__m128,
    b: std::arch::x86_64::__m128,
    c: std::arch::x86_64::__m128,
) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    _mm_add_ps(_mm_mul_ps(a, b), c)
}

macro_rules! fma_chains_for {
    ($name:ident, $feature:literal, $set:ident, $fma:ident, $vec:ty, $lanes:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(iterations: u64) -> f32 {
            use std::arch::x86_64::*;
            let b = $set(std::hint::black_box(0.999f32));
            let c = $set(std::hint::black_box(0.001f32));
            // Separate variables, not an array: every chain stays in a register.
            let (mut a0, mut a1, mut a2, mut a3) = ($set(0.0), $set(1.0), $set(2.0), $set(3.0));
            let (mut a4, mut a5, mut a6, mut a7) = ($set(4.0), $set(5.0), $set(6.0), $set(7.0));
            let (mut a8, mut a9, mut a10, mut a11) = ($set(8.0), $set(9.0), $set(10.0), $set(11.0));
            for _ in 0..iterations {
                a0 = $fma(a0, b, c);
                a1 = $fma(a1, b, c);
                a2 = $fma(a2, b, c);
                a3 = $fma(a3, b, c);
                a4 = $fma(a4, b, c);
                a5 = $fma(a5, b, c);
                a6 = $fma(a6, b, c);
                a7 = $fma(a7, b, c);
                a8 = $fma(a8, b, c);
                a9 = $fma(a9, b, c);
                a10 = $fma(a10, b, c);
                a11 = $fma(a11, b, c);
            }
            let mut sum = 0.0f32;
            for v in [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] {
                let lanes: [f32; $lanes] = std::mem::transmute::<$vec, [f32; $lanes]>(v);
                sum += lanes.iter().sum::<f32>();
            }
            sum
        }
    };
}

fma_chains_for!(
    fma_chains_avx512,
    "avx512f",
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    __m512,
    16
);
fma_chains_for!(
    fma_chains_avx2,
    "avx2,fma",
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    __m256,
    8
);
fma_chains_for!(
    mul_add_chains_sse2,
    "sse2",
    _mm_set1_ps,
    sse2_mul_add,
    __m128,
    4
);

fn cpu_vendor() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("vendor_id"))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

/// The CPU's clock: the highest `cpuinfo_max_freq` of `/sys`, else the highest `cpu MHz` of
/// `/proc/cpuinfo` (virtual machines often show only that), else 2.5 GHz.
fn clock_ghz() -> (f64, &'static str) {
    let sys = (0..1024)
        .map_while(|i| {
            std::fs::read_to_string(format!(
                "/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq"
            ))
            .ok()
        })
        .filter_map(|s| s.trim().parse::<f64>().ok())
        .fold(0.0f64, f64::max);
    if sys > 0.0 {
        return (sys / 1e6, "cpufreq maximum");
    }
    let proc = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("cpu MHz"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
                .fold(0.0f64, f64::max)
        })
        .unwrap_or(0.0);
    if proc > 0.0 {
        return (proc / 1e3, "/proc/cpuinfo");
    }
    (2.5, "assumed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_spellings_are_forgiven() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Ok(isa));
        }
        assert_eq!(Isa::parse("AVX-512"), Ok(Isa::Avx512));
        assert_eq!(Isa::parse(" Avx_2 "), Ok(Isa::Avx2));
        assert_eq!(Isa::parse("scalar"), Ok(Isa::Portable));
        let err = Isa::parse("sse9").expect_err("not a name");
        assert!(err.contains("'sse9'") && err.contains("avx512"), "{err}");
    }

    #[test]
    fn detection_is_consistent() {
        let available = Isa::available();
        assert_eq!(available.first(), Some(&Isa::Portable));
        assert_eq!(available.last(), Some(&Isa::detected()));
        // A wider set implies the narrower ones.
        for isa in Isa::ALL {
            if isa.supported() {
                assert!(Isa::ALL.iter().filter(|i| **i < isa).all(|i| i.supported()));
            }
        }
        assert!(active().supported());
    }

    #[test]
    fn the_peak_is_the_product_of_its_parts() {
        if std::env::var_os("PEAK_GFLOPS").is_some() {
            return; // overridden by the environment: nothing to recompute
        }
        for isa in Isa::ALL {
            let p = Peak::estimate(isa, 3);
            let want = 3.0 * p.lanes as f64 * 2.0 * p.fma_units as f64 * p.ghz;
            assert!((p.gflops - want).abs() < 1e-9, "{p:?}");
            assert_eq!(p.lanes, isa.f32_lanes());
            assert!(p.ghz > 0.0 && p.ghz < 10.0, "{p:?}");
        }
        assert!(Peak::estimate(Isa::Avx512, 2).gflops >= Peak::estimate(Isa::Avx2, 2).gflops);
    }

    #[test]
    fn the_measured_peak_grows_with_the_vector_width() {
        // Wider vectors do more per instruction; on every x86-64 CPU with AVX2 + FMA its
        // chains beat plain Rust's multiply and add by well over 1.5×, whatever else runs.
        let portable = MeasuredPeak::measure(Isa::Portable, 1);
        assert!(
            portable.gflops.is_finite() && portable.gflops > 0.1,
            "{portable:?}"
        );
        assert_eq!(portable.isa, Isa::Portable);
        if Isa::Avx2.supported() {
            let avx2 = MeasuredPeak::measure(Isa::Avx2, 1);
            assert!(
                avx2.gflops > 1.5 * portable.gflops,
                "{avx2:?} vs {portable:?}"
            );
        }
        // A set the CPU lacks measures the portable path instead of faulting.
        for isa in Isa::ALL.into_iter().filter(|i| !i.supported()) {
            assert_eq!(MeasuredPeak::measure(isa, 1).isa, Isa::Portable);
        }
    }
}
