use super::kernel;
use super::*;
use crate::kernels::Isa;
use crate::kernels::math;
use crate::kernels::test_support::{Rng, gelu_f64};
use burn::tensor::TensorData;
use core::mem::MaybeUninit;

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec::<f32>().unwrap()
}

fn gelu_grad_f64(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / core::f64::consts::SQRT_2))
        + z * (-0.5 * z * z).exp() / (2.0 * core::f64::consts::PI).sqrt()
}

/// Largest errors found by [`assert_close`].
#[derive(Debug, Default)]
struct Stats {
    max_abs: f64,
    max_rel: f64,
    identical: usize,
    n: usize,
}

/// Panics unless `|actual - expected| <= tol(expected)` everywhere. Written as `!(d <= tol)`,
/// so a NaN on either side, or a NaN tolerance, fails.
fn assert_close(actual: &[f32], expected: &[f64], tol: impl Fn(f64) -> f64, what: &str) -> Stats {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let mut stats = Stats {
        n: actual.len(),
        ..Default::default()
    };
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let d = (a as f64 - e).abs();
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN must fail
        if !(d <= tol(e)) {
            panic!(
                "{what}: element {i}: {a:e} vs {e:e} (diff {d:e}, tolerance {:e})",
                tol(e)
            );
        }
        if a as f64 == e {
            stats.identical += 1;
        }
        stats.max_abs = stats.max_abs.max(d);
        if e.abs() > 1e-3 {
            stats.max_rel = stats.max_rel.max(d / e.abs());
        }
    }
    stats
}

fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

#[test]
fn nan_fails_every_comparison() {
    for (actual, expected) in [(f32::NAN, 1.0), (1.0, f64::NAN), (f32::NAN, f64::NAN)] {
        let result = std::panic::catch_unwind(|| {
            assert_close(&[actual], &[expected], |_| 1.0, "nan");
        });
        assert!(result.is_err(), "{actual} vs {expected} must fail");
    }
    let result = std::panic::catch_unwind(|| {
        assert_close(&[1.0], &[1.0], |_| f64::NAN, "nan tolerance");
    });
    assert!(result.is_err(), "a NaN tolerance must fail");
    // The same check passes on equal finite values.
    assert_close(&[1.0], &[1.0], |_| 0.0, "equal");
}

/// Every variant of the kernel against f64 on a fine grid over [-10, 10].
#[test]
fn forward_matches_f64_reference() {
    let width = 1000;
    let x: Vec<f32> = (0..2_000_000)
        .map(|i| -10.0 + 20.0 * i as f32 / 1_999_999.0)
        .collect();
    let expected: Vec<f64> = x.iter().map(|&x| gelu_f64(x as f64)).collect();
    let bias = vec![0.0f32; width];
    for isa in Isa::available() {
        let mut out = vec![MaybeUninit::uninit(); x.len()];
        kernel::forward_with(isa, &x, &bias, &mut out);
        let out: Vec<f32> = out
            .into_iter()
            .map(|v| unsafe { v.assume_init() })
            .collect();
        let stats = assert_close(&out, &expected, |_| 1e-6, "gelu vs f64");
        // Relative accuracy where gelu(x) ~ x.
        let mut max_rel = 0.0f64;
        for (&y, &e) in out.iter().zip(&expected) {
            if e > 1.0 {
                let rel = (y as f64 - e).abs() / e;
                assert!(rel <= 1e-6, "{isa:?}: relative error {rel:e} at {e}");
                max_rel = max_rel.max(rel);
            }
        }
        println!(
            "{isa:?}: max abs {:.3e}, max rel (gelu > 1) {max_rel:.3e}",
            stats.max_abs
        );
    }
    // For scale: Burn's own gelu (libm erff) on the same grid.
    let device = Device::flex();
    let burn = values(activation::gelu(tensor(x.clone(), [x.len()], &device)));
    let stats = assert_close(&burn, &expected, |_| 1e-6, "burn gelu vs f64");
    println!("burn: max abs {:.3e}", stats.max_abs);
}

