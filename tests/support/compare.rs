//! The one tolerance helper of every test crate (included with `#[path]` by
//! `crates/*/tests`): NaN and infinity never pass a comparison.

/// The largest absolute difference between two equally long slices; NaN as soon as either
/// holds a NaN or an infinity, so that no tolerance accepts it. (Folding with the float
/// maximum instead would drop NaN: the larger of 0 and NaN is 0 for Rust's float maximum.)
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    max_abs_diff_f64(&widen(a), &widen(b)) as f32
}

/// [`max_abs_diff`] of f64 slices.
pub fn max_abs_diff_f64(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f64::NAN;
        }
        let difference = (x - y).abs();
        if difference > worst {
            worst = difference;
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::{max_abs_diff, max_abs_diff_f64};

    #[test]
    fn max_abs_diff_is_nan_when_either_input_holds_nan() {
        assert!(max_abs_diff(&[0.0, f32::NAN, 1.0], &[0.0, 0.0, 1.0]).is_nan());
        assert!(max_abs_diff(&[0.0, 0.0, 1.0], &[0.0, 0.0, f32::NAN]).is_nan());
        assert!(max_abs_diff(&[f32::NAN], &[f32::NAN]).is_nan());
        assert!(max_abs_diff(&[5.0, f32::NAN], &[0.0, 0.0]).is_nan());
    }

    #[test]
    fn max_abs_diff_is_not_finite_when_either_input_is_infinite() {
        assert!(!max_abs_diff(&[f32::INFINITY, 0.0], &[1.0, 0.0]).is_finite());
        assert!(!max_abs_diff(&[0.0, 0.0], &[0.0, f32::NEG_INFINITY]).is_finite());
        assert!(!max_abs_diff(&[f32::INFINITY], &[f32::INFINITY]).is_finite());
    }

    #[test]
    fn max_abs_diff_measures_finite_differences() {
        assert_eq!(max_abs_diff(&[1.0, -2.0, 3.0], &[1.5, -2.0, 3.0]), 0.5);
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert_eq!(max_abs_diff(&[], &[]), 0.0);
        assert_eq!(max_abs_diff_f64(&[1.0, 1e-9], &[1.0, 0.0]), 1e-9);
        assert!(max_abs_diff_f64(&[0.0, f64::NAN], &[0.0, 0.0]).is_nan());
        assert!(max_abs_diff_f64(&[f64::INFINITY], &[f64::INFINITY]).is_nan());
    }
}
