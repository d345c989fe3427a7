//! The int8 GEMM against an exact integer reference, quantisation's error bounds, the epilogues
//! against f64, every variant of our kernels forced, and thread-count independence.

use super::gemm::{ROWS_PER_CHUNK, with_executor};
use super::quantize::{QuantizeError, may_saturate, quantize_rows, quantize_weights, weight_q_max};
use super::{Epilogue, Int8Linear};
use crate::kernels::Isa;
use crate::kernels::test_support::{Rng, gelu_f64};
use rten_gemm::{GemmInputA, GemmInputB, GemmOptions};
use rten_tensor::NdTensorView;

/// `sum_k a[r][k] * b[k][c]` in i64.
fn reference_gemm(a: &[u8], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i64> {
    let mut out = vec![0i64; m * n];
    for r in 0..m {
        for kk in 0..k {
            let av = i64::from(a[r * k + kk]);
            for c in 0..n {
                out[r * n + c] += av * i64::from(b[kk * n + c]);
            }
        }
    }
    out
}

/// The raw product as the layers run it (no zero points: see `epilogue_generic`).
fn gemm(a: &[u8], b: &[i8], m: usize, k: usize, n: usize, packed: bool) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    with_executor(|exec| {
        let b_view = NdTensorView::from_data([k, n], b);
        let packed_b = exec.prepack_b(b_view);
        let input_b = if packed {
            GemmInputB::Packed(&packed_b)
        } else {
            GemmInputB::Unpacked(b_view)
        };
        exec.gemm(
            &mut out,
            GemmInputA::Unpacked(NdTensorView::from_data([m, k], a)),
            input_b,
            GemmOptions::default(),
        )
        .unwrap();
    });
    out
}

