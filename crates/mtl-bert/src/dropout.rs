//! Dropout whose masks come from a counter-based generator (Philox 4x32-10), so that a mask
//! depends only on *what* it masks, never on the order in which it was drawn.
//!
//! Burn's `Dropout` draws its masks from the backend's one global generator: two threads
//! drawing at once get them in a different order on every run. Here a mask element is a pure
//! function of four numbers: the step's seed, the part of the model (embeddings, layer N's
//! attention probabilities, ...), the row of the batch and the element within the row. So a
//! batch split into row groups, run on any number of threads in any order, draws exactly the
//! masks the whole batch would (tested below), and a training run stays reproducible step for
//! step while its batch is split across the cores.
//!
//! Philox: Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3" (SC 2011); the
//! generator PyTorch and cuRAND use for dropout, checked here against the paper's
//! known-answer vectors (Random123's `kat_vectors`).

use burn::nn::Dropout;
use burn::prelude::*;
use rayon::prelude::*;

/// Where a forward pass's dropout masks come from: a seed (one per training micro-step), the
/// part of the model being masked, and the index of the batch's first row in the batch it was
/// split from.
///
/// The encoder gives its embeddings [`part`](Self::part)`(0)` and layer `i`
/// `part(1 + i)`, each layer its attention probabilities, attention output and feed-forward
/// output parts 0, 1 and 2; a multi-task model's pooled vector and heads use
/// [`DropoutKey::POOLED_PART`] and [`DropoutKey::head_part`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutKey {
    /// Philox's key: the seed of the micro-step.
    seed: u64,
    /// The model part, in Philox's counter beside the element index.
    stream: u64,
    /// Index of the first row of the masked tensor in the whole batch.
    first_row: u64,
}

impl DropoutKey {
    /// The [`part`](Self::part) index of the pooled sentence vector before the heads (outside
    /// the encoder).
    pub const POOLED_PART: u64 = 1 << 32;

    /// The [`part`](Self::part) index of the hidden layer of task `task`'s MLP head.
    pub fn head_part(task: usize) -> u64 {
        Self::POOLED_PART + 1 + task as u64
    }

    /// The key of a whole batch for one micro-step's `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            stream: 0,
            first_row: 0,
        }
    }

    /// The key of part `index` of the module this key was given to.
    pub fn part(self, index: u64) -> Self {
        Self {
            stream: splitmix64(splitmix64(self.stream) ^ index),
            ..self
        }
    }

    /// The key of the rows of this batch from `row` on (for one row group of a split batch).
    pub fn from_row(self, row: usize) -> Self {
        Self {
            first_row: self.first_row + row as u64,
            ..self
        }
    }

    /// The scaled mask of a tensor of `shape` (rows first): each element is `1 / keep` with
    /// probability `keep`, else 0; row-major, as the tensor's elements.
    pub fn mask(&self, shape: &[usize], keep: f64) -> Vec<f32> {
        let len: usize = shape.iter().product();
        let row_len = shape.iter().skip(1).product::<usize>() as u64;
        let first = self.first_row * row_len;
        // keep iff a uniform u32 < keep * 2^32 (keep is in (0, 1)).
        let threshold = (keep * 4_294_967_296.0) as u64;
        let scale = (1.0 / keep) as f32;
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let mut mask = vec![0.0f32; len];
        const CHUNK: usize = 1 << 14;
        mask.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, values)| {
                let start = first + (chunk * CHUNK) as u64;
                let mut block = u64::MAX;
                let mut words = [0u32; 4];
                for (i, value) in values.iter_mut().enumerate() {
                    let element = start + i as u64;
                    if element / 4 != block {
                        block = element / 4;
                        words = philox4x32_10(
                            [
                                block as u32,
                                (block >> 32) as u32,
                                self.stream as u32,
                                (self.stream >> 32) as u32,
                            ],
                            key,
                        );
                    }
                    if u64::from(words[(element % 4) as usize]) < threshold {
                        *value = scale;
                    }
                }
            });
        mask
    }
}

/// `dropout` applied to `input` with masks from `key`; the identity where Burn's
/// [`Dropout::forward`] is (probability 0, a frozen layer, or a device without autodiff).
///
/// Without a key the masks come from the backend's generator, as Burn's layer draws them.
pub fn dropout<const D: usize>(
    dropout: &Dropout,
    input: Tensor<D>,
    key: Option<DropoutKey>,
) -> Tensor<D> {
    let active =
        dropout.prob > 0.0 && dropout.training.is_enabled() && input.device().is_autodiff();
    match key {
        Some(key) if active => {
            let (shape, device) = (input.dims(), input.device());
            let mask = key.mask(&shape, 1.0 - dropout.prob);
            input * Tensor::from_data(TensorData::new(mask, shape), &device)
        }
        _ => dropout.forward(input),
    }
}