#[test]
fn forward_extremes() {
    let device = Device::flex();
    let x = vec![
        10.0,
        30.0,
        1e3,
        1e6,
        3e38,
        f32::MAX,
        -10.0,
        -30.0,
        -1e6,
        f32::MIN,
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        1e-30,
        -1e-30,
        f32::INFINITY,
    ];
    let n = x.len();
    let ours = values(bias_gelu(
        tensor(x.clone(), [1, 1, n], &device),
        tensor(vec![0.0; n], [n], &device),
    ));
    for (&x, &y) in x.iter().zip(&ours) {
        if x.is_infinite() {
            assert_eq!(y, x);
        } else if x > 0.0 {
            let e = gelu_f64(x as f64);
            assert!(
                ((y as f64 - e) / e).abs() <= 1e-6,
                "gelu({x:e}) = {y:e}, expected {e:e}"
            );
        } else {
            assert!(
                (y as f64 - gelu_f64(x as f64)).abs() <= 1e-6,
                "gelu({x:e}) = {y:e}"
            );
        }
    }
    // Non-finite inputs behave as in Burn's gelu: NaN stays NaN, -inf gives NaN (-inf * 0).
    let special = vec![f32::NAN, f32::NEG_INFINITY, 1.0];
    let ours = values(bias_gelu(
        tensor(special.clone(), [1, 1, 3], &device),
        tensor(vec![0.0; 3], [3], &device),
    ));
    let burn = values(activation::gelu(tensor(special, [3], &device)));
    assert!(ours[0].is_nan() && burn[0].is_nan());
    assert!(ours[1].is_nan() && burn[1].is_nan());
    assert_eq!(ours[2], burn[2]);
}

/// Against Burn's flex `gelu(x + bias)` on activations shaped like BERT's.
#[test]
fn forward_matches_burn_gelu() {
    let device = Device::flex();
    let mut rng = Rng(1);
    let shape = [16, 64, 1536];
    let x = rng.normals(shape.iter().product(), 1.0);
    let bias = rng.normals(shape[2], 0.1);
    let ours = values(bias_gelu(
        tensor(x.clone(), shape, &device),
        tensor(bias.clone(), [shape[2]], &device),
    ));
    let burn = values(activation::gelu(
        tensor(x, shape, &device) + tensor(bias, [shape[2]], &device).unsqueeze::<3>(),
    ));
    // 2e-7 absolute, plus one ulp relative (2^-23 |y|) for |y| >= 2, where one ulp is 2.4e-7
    // and Burn's `erff` is not correctly rounded either.
    let stats = assert_close(
        &ours,
        &widen(&burn),
        |e| {
            2e-7 + if e.abs() >= 2.0 {
                e.abs() * 2f64.powi(-23)
            } else {
                0.0
            }
        },
        "vs burn",
    );
    let over = ours
        .iter()
        .zip(&burn)
        .filter(|(a, b)| (**a - **b).abs() > 2e-7)
        .count();
    println!(
        "vs burn gelu: {} of {} identical, max abs {:.3e}, {over} above 2e-7 (all where |y| >= 2)",
        stats.identical, stats.n, stats.max_abs
    );
    assert!(stats.identical as f64 >= 0.9 * stats.n as f64);
}

struct Grads {
    y: Vec<f32>,
    dx: Vec<f32>,
    dbias: Vec<f32>,
}

/// Forward and backward of `op` on `device` (an autodiff device), with `loss = sum(y * g)`.
fn run_grads(
    device: &Device,
    x: &[f32],
    bias: &[f32],
    g: &[f32],
    shape: [usize; 3],
    op: impl Fn(Tensor<3>, Tensor<1>) -> Tensor<3>,
) -> Grads {
    let xt = tensor(x.to_vec(), shape, device).require_grad();
    let bt = tensor(bias.to_vec(), [shape[2]], device).require_grad();
    let y = op(xt.clone(), bt.clone());
    let loss = (y.clone() * tensor(g.to_vec(), shape, device)).sum();
    let grads = loss.backward();
    Grads {
        y: values(y),
        dx: values(xt.grad(&grads).unwrap()),
        dbias: values(bt.grad(&grads).unwrap()),
    }
}

fn burn_bias_gelu(x: Tensor<3>, bias: Tensor<1>) -> Tensor<3> {
    activation::gelu(x + bias.unsqueeze::<3>())
}