#[test]
fn gemm_is_exact() {
    let q_max = weight_q_max(may_saturate());
    let mut rng = Rng(0x1234_5678);
    let shapes = [
        (1, 1, 1),
        (1, 384, 1152),
        (3, 7, 5),
        (17, 33, 65),
        (32, 384, 384),
        (31, 1536, 384),
        (64, 96, 17),
        (5, 1, 9),
    ];
    for (case, &(m, k, n)) in shapes.iter().enumerate() {
        for fill in 0..4 {
            // 0: random; 1: the extremes (255 against q_max and -q_max, the worst case for
            // 16-bit pair sums); 2: zeros; 3: random with rows of zeros.
            let a: Vec<u8> = (0..m * k)
                .map(|i| match fill {
                    1 => 255,
                    2 => 0,
                    3 if (i / k) % 2 == 0 => 0,
                    _ => rng.below(256) as u8,
                })
                .collect();
            let b: Vec<i8> = (0..k * n)
                .map(|i| match fill {
                    1 => {
                        if (i / n) % 3 == 2 {
                            0
                        } else if i % 2 == 0 {
                            q_max
                        } else {
                            -q_max
                        }
                    }
                    2 => 0,
                    _ => (rng.below(2 * q_max as u64 + 1) as i64 - i64::from(q_max)) as i8,
                })
                .collect();
            let want = reference_gemm(&a, &b, m, k, n);
            for packed in [true, false] {
                let got = gemm(&a, &b, m, k, n, packed);
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        i64::from(g),
                        w,
                        "case {case} {m}x{k}x{n} fill {fill} packed {packed}: element {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn rows_quantise_within_half_a_step() {
    let mut rng = Rng(42);
    let k = 37;
    let rows = 9;
    let mut x: Vec<f32> = (0..rows * k).map(|_| rng.normal() * 3.0).collect();
    // Row 1 all positive, row 2 all negative, row 3 zeros, row 4 one value, row 5 huge.
    for v in &mut x[k..2 * k] {
        *v = v.abs() + 0.5;
    }
    for v in &mut x[2 * k..3 * k] {
        *v = -v.abs() - 0.5;
    }
    x[3 * k..4 * k].fill(0.0);
    x[4 * k..5 * k].fill(0.0);
    x[4 * k + 3] = -7.0;
    for v in &mut x[5 * k..6 * k] {
        *v *= 1e30;
    }
    for isa in Isa::available() {
        let mut q = vec![0u8; rows * k];
        let mut zero = vec![0u8; rows];
        let mut scale = vec![0.0f32; rows];
        let mut bad = vec![false; rows];
        quantize_rows(isa, &x, k, &mut q, &mut zero, &mut scale, &mut bad);
        assert!(bad.iter().all(|b| !b), "{isa:?}");
        for r in 0..rows {
            let row = &x[r * k..(r + 1) * k];
            assert!(scale[r].is_finite() && scale[r] > 0.0, "{isa:?} row {r}");
            for (i, &v) in row.iter().enumerate() {
                let back = (f32::from(q[r * k + i]) - f32::from(zero[r])) * scale[r];
                assert!(
                    (back - v).abs() <= 0.5001 * scale[r],
                    "{isa:?} row {r} col {i}: {v} came back as {back} (scale {})",
                    scale[r]
                );
            }
            // Zero is exact.
            if row.contains(&0.0) {
                let i = row.iter().position(|&v| v == 0.0).unwrap();
                assert_eq!(q[r * k + i], zero[r], "{isa:?} row {r}: zero is not exact");
            }
        }
    }
}

#[test]
fn non_finite_rows_are_flagged_and_come_out_nan() {
    let k = 16;
    let n = 8;
    let weight: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    let layer = Int8Linear::quantize(&weight, None, k, n).unwrap();
    for (poison, name) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let mut x: Vec<f32> = (0..3 * k).map(|i| (i % 5) as f32 - 2.0).collect();
        x[k + 4] = poison;
        for isa in Isa::available() {
            for epilogue in [Epilogue::Bias, Epilogue::BiasGelu] {
                let out = layer.forward_with(isa, &x, 3, epilogue);
                assert!(out[..n].iter().all(|v| v.is_finite()), "{name} {isa:?}");
                assert!(out[n..2 * n].iter().all(|v| v.is_nan()), "{name} {isa:?}");
                assert!(out[2 * n..].iter().all(|v| v.is_finite()), "{name} {isa:?}");
            }
        }
    }
}

#[test]
fn non_finite_weights_are_an_error() {
    let mut weight = vec![0.5f32; 6];
    weight[4] = f32::NAN;
    assert_eq!(
        Int8Linear::quantize(&weight, None, 2, 3).unwrap_err(),
        QuantizeError::NonFinite {
            tensor: "weight",
            row: 1,
            column: 1
        }
    );
    let bias = [0.0, f32::INFINITY, 0.0];
    assert!(matches!(
        Int8Linear::quantize(&[0.5; 6], Some(&bias), 2, 3),
        Err(QuantizeError::NonFinite {
            tensor: "bias",
            column: 1,
            ..
        })
    ));
    assert!(matches!(
        Int8Linear::quantize(&[0.5; 6], None, 4, 3),
        Err(QuantizeError::Shape(_))
    ));
}

#[test]
fn weights_quantise_per_column() {
    // Column 0 small, column 1 large, column 2 zeros: each gets its own scale.
    let w = [0.01, 100.0, 0.0, -0.02, 50.0, 0.0];
    let (q, scales) = quantize_weights(&w, 3, 127).unwrap();
    assert_eq!(q, vec![64, 127, 0, -127, 64, 0]);
    assert_eq!(scales, vec![0.02 / 127.0, 100.0 / 127.0, 0.0]);
    let (q, _) = quantize_weights(&w, 3, 63).unwrap();
    assert_eq!(q, vec![32, 63, 0, -63, 32, 0]);
}

/// The layer against `x W + b` in f64: the error is what quantising `x` and `W` costs, bounded
/// per element by `sum_k |x_k| |dW_k| + |dx_k| |W_k| + |dx_k| |dW_k|`, with `|dx| <= s_x / 2`
/// and `|dW| <= s_w / 2`.
#[test]
fn forward_matches_f64_within_the_quantisation_bound() {
    let mut rng = Rng(7);
    for &(m, k, n) in &[
        (1usize, 384usize, 1152usize),
        (ROWS_PER_CHUNK + 3, 64, 96),
        (70, 33, 20),
    ] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.normal() * 0.05).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.normal() * 0.1).collect();
        let layer = Int8Linear::quantize(&w, Some(&b), k, n).unwrap();
        let q_max = f64::from(weight_q_max(may_saturate()));
        let col_max: Vec<f64> = (0..n)
            .map(|c| {
                (0..k)
                    .map(|r| f64::from(w[r * n + c].abs()))
                    .fold(0.0, f64::max)
            })
            .collect();
        for isa in Isa::available() {
            for epilogue in [Epilogue::Bias, Epilogue::BiasGelu] {
                let out = layer.forward_with(isa, &x, m, epilogue);
                for r in 0..m {
                    let row = &x[r * k..(r + 1) * k];
                    let lo = row.iter().copied().fold(0.0f32, f32::min);
                    let hi = row.iter().copied().fold(0.0f32, f32::max);
                    let dx = f64::from(hi - lo) / 255.0 / 2.0;
                    for c in 0..n {
                        let dw = col_max[c] / q_max / 2.0;
                        let mut exact = f64::from(b[c]);
                        let mut bound = 0.0;
                        for kk in 0..k {
                            let (xv, wv) = (f64::from(row[kk]), f64::from(w[kk * n + c]));
                            exact += xv * wv;
                            bound += xv.abs() * dw + dx * wv.abs() + dx * dw;
                        }
                        // GELU's slope is at most 1.13.
                        let (exact, bound) = match epilogue {
                            Epilogue::Bias => (exact, bound),
                            Epilogue::BiasGelu => (gelu_f64(exact), 1.13 * bound),
                        };
                        let got = f64::from(out[r * n + c]);
                        assert!(
                            got.is_finite() && (got - exact).abs() <= bound + 1e-5,
                            "{m}x{k}x{n} {isa:?} {epilogue:?}: [{r}][{c}] = {got}, f64 {exact}, \
                             bound {bound}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn variants_and_thread_counts_agree() {
    let mut rng = Rng(99);
    let (m, k, n) = (3 * ROWS_PER_CHUNK + 5, 48, 40);
    let x: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
    let w: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
    let layer = Int8Linear::quantize(&w, None, k, n).unwrap();
    let reference = layer.forward_with(Isa::Baseline, &x, m, Epilogue::BiasGelu);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for isa in Isa::available() {
            let got = pool.install(|| layer.forward_with(isa, &x, m, Epilogue::BiasGelu));
            if isa == Isa::Baseline {
                assert_eq!(got, reference, "{threads} threads");
            } else {
                // FMA rounds once where the baseline rounds twice: within a few ulps.
                for (g, r) in got.iter().zip(&reference) {
                    assert!(
                        (g - r).abs() <= 4.0 * f32::EPSILON * r.abs().max(1.0),
                        "{isa:?}"
                    );
                }
            }
        }
    }
    // The same rows alone give the same values: nothing depends on the chunking.
    let alone = layer.forward_with(Isa::Baseline, &x[k..2 * k], 1, Epilogue::BiasGelu);
    assert_eq!(alone, reference[n..2 * n]);
}
