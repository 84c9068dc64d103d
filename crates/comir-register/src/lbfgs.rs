//! Limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, 2nd ed., algorithm 7.4/7.5)
//! with a backtracking Armijo line search: the optimiser for transforms with many parameters
//! (B-spline deformations), where a regular-step gradient descent needs far more evaluations.

use crate::StopReason;

/// Settings of [`minimize`].
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsSettings {
    /// Correction pairs kept (default 7).
    pub memory: usize,
    /// Iterations (line searches) at most.
    pub max_iterations: usize,
    /// Length (largest absolute component) of the first step, in parameter units: the first
    /// direction is the steepest descent and has no curvature information to scale it.
    pub initial_step: f64,
    /// Converged when an iteration lowers the cost by less than this fraction of `max(|f|, 1)`.
    pub relative_tolerance: f64,
    /// Converged when the largest gradient component is below this.
    pub gradient_tolerance: f64,
}

impl Default for LbfgsSettings {
    fn default() -> Self {
        LbfgsSettings {
            memory: 7,
            max_iterations: 100,
            initial_step: 1.0,
            relative_tolerance: 1e-6,
            gradient_tolerance: 1e-10,
        }
    }
}

/// The result of [`minimize`].
#[derive(Clone, Debug, PartialEq)]
pub struct Minimum {
    /// The best parameters found.
    pub x: Vec<f64>,
    /// The cost there.
    pub value: f64,
    /// Iterations (accepted steps).
    pub iterations: usize,
    /// Cost evaluations, line searches included.
    pub evaluations: usize,
    /// Why it stopped: `Converged` (small decrease or gradient, or no descent step found) or
    /// `MaxIterations`.
    pub stop: StopReason,
}

/// Armijo's sufficient-decrease constant.
const ARMIJO: f64 = 1e-4;

/// Halvings of the step before a line search gives up.
const MAX_BACKTRACKS: usize = 30;

/// Minimises `f` from `x0`. `f(x, grad)` returns the cost and writes its gradient, or `None`
/// where the cost cannot be evaluated (e.g. the transform left too little overlap), which the line
/// search treats as too long a step. Deterministic: the same `f` and `x0` give the same result.
pub fn minimize(
    mut f: impl FnMut(&[f64], &mut [f64]) -> Option<f64>,
    x0: Vec<f64>,
    settings: &LbfgsSettings,
) -> Minimum {
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut evaluations = 1;
    let Some(mut fx) = f(&x, &mut g) else {
        return Minimum {
            x,
            value: f64::INFINITY,
            iterations: 0,
            evaluations,
            stop: StopReason::TooFewSamples,
        };
    };
    // Correction pairs (s, y, 1 / yᵀs), oldest first.
    let mut pairs: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::with_capacity(settings.memory);
    let mut d = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    let mut alpha = vec![0.0; settings.memory];
    for it in 0..settings.max_iterations {
        if max_abs(&g) <= settings.gradient_tolerance {
            return done(x, fx, it, evaluations, StopReason::Converged);
        }
        // Two-loop recursion: d = −H·g.
        d.copy_from_slice(&g);
        for (k, (s, y, rho)) in pairs.iter().enumerate().rev() {
            alpha[k] = rho * dot(s, &d);
            axpy(-alpha[k], y, &mut d);
        }
        let gamma = pairs.last().map_or(1.0, |(s, y, _)| {
            dot(s, y) / dot(y, y).max(f64::MIN_POSITIVE)
        });
        d.iter_mut().for_each(|v| *v *= gamma);
        for (k, (s, y, rho)) in pairs.iter().enumerate() {
            let beta = rho * dot(y, &d);
            axpy(alpha[k] - beta, s, &mut d);
        }
        d.iter_mut().for_each(|v| *v = -*v);
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature pairs gone stale): restart from steepest descent.
            pairs.clear();
            d.iter_mut().zip(&g).for_each(|(v, gi)| *v = -gi);
            slope = dot(&g, &d);
        }
        let mut step = if pairs.is_empty() {
            settings.initial_step / max_abs(&d).max(f64::MIN_POSITIVE)
        } else {
            1.0
        };
        // Backtracking line search on the Armijo condition.
        let mut accepted = None;
        for _ in 0..MAX_BACKTRACKS {
            for ((xn, xi), di) in x_new.iter_mut().zip(&x).zip(&d) {
                *xn = xi + step * di;
            }
            evaluations += 1;
            if let Some(fn_) = f(&x_new, &mut g_new) {
                if fn_ <= fx + ARMIJO * step * slope {
                    accepted = Some(fn_);
                    break;
                }
            }
            step *= 0.5;
        }
        let Some(f_new) = accepted else {
            return done(x, fx, it, evaluations, StopReason::Converged);
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        // Keep the pair only when it carries positive curvature (H stays positive definite).
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if pairs.len() == settings.memory {
                pairs.remove(0);
            }
            pairs.push((s, y, 1.0 / sy));
        }
        let decrease = fx - f_new;
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        fx = f_new;
        if decrease < settings.relative_tolerance * fx.abs().max(1.0) {
            return done(x, fx, it + 1, evaluations, StopReason::Converged);
        }
    }
    done(
        x,
        fx,
        settings.max_iterations,
        evaluations,
        StopReason::MaxIterations,
    )
}