#[test]
fn backward_matches_burn_autodiff() {
    let mut rng = Rng(2);
    let shape = [8, 64, 1536];
    let n = shape.iter().product();
    let x = rng.normals(n, 1.0);
    let bias = rng.normals(shape[2], 0.1);
    let g = rng.normals(n, 1.0);
    // f64 reference for scale.
    let z: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &x)| (x + bias[i % shape[2]]) as f64)
        .collect();
    let dx_ref: Vec<f64> = z
        .iter()
        .zip(&g)
        .map(|(&z, &g)| g as f64 * gelu_grad_f64(z))
        .collect();
    let mut dbias_ref = vec![0.0f64; shape[2]];
    for (i, &d) in dx_ref.iter().enumerate() {
        dbias_ref[i % shape[2]] += d;
    }

    for device in [
        Device::flex().autodiff(),
        Device::flex().autodiff().gradient_checkpointing(),
    ] {
        let ours = run_grads(&device, &x, &bias, &g, shape, bias_gelu);
        let burn = run_grads(&device, &x, &bias, &g, shape, burn_bias_gelu);
        assert_close(
            &ours.y,
            &widen(&burn.y),
            |e| 2e-7 + e.abs() * 2f64.powi(-23),
            "y",
        );
        // 1e-5 relative; the absolute floor covers the zero of gelu' (z = -0.75) and its
        // tail, where both sides cancel in Phi(z) + z phi(z).
        let dx = assert_close(
            &ours.dx,
            &widen(&burn.dx),
            |e| 1e-5 * e.abs() + 1e-6,
            "dx vs burn",
        );
        let db = assert_close(
            &ours.dbias,
            &widen(&burn.dbias),
            |e| 1e-5 * e.abs() + 1e-5,
            "dbias vs burn",
        );
        let dx64 = assert_close(&ours.dx, &dx_ref, |e| 1e-5 * e.abs() + 1e-6, "dx vs f64");
        let db64 = assert_close(
            &ours.dbias,
            &dbias_ref,
            |e| 1e-5 * e.abs() + 1e-5,
            "dbias vs f64",
        );
        let burn_dx64 = assert_close(&burn.dx, &dx_ref, |_| 1.0, "burn dx vs f64");
        let burn_db64 = assert_close(&burn.dbias, &dbias_ref, |_| 1.0, "burn dbias vs f64");
        println!(
            "{:?}: dx vs burn abs {:.2e} rel {:.2e}; dbias vs burn abs {:.2e} rel {:.2e}; \
             vs f64: ours dx {:.2e}/{:.2e} dbias {:.2e}/{:.2e}, burn dx {:.2e}/{:.2e} dbias {:.2e}/{:.2e}",
            device.gradient_checkpointing_strategy(),
            dx.max_abs,
            dx.max_rel,
            db.max_abs,
            db.max_rel,
            dx64.max_abs,
            dx64.max_rel,
            db64.max_abs,
            db64.max_rel,
            burn_dx64.max_abs,
            burn_dx64.max_rel,
            burn_db64.max_abs,
            burn_db64.max_rel,
        );
    }
}

#[test]
fn only_one_input_tracked() {
    let device = Device::flex().autodiff();
    let mut rng = Rng(3);
    let shape = [2, 8, 64];
    let x = rng.normals(shape.iter().product(), 1.0);
    let bias = rng.normals(shape[2], 0.1);
    // Only the bias tracked (a frozen input), then only x.
    let xt = tensor(x.clone(), shape, &device);
    let bt = tensor(bias.clone(), [shape[2]], &device).require_grad();
    let grads = bias_gelu(xt.clone(), bt.clone()).backward();
    assert!(xt.grad(&grads).is_none());
    let db = values(bt.grad(&grads).unwrap());
    let bt2 = tensor(bias.clone(), [shape[2]], &device).require_grad();
    let burn = burn_bias_gelu(tensor(x.clone(), shape, &device), bt2.clone()).backward();
    assert_close(
        &db,
        &widen(&values(bt2.grad(&burn).unwrap())),
        |e| 1e-5 * e.abs() + 1e-5,
        "dbias",
    );

    let xt = tensor(x.clone(), shape, &device).require_grad();
    let grads = bias_gelu(xt.clone(), tensor(bias.clone(), [shape[2]], &device)).backward();
    let xt2 = tensor(x, shape, &device).require_grad();
    let burn = burn_bias_gelu(xt2.clone(), tensor(bias, [shape[2]], &device)).backward();
    assert_close(
        &values(xt.grad(&grads).unwrap()),
        &widen(&values(xt2.grad(&burn).unwrap())),
        |e| 1e-5 * e.abs() + 1e-6,
        "dx",
    );

    // Nothing tracked on an autodiff device: the untracked path.
    let y = bias_gelu(
        tensor(vec![1.0; 64], [1, 1, 64], &device),
        tensor(vec![0.0; 64], [64], &device),
    );
    assert_eq!(
        values(y)[0],
        values(activation::gelu(tensor(vec![1.0], [1], &Device::flex())))[0]
    );
}

