//! The fused linear layer against Burn's `Linear::forward` and f64, and thread counts.

use super::forward;
use crate::kernels::test_support::Rng;
use burn::nn::LinearConfig;
use burn::prelude::*;
use burn::tensor::TensorData;

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

/// Shapes below and above the parallel threshold, odd sizes, and a view that is not contiguous.
#[test]
fn matches_burn_and_f64() {
    let device = Device::flex();
    let mut rng = Rng(17);
    for &(batch, seq, k, n) in &[
        (1, 1, 3, 5),
        (1, 25, 384, 384),
        (2, 37, 64, 1536),
        (3, 7, 33, 17),
    ] {
        let linear = LinearConfig::new(k, n).init(&device);
        let bias = linear.bias.as_ref().unwrap().val();
        let linear = burn::nn::Linear {
            bias: Some(burn::module::Param::from_tensor(bias.clone() + 0.25)),
            ..linear
        };
        let xs = rng.normals(batch * seq * k, 1.0);
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [batch, seq, k]), &device);
        let got = forward(&linear, x.clone());
        assert_eq!(got.dims(), [batch, seq, n]);
        let got = values(got);
        let burn = values(linear.forward(x));
        let w = values(linear.weight.val());
        let b = values(linear.bias.as_ref().unwrap().val());
        for r in 0..batch * seq {
            for c in 0..n {
                let exact: f64 = f64::from(b[c])
                    + (0..k)
                        .map(|i| f64::from(xs[r * k + i]) * f64::from(w[i * n + c]))
                        .sum::<f64>();
                let scale: f64 = (0..k)
                    .map(|i| (f64::from(xs[r * k + i]) * f64::from(w[i * n + c])).abs())
                    .sum::<f64>()
                    + f64::from(b[c].abs());
                let (g, e) = (got[r * n + c], burn[r * n + c]);
                let bound = 4.0 * f64::from(f32::EPSILON) * scale.max(1e-30) * (k as f64).sqrt();
                assert!(
                    g.is_finite() && (f64::from(g) - exact).abs() <= bound,
                    "{batch}x{seq}x{k}x{n} [{r}][{c}]: {g}, f64 {exact}"
                );
                assert!(
                    (g - e).abs() <= 2e-6 * (1.0 + e.abs()),
                    "{batch}x{seq}x{k}x{n} [{r}][{c}]: {g}, Burn {e}"
                );
            }
        }
    }
    // A transposed input (not contiguous) gives the contiguous input's result.
    let linear = LinearConfig::new(8, 4).init(&device);
    let xs = rng.normals(5 * 8, 1.0);
    let x = Tensor::<2>::from_data(TensorData::new(xs, [5, 8]), &device);
    let transposed = x.clone().transpose().into_data();
    let xt = Tensor::<2>::from_data(transposed, &device).transpose();
    assert_eq!(values(forward(&linear, xt)), values(forward(&linear, x)));
}

#[test]
fn thread_counts_change_nothing() {
    let device = Device::flex();
    let mut rng = Rng(23);
    let (rows, k, n) = (300, 384, 384);
    let linear = LinearConfig::new(k, n).init(&device);
    let x = Tensor::<2>::from_data(
        TensorData::new(rng.normals(rows * k, 1.0), [rows, k]),
        &device,
    );
    let reference = values(forward(&linear, x.clone()));
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let got = pool.install(|| values(forward(&linear, x.clone())));
        assert_eq!(got, reference, "{threads} threads");
    }
}

#[test]
fn nan_in_a_row_stays_in_its_row() {
    let device = Device::flex();
    let linear = LinearConfig::new(4, 3).init(&device);
    let mut xs = vec![0.5f32; 3 * 4];
    xs[4 + 2] = f32::NAN;
    let x = Tensor::<2>::from_data(TensorData::new(xs, [3, 4]), &device);
    let out = values(forward(&linear, x));
    assert!(out[..3].iter().all(|v| v.is_finite()));
    assert!(out[3..6].iter().all(|v| v.is_nan()));
    assert!(out[6..].iter().all(|v| v.is_finite()));
}