fn done(
    x: Vec<f64>,
    value: f64,
    iterations: usize,
    evaluations: usize,
    stop: StopReason,
) -> Minimum {
    Minimum {
        x,
        value,
        iterations,
        evaluations,
        stop,
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += a * xi);
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rosenbrock function in `n` dimensions and its gradient.
    fn rosenbrock(x: &[f64], g: &mut [f64]) -> Option<f64> {
        let n = x.len();
        let mut f = 0.0;
        g.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = 1.0 - x[i];
            f += 100.0 * a * a + b * b;
            g[i] += -400.0 * a * x[i] - 2.0 * b;
            g[i + 1] += 200.0 * a;
        }
        Some(f)
    }

    #[test]
    fn finds_the_minimum_of_rosenbrock() {
        let settings = LbfgsSettings {
            max_iterations: 500,
            relative_tolerance: 0.0,
            gradient_tolerance: 1e-9,
            initial_step: 0.1,
            ..LbfgsSettings::default()
        };
        let m = minimize(rosenbrock, vec![-1.2, 1.0, -0.5, 0.8, 1.5], &settings);
        assert_eq!(m.stop, StopReason::Converged);
        for v in &m.x {
            assert!((v - 1.0).abs() < 1e-6, "{:?}", m.x);
        }
        assert!(m.value < 1e-12);
        // A deterministic function gives the same path twice.
        let again = minimize(rosenbrock, vec![-1.2, 1.0, -0.5, 0.8, 1.5], &settings);
        assert_eq!(m, again);
    }

    #[test]
    fn a_quadratic_converges_in_few_iterations_and_undefined_regions_are_avoided() {
        // f = Σ kᵢ (xᵢ − 1)², undefined for x₀ > 3: the line search must back off.
        let f = |x: &[f64], g: &mut [f64]| {
            if x[0] > 3.0 {
                return None;
            }
            let mut v = 0.0;
            for (i, (xi, gi)) in x.iter().zip(g.iter_mut()).enumerate() {
                let k = (i + 1) as f64;
                v += k * (xi - 1.0).powi(2);
                *gi = 2.0 * k * (xi - 1.0);
            }
            Some(v)
        };
        let settings = LbfgsSettings {
            initial_step: 10.0,
            relative_tolerance: 0.0,
            gradient_tolerance: 1e-9,
            ..LbfgsSettings::default()
        };
        let m = minimize(f, vec![-5.0, 4.0, 0.0], &settings);
        assert!(m.iterations < 30, "{}", m.iterations);
        for v in &m.x {
            assert!((v - 1.0).abs() < 1e-8, "{:?}", m.x);
        }
    }
}
