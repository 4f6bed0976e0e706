//! Central finite differences against the CPU reference's analytic
//! gradients. The scalar probed is L = Σ dy · f(x), accumulated in f64, so the
//! analytic gradient of L with respect to x is the op's backward at dy.

use rand::Rng as _;

use super::Rng;

/// Compare `analytic` (dL/dx) with central differences of
/// L(x) = Σ dy · f(x) at `samples` random coordinates of x (all of them
/// when x is small). Tolerance: |fd − an| ≤ abs + rel · max(|fd|, |an|).
#[allow(clippy::too_many_arguments)]
pub fn check(
    name: &str,
    f: &dyn Fn(&[f32]) -> Vec<f32>,
    x: &[f32],
    dy: &[f32],
    analytic: &[f32],
    rng: &mut Rng,
    samples: usize,
    eps: f32,
) -> Result<(), String> {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let loss = |x: &[f32]| -> f64 {
        let y = f(x);
        assert_eq!(y.len(), dy.len(), "{name}: output length");
        y.iter().zip(dy).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let idx: Vec<usize> = if x.len() <= samples {
        (0..x.len()).collect()
    } else {
        (0..samples).map(|_| rng.random_range(0..x.len())).collect()
    };
    let (rel, abs) = (2e-2, 2e-3);
    let mut xp = x.to_vec();
    for i in idx {
        let orig = xp[i];
        xp[i] = orig + eps;
        let lp = loss(&xp);
        xp[i] = orig - eps;
        let lm = loss(&xp);
        xp[i] = orig;
        let fd = ((lp - lm) / (2.0 * eps as f64)) as f32;
        let an = analytic[i];
        if (fd - an).abs() > abs + rel * fd.abs().max(an.abs()) {
            return Err(format!(
                "{name}: d/dx[{i}] finite difference {fd} vs analytic {an}"
            ));
        }
    }
    Ok(())
}