#[test]
fn non_contiguous_inputs() {
    let mut rng = Rng(4);
    let (b, s, w) = (3, 40, 96);
    let x_bws = rng.normals(b * w * s, 1.0);
    let big_bias = rng.normals(3 * w, 0.1);
    let g = rng.normals(b * s * w, 1.0);
    let device = Device::flex();

    // x as [b, w, s] transposed to [b, s, w] (strided), bias a view at an offset.
    let strided = || tensor(x_bws.clone(), [b, w, s], &device).swap_dims(1, 2);
    let bias_view = || tensor(big_bias.clone(), [3 * w], &device).narrow(0, w, w);
    let dense: Vec<f32> = values(strided());
    let bias: Vec<f32> = values(bias_view());

    let from_strided = values(bias_gelu(strided(), bias_view()));
    let from_dense = values(bias_gelu(
        tensor(dense.clone(), [b, s, w], &device),
        tensor(bias.clone(), [w], &device),
    ));
    assert_eq!(
        from_strided.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        from_dense.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let burn = values(burn_bias_gelu(strided(), bias_view()));
    assert_close(
        &from_strided,
        &widen(&burn),
        |e| 2e-7 + e.abs() * 2f64.powi(-23),
        "strided vs burn",
    );

    // Backward through the transpose: the gradient reaches the [b, w, s] leaf.
    let ad = Device::flex().autodiff();
    let grads_of = |op: fn(Tensor<3>, Tensor<1>) -> Tensor<3>| {
        let leaf = tensor(x_bws.clone(), [b, w, s], &ad).require_grad();
        let bias_leaf = tensor(big_bias.clone(), [3 * w], &ad).require_grad();
        let y = op(
            leaf.clone().swap_dims(1, 2),
            bias_leaf.clone().narrow(0, w, w),
        );
        let grads = (y * tensor(g.clone(), [b, s, w], &ad)).sum().backward();
        (
            values(leaf.grad(&grads).unwrap()),
            values(bias_leaf.grad(&grads).unwrap()),
        )
    };
    let (dx, db) = grads_of(bias_gelu);
    let (dx_burn, db_burn) = grads_of(burn_bias_gelu);
    assert_close(
        &dx,
        &widen(&dx_burn),
        |e| 1e-5 * e.abs() + 1e-6,
        "strided dx",
    );
    assert_close(
        &db,
        &widen(&db_burn),
        |e| 1e-5 * e.abs() + 1e-5,
        "strided dbias",
    );
}

#[test]
fn shared_input_is_not_overwritten() {
    let device = Device::flex();
    let mut rng = Rng(5);
    let x = rng.normals(4 * 16 * 32, 1.0);
    let bias = rng.normals(32, 0.1);
    let xt = tensor(x.clone(), [4, 16, 32], &device);
    let bt = tensor(bias.clone(), [32], &device);
    // `xt` stays alive, so the kernel must write a new buffer.
    let shared = values(bias_gelu(xt.clone(), bt.clone()));
    assert_eq!(values(xt), x, "input changed");
    // A unique input is overwritten in place; same values.
    let unique = values(bias_gelu(tensor(x, [4, 16, 32], &device), bt));
    assert_eq!(shared, unique);
}

/// One thread and two threads give the same bits, through the kernels and through Burn.
#[test]
fn thread_count_does_not_change_results() {
    let mut rng = Rng(6);
    let shape = [4, 64, 1536];
    let n: usize = shape.iter().product();
    let x = rng.normals(n, 1.0);
    let bias = rng.normals(shape[2], 0.1);
    let g = rng.normals(n, 1.0);

    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut out = Vec::new();
            for isa in Isa::available() {
                let mut y = vec![MaybeUninit::uninit(); n];
                kernel::forward_with(isa, &x, &bias, &mut y);
                out.extend(y.into_iter().map(|v| unsafe { v.assume_init() }));
                let mut dx = g.clone();
                let db = kernel::backward_inplace_with(isa, &x, &bias, &mut dx);
                out.extend(dx);
                out.extend(db);
            }
            let device = Device::flex().autodiff();
            let xt = tensor(x.clone(), shape, &device).require_grad();
            let bt = tensor(bias.clone(), [shape[2]], &device).require_grad();
            let y = bias_gelu(xt.clone(), bt.clone());
            let grads = y.clone().backward();
            out.extend(values(y));
            out.extend(values(xt.grad(&grads).unwrap()));
            out.extend(values(bt.grad(&grads).unwrap()));
            out.into_iter().map(f32::to_bits).collect::<Vec<u32>>()
        })
    };
    assert!(run(1) == run(2), "1-thread and 2-thread results differ");
}