/// SplitMix64's finaliser: a bijection of `u64` that scatters nearby inputs.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Philox 4x32 with 10 rounds: four random `u32` from a 128-bit counter and a 64-bit key.
fn philox4x32_10(mut counter: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    const M0: u64 = 0xD251_1F53;
    const M1: u64 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    for round in 0..10 {
        if round > 0 {
            key = [key[0].wrapping_add(W0), key[1].wrapping_add(W1)];
        }
        let p0 = M0 * u64::from(counter[0]);
        let p1 = M1 * u64::from(counter[2]);
        counter = [
            (p1 >> 32) as u32 ^ counter[1] ^ key[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ counter[3] ^ key[1],
            p0 as u32,
        ];
    }
    counter
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's known-answer vectors for philox4x32_10 (counter, key, output).
    #[test]
    fn philox_matches_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    fn mask_in_pool(threads: usize, key: DropoutKey, shape: &[usize]) -> Vec<f32> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| key.mask(shape, 0.9))
    }

    #[test]
    fn masks_do_not_depend_on_threads_or_on_how_a_batch_is_split() {
        // 33 rows of 3 x 331 elements: rows do not start on a Philox block (of 4), and the
        // whole mask spans several parallel chunks.
        let key = DropoutKey::new(7).part(3);
        let shape = [33, 3, 331];
        let whole = mask_in_pool(1, key, &shape);
        assert_eq!(mask_in_pool(2, key, &shape), whole);
        assert_eq!(mask_in_pool(8, key, &shape), whole);
        let row = 3 * 331;
        for split in [1, 16, 17, 32] {
            let mut parts = mask_in_pool(2, key, &[split, 3, 331]);
            parts.extend(mask_in_pool(1, key.from_row(split), &[33 - split, 3, 331]));
            assert_eq!(parts, whole, "split after row {split}");
            assert_eq!(parts.len(), 33 * row);
        }
    }

    #[test]
    fn masks_keep_the_right_share_scaled() {
        let mask = DropoutKey::new(1).mask(&[1000, 100], 0.9);
        let kept = mask.iter().filter(|&&v| v != 0.0).count() as f64 / mask.len() as f64;
        assert!((kept - 0.9).abs() < 0.003, "kept {kept}");
        assert!(mask.iter().all(|&v| v == 0.0 || v == (1.0f64 / 0.9) as f32));
    }

    #[test]
    fn seeds_and_parts_give_different_masks() {
        let shape = [4, 64];
        let base = DropoutKey::new(1);
        let masks = [
            base.mask(&shape, 0.5),
            DropoutKey::new(2).mask(&shape, 0.5),
            base.part(0).mask(&shape, 0.5),
            base.part(1).mask(&shape, 0.5),
            base.part(0).part(1).mask(&shape, 0.5),
            base.part(1).part(0).mask(&shape, 0.5),
        ];
        for (i, a) in masks.iter().enumerate() {
            for b in &masks[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn dropout_is_the_identity_at_inference() {
        let device = crate::Backend::default_compiled().device(0).unwrap();
        let layer = burn::nn::DropoutConfig::new(0.5).init();
        let input = Tensor::<2>::ones([4, 8], &device);
        let output = dropout(&layer, input.clone(), Some(DropoutKey::new(3)));
        output.into_data().assert_eq(&input.into_data(), true);
    }

    #[test]
    fn dropout_in_training_applies_the_keyed_mask() {
        let device = crate::Backend::default_compiled()
            .device(0)
            .unwrap()
            .autodiff();
        let layer = burn::nn::DropoutConfig::new(0.25).init();
        let key = DropoutKey::new(5).part(2);
        let input = Tensor::<2>::full([6, 10], 2.0, &device);
        let output: Vec<f32> = dropout(&layer, input, Some(key))
            .into_data()
            .try_into_vec()
            .unwrap();
        let expected: Vec<f32> = key.mask(&[6, 10], 0.75).iter().map(|m| m * 2.0).collect();
        assert_eq!(output, expected);
    }
}
