//! The fused attention against an f64 reference (padding, holes, a text of padding only,
//! query/key/value in one buffer or three), every softmax variant forced, thread counts, and
//! NaN.

use super::kernel::self_attention_with;
use super::{Dims, KeyMask, Rows};
use crate::kernels::Isa;
use crate::kernels::test_support::Rng;

/// `[batch, seq]` bias: 0 where `tokens` has a 1, `f32::MIN` where it has a 0.
fn bias_of(tokens: &[&[u8]]) -> Vec<f32> {
    tokens
        .iter()
        .flat_map(|row| row.iter().map(|&t| if t == 1 { 0.0 } else { f32::MIN }))
        .collect()
}

/// As `transformers` computes it, in f64 but for the bias, added to the f32-rounded score (so
/// that a text of padding only gets the equal weights f32 gives it).
fn reference(q: Rows<'_>, k: Rows<'_>, v: Rows<'_>, bias: &[f32], dims: Dims) -> Vec<f64> {
    let Dims {
        batch,
        seq,
        heads,
        head_dim,
    } = dims;
    let width = heads * head_dim;
    let at = |view: Rows<'_>, row: usize, col: usize| {
        f64::from(view.data[row * view.stride + view.offset + col])
    };
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut out = vec![0.0; batch * seq * width];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..seq {
                let scores: Vec<f64> = (0..seq)
                    .map(|j| {
                        let dot: f64 = (0..head_dim)
                            .map(|c| {
                                at(q, b * seq + i, h * head_dim + c)
                                    * at(k, b * seq + j, h * head_dim + c)
                            })
                            .sum();
                        f64::from((dot * scale) as f32 + bias[b * seq + j])
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for c in 0..head_dim {
                    out[(b * seq + i) * width + h * head_dim + c] = (0..seq)
                        .map(|j| weights[j] / total * at(v, b * seq + j, h * head_dim + c))
                        .sum();
                }
            }
        }
    }
    out
}

fn assert_close(got: &[f32], expected: &[f64], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!(
            g.is_finite() && (f64::from(g) - e).abs() <= 2e-6 * (1.0 + e.abs()),
            "{what}: [{i}] = {g}, f64 {e}"
        );
    }
}

/// Random texts with the given token masks: query, key and value in one `[rows, 3 width]`
/// buffer (as the int8 layer writes them) or in three `[rows, width]` ones.
#[test]
fn matches_f64_with_padding_holes_and_shared_buffers() {
    let mut rng = Rng(11);
    let cases: &[(usize, usize, &[&[u8]])] = &[
        (
            2,
            5,
            &[
                &[1, 1, 1, 1, 0, 0, 0],
                &[1, 1, 1, 1, 1, 1, 1],
                &[1, 0, 0, 0, 0, 0, 0],
            ],
        ),
        // Holes: masked keys before a text's last token.
        (3, 4, &[&[1, 0, 1, 1, 0], &[0, 1, 1, 0, 1]]),
        // A text of padding only: equal weights on every key, as in f32.
        (1, 8, &[&[0, 0, 0], &[1, 1, 0]]),
        // MiniLM's head size, more keys than the softmax's lanes.
        (
            2,
            32,
            &[&[1; 40], &[[1u8; 23].as_slice(), &[0; 17]].concat()],
        ),
    ];
    for &(heads, head_dim, tokens) in cases {
        let batch = tokens.len();
        let seq = tokens[0].len();
        let width = heads * head_dim;
        let rows = batch * seq;
        let dims = Dims {
            batch,
            seq,
            heads,
            head_dim,
        };
        let bias = bias_of(tokens);
        let mask = KeyMask::new(bias.clone(), batch, seq);
        let fused = rng.normals(rows * 3 * width, 1.5);
        let views = |i: usize| Rows {
            data: &fused,
            stride: 3 * width,
            offset: i * width,
        };
        let expected = reference(views(0), views(1), views(2), &bias, dims);
        let apart: Vec<Vec<f32>> = (0..3)
            .map(|i| {
                fused
                    .chunks_exact(3 * width)
                    .flat_map(|row| row[i * width..(i + 1) * width].to_vec())
                    .collect()
            })
            .collect();
        let alone = |i: usize| Rows {
            data: &apart[i],
            stride: width,
            offset: 0,
        };
        for isa in Isa::available() {
            let what = format!("{heads}x{head_dim} {tokens:?} {isa:?}");
            let shared = self_attention_with(isa, views(0), views(1), views(2), &mask, dims);
            assert_close(&shared, &expected, &format!("{what}, one buffer"));
            let separate = self_attention_with(isa, alone(0), alone(1), alone(2), &mask, dims);
            assert_eq!(shared, separate, "{what}: one buffer or three");
        }
    }
}