/// Every compiled variant meets the accuracy bounds, and the FMA variants agree bit for bit.
#[test]
fn kernel_variants() {
    let mut rng = Rng(7);
    let width = 768;
    let n = 256 * width;
    let x = rng.normals(n, 2.0);
    let bias = rng.normals(width, 0.1);
    let g = rng.normals(n, 1.0);
    let mut results = vec![];
    for isa in Isa::available() {
        let mut y = vec![MaybeUninit::uninit(); n];
        kernel::forward_with(isa, &x, &bias, &mut y);
        let y: Vec<f32> = y.into_iter().map(|v| unsafe { v.assume_init() }).collect();
        let mut y2 = x.clone();
        kernel::forward_inplace_with(isa, &mut y2, &bias);
        assert_eq!(y, y2, "{isa:?}: in place differs");
        let mut dx = g.clone();
        let db = kernel::backward_inplace_with(isa, &x, &bias, &mut dx);
        let z: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &x)| (x + bias[i % width]) as f64)
            .collect();
        assert_close(
            &y,
            &z.iter().map(|&z| gelu_f64(z)).collect::<Vec<_>>(),
            |_| 1e-6,
            "y",
        );
        let dx_ref: Vec<f64> = z
            .iter()
            .zip(&g)
            .map(|(&z, &g)| g as f64 * gelu_grad_f64(z))
            .collect();
        assert_close(&dx, &dx_ref, |e| 1e-5 * e.abs() + 1e-6, "dx");
        let mut db_ref = vec![0.0; width];
        for (i, &d) in dx.iter().enumerate() {
            db_ref[i % width] += d as f64;
        }
        assert_close(&db, &db_ref, |e| 1e-6 * e.abs() + 1e-5, "dbias");
        results.push((isa, y, dx, db));
    }
    let fma: Vec<_> = results
        .iter()
        .filter(|r| r.0 != Isa::Baseline || cfg!(target_arch = "aarch64"))
        .collect();
    for pair in fma.windows(2) {
        assert!(
            pair[0].1 == pair[1].1 && pair[0].2 == pair[1].2,
            "{:?} vs {:?}",
            pair[0].0,
            pair[1].0
        );
    }
}

#[test]
fn erf_ulp_error() {
    // Every 97th f32 in [0, 5]; the true value from f64 libm.
    for isa_fma in [true, false] {
        let mut max_ulp = 0.0f64;
        let mut bits = 0u32;
        while f32::from_bits(bits) < 5.0 {
            let z = f32::from_bits(bits);
            let e = if isa_fma {
                math::erf::<true>(z)
            } else {
                math::erf::<false>(z)
            };
            let t = libm::erf(z as f64);
            let r = t as f32;
            let ulp = (f32::from_bits(r.to_bits() + 1) - r) as f64;
            let error = (e as f64 - t).abs() / ulp;
            // A NaN or infinite result fails here (f64::max would drop a NaN).
            assert!(error.is_finite(), "erf({z}) = {e}, expected {t}");
            if error > max_ulp {
                max_ulp = error;
            }
            assert_eq!(math::erf::<true>(-z), -math::erf::<true>(z));
            bits += 97;
        }
        println!("erf (fma = {isa_fma}): max {max_ulp:.3} ulp");
        assert!(max_ulp < if isa_fma { 1.0 } else { 2.0 });
    }
    assert!(math::erf::<true>(f32::NAN).is_nan());
    assert_eq!(math::erf::<true>(f32::INFINITY), 1.0);
    assert_eq!(math::erf::<true>(f32::NEG_INFINITY), -1.0);
}

#[test]
fn extension_selection() {
    assert!(uses_extension(&Device::flex()));
    assert!(uses_extension(&Device::flex().autodiff()));
    assert!(uses_extension(
        &Device::flex().autodiff().gradient_checkpointing()
    ));
}
