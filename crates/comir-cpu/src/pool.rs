//! Where comir's parallel loops start: on rayon's pool.

/// Stack size of the pool's threads when a program builds the pool with [`build_pool`]: the
/// 8 MiB of a Linux main thread, so that work moved onto the pool by [`on_pool`] has the stack
/// it would have had on the main thread.
pub const POOL_STACK: usize = 8 << 20;

/// Builds rayon's global pool with [`POOL_STACK`]-byte stacks and rayon's thread count
/// (`RAYON_NUM_THREADS`, else one thread per core). For programs, before any parallel work.
///
/// # Errors
/// The pool was already built (by an earlier call or by parallel work), or a thread could not
/// be started.
pub fn build_pool() -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .stack_size(POOL_STACK)
        .build_global()
}

/// Runs `work` on a thread of rayon's pool and returns its result; on a pool thread already,
/// just runs it. A panic in `work` is resumed here.
///
/// A parallel loop started outside the pool is handed over to it: a worker is woken and the
/// caller sleeps until the loop ends. A training step or a registration starts hundreds to
/// thousands of loops, and on a 2-core machine those hand-overs cost a few per cent of it
/// (docs/benchmarks.md); started on a worker, a loop is split there and its caller takes part.
/// The results are the same: how a loop splits its work does not depend on where it starts.
///
/// Work on the pool must not hold a lock across a parallel loop that other work of the same
/// loop could take (a waiting worker runs other jobs): the same rule as for any rayon code.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
    }
}

#[cfg(test)]
mod tests {
    use super::on_pool;

    /// Work started outside the pool runs on one of its threads, and its parallel loops run
    /// from there; work already on the pool stays on its thread.
    #[test]
    fn on_pool_runs_work_on_a_pool_thread() {
        use rayon::prelude::*;
        // Test threads are not the pool's.
        assert_eq!(rayon::current_thread_index(), None);
        let (outer, inner, sum) = on_pool(|| {
            let outer = rayon::current_thread_index();
            let inner = on_pool(rayon::current_thread_index);
            (outer, inner, (1..=1000u64).into_par_iter().sum::<u64>())
        });
        assert!(outer.is_some());
        assert_eq!(inner, outer);
        assert_eq!(sum, 500_500);
    }

    /// A panic in the work reaches the caller.
    #[test]
    fn on_pool_resumes_a_panic() {
        let caught = std::panic::catch_unwind(|| on_pool(|| panic!("in the work")));
        assert!(caught.is_err());
    }
}
