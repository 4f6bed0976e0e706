//! Rank correlations between predicted and measured accuracies: how well
//! the predictor orders cells, which is all the progressive search uses.
//! Both follow scipy (`kendalltau`'s default tau-b, `spearmanr`): ties are
//! handled, and the result is NaN when it is undefined (a side that is
//! constant, fewer than two values, or a NaN among the values).

/// Kendall's tau-b: (concordant − discordant pairs) / √((n₀ − n₁)(n₀ − n₂)),
/// n₀ = n(n−1)/2 pairs, n₁ and n₂ the pairs tied in `a` and in `b` (a pair
/// tied in both counts in both and in neither numerator term). O(n²): the
/// search ranks at most a few thousand cells at a time.
pub fn kendall_tau<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    let (a, b) = match as_f64(a, b) {
        Some(v) => v,
        None => return f64::NAN,
    };
    let n = a.len();
    let (mut score, mut ties_a, mut ties_b) = (0i64, 0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let sa = sign(a[i] - a[j]);
            let sb = sign(b[i] - b[j]);
            score += sa * sb;
            ties_a += u64::from(sa == 0);
            ties_b += u64::from(sb == 0);
        }
    }
    let pairs = (n * (n - 1) / 2) as u64;
    let denom = ((pairs - ties_a) as f64 * (pairs - ties_b) as f64).sqrt();
    if denom == 0.0 {
        return f64::NAN;
    }
    score as f64 / denom
}

/// Spearman's rho: the Pearson correlation of the ranks, tied values
/// taking the average of the ranks they span.
pub fn spearman_rho<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    let (a, b) = match as_f64(a, b) {
        Some(v) => v,
        None => return f64::NAN,
    };
    pearson(&ranks(&a), &ranks(&b))
}

/// 1-based ranks, ties averaged (ranks [1, 2.5, 2.5, 4] for [1, 2, 2, 3]).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut start = 0;
    while start < idx.len() {
        let mut end = start + 1;
        while end < idx.len() && v[idx[end]] == v[idx[start]] {
            end += 1;
        }
        // Positions start..end (0-based) share the mean rank.
        let mean = (start + end + 1) as f64 / 2.0;
        for &i in &idx[start..end] {
            r[i] = mean;
        }
        start = end;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    if va == 0.0 || vb == 0.0 {
        return f64::NAN;
    }
    cov / (va * vb).sqrt()
}

fn sign(d: f64) -> i64 {
    if d > 0.0 {
        1
    } else if d < 0.0 {
        -1
    } else {
        0
    }
}

/// Both sides as f64; None when a correlation is undefined (fewer than two
/// values or a NaN). Panics on sides of different lengths (a caller bug).
fn as_f64<A, B>(a: &[A], b: &[B]) -> Option<(Vec<f64>, Vec<f64>)>
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    assert_eq!(
        a.len(),
        b.len(),
        "rank correlation of {} against {} values",
        a.len(),
        b.len()
    );
    let a: Vec<f64> = a.iter().map(|&x| x.into()).collect();
    let b: Vec<f64> = b.iter().map(|&x| x.into()).collect();
    let ok = a.len() >= 2 && a.iter().chain(&b).all(|x| !x.is_nan());
    ok.then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    #[test]
    fn kendall_without_ties() {
        close(
            kendall_tau(&[1.0f32, 2.0, 3.0, 4.0], &[10.0f32, 20.0, 30.0, 40.0]),
            1.0,
        );
        close(
            kendall_tau(&[1.0f32, 2.0, 3.0, 4.0], &[4.0f64, 3.0, 2.0, 1.0]),
            -1.0,
        );
        // Concordant 7, discordant 3 (pairs (1,2), (1,3), (4,5)): 4/10.
        close(
            kendall_tau(&[1.0f64, 2.0, 3.0, 4.0, 5.0], &[3.0f64, 1.0, 2.0, 5.0, 4.0]),
            0.4,
        );
    }

    #[test]
    fn kendall_tau_b_with_ties() {
        // 5 concordant pairs, one pair tied in a only: 5/√(5·6)
        // (scipy.stats.kendalltau gives 0.9128709291752769).
        close(
            kendall_tau(&[1.0f64, 2.0, 2.0, 3.0], &[1.0f64, 3.0, 2.0, 4.0]),
            5.0 / 30f64.sqrt(),
        );
        // A pair tied in both: 2 concordant over √(2·2).
        close(kendall_tau(&[1.0f64, 1.0, 2.0], &[1.0f64, 1.0, 2.0]), 1.0);
        // Ties on both sides in different pairs: a = [1,1,2,3], b = [1,2,2,3]:
        // pairs (0,1) tied in a, (1,2) tied in b, the other 4 concordant:
        // 4/√(5·5).
        close(
            kendall_tau(&[1.0f64, 1.0, 2.0, 3.0], &[1.0f64, 2.0, 2.0, 3.0]),
            0.8,
        );
    }

    #[test]
    fn spearman_hand_computed() {
        // Σd² = 8 over n = 5: 1 − 6·8/(5·24) = 0.6.
        close(
            spearman_rho(&[1.0f64, 2.0, 3.0, 4.0, 5.0], &[3.0f64, 1.0, 2.0, 5.0, 4.0]),
            0.6,
        );
        // Ranks [1, 2.5, 2.5, 4] and [1, 3, 2, 4]: 4.5/√(4.5·5)
        // (scipy.stats.spearmanr gives 0.9486832980505138).
        close(
            spearman_rho(&[1.0f32, 2.0, 2.0, 3.0], &[1.0f32, 3.0, 2.0, 4.0]),
            4.5 / 22.5f64.sqrt(),
        );
        // Monotone but not linear: rank correlation 1.
        close(
            spearman_rho(&[1.0f64, 2.0, 3.0], &[1.0f64, 10.0, 1000.0]),
            1.0,
        );
    }

    #[test]
    fn average_ranks() {
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 1.0]), [4.0, 1.5, 3.0, 1.5]);
        assert_eq!(ranks(&[5.0, 5.0, 5.0]), [2.0, 2.0, 2.0]);
    }

    #[test]
    fn undefined_is_nan() {
        assert!(kendall_tau(&[1.0f64, 1.0, 1.0], &[1.0f64, 2.0, 3.0]).is_nan());
        assert!(spearman_rho(&[1.0f64, 2.0, 3.0], &[2.0f64, 2.0, 2.0]).is_nan());
        assert!(kendall_tau(&[1.0f64], &[1.0f64]).is_nan());
        assert!(spearman_rho(&[1.0f64, f64::NAN], &[1.0f64, 2.0]).is_nan());
    }

    #[test]
    #[should_panic(expected = "rank correlation of 2 against 3")]
    fn lengths_must_match() {
        kendall_tau(&[1.0f64, 2.0], &[1.0f64, 2.0, 3.0]);
    }
}