#[test]
fn thread_counts_and_other_texts_change_nothing() {
    let mut rng = Rng(5);
    let (batch, seq, heads, head_dim) = (3, 37, 4, 8);
    let width = heads * head_dim;
    let dims = Dims {
        batch,
        seq,
        heads,
        head_dim,
    };
    let tokens: Vec<Vec<u8>> = [37, 20, 1]
        .iter()
        .map(|&len| (0..seq).map(|j| u8::from(j < len)).collect())
        .collect();
    let token_refs: Vec<&[u8]> = tokens.iter().map(Vec::as_slice).collect();
    let mask = KeyMask::new(bias_of(&token_refs), batch, seq);
    let qkv: Vec<Vec<f32>> = (0..3)
        .map(|_| rng.normals(batch * seq * width, 1.0))
        .collect();
    let view = |i: usize| Rows {
        data: &qkv[i],
        stride: width,
        offset: 0,
    };
    for isa in Isa::available() {
        let reference = self_attention_with(isa, view(0), view(1), view(2), &mask, dims);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got =
                pool.install(|| self_attention_with(isa, view(0), view(1), view(2), &mask, dims));
            assert_eq!(got, reference, "{isa:?}, {threads} threads");
        }
        // The second text alone, in a batch of one.
        let one = |i: usize| Rows {
            data: &qkv[i][seq * width..2 * seq * width],
            stride: width,
            offset: 0,
        };
        let one_mask = KeyMask::new(bias_of(&token_refs[1..2]), 1, seq);
        let alone = self_attention_with(
            isa,
            one(0),
            one(1),
            one(2),
            &one_mask,
            Dims { batch: 1, ..dims },
        );
        assert_eq!(
            alone,
            reference[seq * width..2 * seq * width],
            "{isa:?}: alone"
        );
    }
}

#[test]
fn a_nan_stays_in_its_text() {
    let (batch, seq, heads, head_dim) = (2, 3, 1, 4);
    let width = heads * head_dim;
    let dims = Dims {
        batch,
        seq,
        heads,
        head_dim,
    };
    let mut rng = Rng(3);
    let mut q = rng.normals(batch * seq * width, 1.0);
    let kv = rng.normals(batch * seq * width, 1.0);
    // The first text's second query.
    q[width] = f32::NAN;
    let mask = KeyMask::new(vec![0.0; batch * seq], batch, seq);
    let rows = |data| Rows {
        data,
        stride: width,
        offset: 0,
    };
    for isa in Isa::available() {
        let out = self_attention_with(isa, rows(&q), rows(&kv), rows(&kv), &mask, dims);
        let (first, second) = out.split_at(seq * width);
        assert!(
            first[width..2 * width].iter().all(|x| x.is_nan()),
            "{isa:?}"
        );
        assert!(first[..width].iter().all(|x| x.is_finite()), "{isa:?}");
        assert!(second.iter().all(|x| x.is_finite()), "{isa:?}");
    }
}

#[test]
fn key_lengths_come_from_the_last_token() {
    let bias = bias_of(&[&[1, 1, 0, 0], &[1, 0, 1, 0], &[0, 0, 0, 0], &[1, 1, 1, 1]]);
    let mask = KeyMask::new(bias, 4, 4);
    assert_eq!(mask.lens, vec![2, 3, 4, 4]);
    assert_eq!(mask.holes, vec![false, true, true, false]);
}
