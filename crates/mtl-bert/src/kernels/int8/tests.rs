//! The int8 GEMM against an exact integer reference, quantisation's error bounds, the epilogues
//! against f64, every variant of our kernels forced, and thread-count independence.

use super::gemm::ROWS_PER_CHUNK;
use super::kernel::{BLOCK, Int8Kernel, PANEL, PackedWeights, gemm};
use super::quantize::{QuantizeError, RowsOut, quantize_rows, quantize_weights};
use super::{Epilogue, Int8Linear};
use crate::kernels::Isa;
use crate::kernels::test_support::{Rng, gelu_f64};

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

/// The raw product with `kernel`, `[m, n]`, computed over the panels in `parts` column ranges.
fn product(
    kernel: Int8Kernel,
    a: &[u8],
    b: &[i8],
    m: usize,
    k: usize,
    n: usize,
    parts: usize,
) -> Vec<i32> {
    let w = PackedWeights::pack(kernel, b, k, n);
    let width = w.row_width();
    let mut padded = vec![0u8; m * width];
    for (p, a) in padded.chunks_exact_mut(width).zip(a.chunks_exact(k)) {
        p[..k].copy_from_slice(a);
    }
    let panels = w.blocks() / PANEL;
    let parts = parts.clamp(1, panels);
    let mut out = vec![0i32; m * n];
    for part in 0..parts {
        let blocks = part * panels / parts * PANEL..(part + 1) * panels / parts * PANEL;
        let stride = blocks.len() * BLOCK;
        // Poisoned: every sum must be written.
        let mut acc = vec![i32::MIN; m * stride];
        gemm(kernel, &padded, m, &w, blocks.clone(), &mut acc);
        for r in 0..m {
            for (j, c) in (blocks.start * BLOCK..n.min(blocks.end * BLOCK)).enumerate() {
                out[r * n + c] = acc[r * stride + j];
            }
        }
    }
    out
}

/// Every kernel this CPU runs against the exact integer sums: random shapes (odd sizes, `k` not
/// a multiple of 4, more or fewer rows than a tile), the extremes (255 against 127 and -128,
/// which would saturate `vpmaddubsw`'s 16-bit pair sums; quantised weights never reach -128),
/// zeros and rows of zeros, the columns in one range or split.
#[test]
fn gemm_is_exact() {
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
        (9, 6, 100),
        (4, 1536, 49),
    ];
    let kernels = Int8Kernel::available();
    assert!(kernels.contains(&Int8Kernel::Generic));
    for kernel in kernels {
        let (q_max, q_min) = (i8::MAX, i8::MIN);
        for (case, &(m, k, n)) in shapes.iter().enumerate() {
            for fill in 0..4 {
                // 0: random; 1: the extremes; 2: zeros; 3: random with rows of zeros.
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
                        1 => match (i / n) % 3 {
                            2 => 0,
                            _ if i % 2 == 0 => q_max,
                            _ => q_min,
                        },
                        2 => 0,
                        _ => {
                            (rng.below((i64::from(q_max) - i64::from(q_min) + 1) as u64) as i64
                                + i64::from(q_min)) as i8
                        }
                    })
                    .collect();
                let want = reference_gemm(&a, &b, m, k, n);
                for parts in [1, 2, 5] {
                    let got = product(kernel, &a, &b, m, k, n, parts);
                    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            i64::from(g),
                            w,
                            "{kernel:?} case {case} {m}x{k}x{n} fill {fill} parts {parts}: \
                             element {i}"
                        );
                    }
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
        let out = RowsOut {
            q: &mut q,
            zero: &mut zero,
            scale: &mut scale,
            non_finite: &mut bad,
        };
        quantize_rows(isa, &x, k, k, out);
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
    let layer = Int8Linear::quantize(Int8Kernel::detect(), &weight, None, k, n).unwrap();
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
        Int8Linear::quantize(Int8Kernel::Generic, &weight, None, 2, 3).unwrap_err(),
        QuantizeError::NonFinite {
            tensor: "weight",
            row: 1,
            column: 1
        }
    );
    let bias = [0.0, f32::INFINITY, 0.0];
    assert!(matches!(
        Int8Linear::quantize(Int8Kernel::Generic, &[0.5; 6], Some(&bias), 2, 3),
        Err(QuantizeError::NonFinite {
            tensor: "bias",
            column: 1,
            ..
        })
    ));
    assert!(matches!(
        Int8Linear::quantize(Int8Kernel::Generic, &[0.5; 6], None, 4, 3),
        Err(QuantizeError::Shape(_))
    ));
}

#[test]
fn weights_quantise_per_column() {
    // Column 0 small, column 1 large, column 2 zeros: each gets its own scale.
    let w = [0.01, 100.0, 0.0, -0.02, 50.0, 0.0];
    let (q, scales) = quantize_weights(&w, 3).unwrap();
    assert_eq!(q, vec![64, 127, 0, -127, 64, 0]);
    assert_eq!(scales, vec![0.02 / 127.0, 100.0 / 127.0, 0.0]);
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
        let col_max: Vec<f64> = (0..n)
            .map(|c| {
                (0..k)
                    .map(|r| f64::from(w[r * n + c].abs()))
                    .fold(0.0, f64::max)
            })
            .collect();
        for (kernel, isa) in kernels_and_isas() {
            let layer = Int8Linear::quantize(kernel, &w, Some(&b), k, n).unwrap();
            let q_max = 127.0;
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
                            "{m}x{k}x{n} {kernel:?} {isa:?} {epilogue:?}: [{r}][{c}] = {got}, f64 {exact}, \
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
    let reference = Int8Linear::quantize(Int8Kernel::Generic, &w, None, k, n)
        .unwrap()
        .forward_with(Isa::Baseline, &x, m, Epilogue::BiasGelu);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for (kernel, isa) in kernels_and_isas() {
            let layer = Int8Linear::quantize(kernel, &w, None, k, n).unwrap();
            let got = pool.install(|| layer.forward_with(isa, &x, m, Epilogue::BiasGelu));
            if isa == Isa::Baseline {
                assert_eq!(got, reference, "{kernel:?}, {threads} threads");
            } else {
                // FMA rounds once where the baseline rounds twice: within a few ulps.
                for (g, r) in got.iter().zip(&reference) {
                    assert!(
                        (g - r).abs() <= 4.0 * f32::EPSILON * r.abs().max(1.0),
                        "{kernel:?} {isa:?}"
                    );
                }
            }
        }
    }
    // The same rows alone give the same values: nothing depends on the tiling.
    let layer = Int8Linear::quantize(Int8Kernel::detect(), &w, None, k, n).unwrap();
    let alone = layer.forward_with(Isa::Baseline, &x[k..2 * k], 1, Epilogue::BiasGelu);
    assert_eq!(alone, reference[n..2 * n]);
}

/// Every GEMM kernel this CPU runs with each f32 variant it runs: the GEMM kernels in turn with
/// the best f32 variant, and every f32 variant with the best GEMM kernel.
fn kernels_and_isas() -> Vec<(Int8Kernel, Isa)> {
    let mut pairs: Vec<_> = Int8Kernel::available()
        .into_iter()
        .map(|kernel| (kernel, Isa::detect()))
        .collect();
    pairs.extend(
        Isa::available()
            .into_iter()
            .skip(1)
            .map(|isa| (Int8Kernel::detect(), isa)),
    );
    pairs
}
