//! The u8 x i8 -> i32 product: weights packed once, one kernel per instruction set, chosen at
//! run time and forced by the tests.
//!
//! # Layout
//!
//! The weights `[k, n]` are packed in blocks of [`BLOCK`] = 16 columns (one 512-bit register of
//! i32 sums). Within a block, each group of four consecutive rows `k..k + 4` is 64 bytes: for
//! each of the 16 columns its four weights, in row order, which is the operand `vpdpbusd` (and
//! `vpmaddubsw`) multiplies with four consecutive activations of one row broadcast to every
//! lane. `k` is padded to a multiple of 4 and the blocks to a multiple of [`PANEL`], both with
//! zero weights; the activation rows are padded to the same width with zeros.
//!
//! # Kernels
//!
//! - [`Int8Kernel::Avx512Vnni`]: `vpdpbusd`, four `u8 x i8` products added into an i32 lane
//!   exactly. Tiles of 8 rows x 48 columns (24 accumulators).
//! - [`Int8Kernel::Avx512Bw`] and [`Int8Kernel::Avx2`]: `vpmaddubsw` then `vpmaddwd`; the first
//!   adds two products in 16 bits with saturation, so the weights must stay within 63 in
//!   magnitude (`2 * 255 * 63 < 2^15`, ONNX Runtime's `reduce_range`):
//!   [`Int8Kernel::may_saturate`]. AVX2 runs tiles of 4 rows x 16 columns (8 accumulators of
//!   its 16 registers).
//! - [`Int8Kernel::Generic`]: plain integer loops over the same layout, for other CPUs.
//!
//! Every kernel gives the exact integer sums (for weights within its range), so the results do
//! not depend on the kernel, the tiling or the number of threads.

use std::ops::Range;

/// Columns per packed block.
pub(crate) const BLOCK: usize = 16;
/// Blocks per AVX-512 tile: the packed blocks are padded to a multiple, and the column ranges
/// the products are split into are whole panels.
pub(crate) const PANEL: usize = 3;
/// Rows per AVX-512 tile.
const ROWS_512: usize = 8;
/// Rows per AVX2 tile.
const ROWS_AVX2: usize = 4;

/// Which u8 x i8 kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Int8Kernel {
    /// x86-64 AVX-512 with VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// x86-64 AVX-512BW without VNNI (`vpmaddubsw`, 7-bit weights).
    Avx512Bw,
    /// x86-64 AVX2 (`vpmaddubsw`, 7-bit weights).
    Avx2,
    /// Portable integer loops.
    Generic,
}

impl Int8Kernel {
    /// The best kernel this CPU runs.
    pub(crate) fn detect() -> Self {
        [Self::Avx512Vnni, Self::Avx512Bw, Self::Avx2]
            .into_iter()
            .find(|k| k.is_supported())
            .unwrap_or(Self::Generic)
    }

    /// Whether this CPU runs the kernel.
    pub(crate) fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Self::Avx512Vnni => has!("avx512f") && has!("avx512bw") && has!("avx512vnni"),
                Self::Avx512Bw => has!("avx512f") && has!("avx512bw"),
                Self::Avx2 => has!("avx2"),
                Self::Generic => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Self::Generic
        }
    }

    /// Every kernel this CPU runs, best first (the tests run each one).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        [Self::Avx512Vnni, Self::Avx512Bw, Self::Avx2, Self::Generic]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// A short name for logs and `/info`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Avx512Vnni => "avx512-vnni",
            Self::Avx512Bw => "avx512bw",
            Self::Avx2 => "avx2",
            Self::Generic => "generic",
        }
    }

    /// Whether the kernel adds pairs of products in 16 bits with saturation: its weights must
    /// then stay within 63 in magnitude.
    pub(crate) fn may_saturate(self) -> bool {
        matches!(self, Self::Avx512Bw | Self::Avx2)
    }

    /// The largest weight magnitude the kernel multiplies exactly with any u8 activations.
    pub(crate) fn weight_q_max(self) -> i8 {
        if self.may_saturate() { 63 } else { 127 }
    }
}

/// A `[k, n]` int8 weight matrix in the kernels' layout (see the module's documentation).
pub(crate) struct PackedWeights {
    data: Vec<i8>,
    /// Groups of four rows (`k` padded to a multiple of 4, divided by 4).
    groups: usize,
    /// Blocks of [`BLOCK`] columns, padded to a multiple of [`PANEL`].
    blocks: usize,
}

impl PackedWeights {
    /// Packs a row-major `[k, n]` matrix.
    pub(crate) fn pack(w: &[i8], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "packing: the weights are not [{k}, {n}]");
        let groups = k.div_ceil(4);
        let blocks = n.div_ceil(BLOCK).div_ceil(PANEL) * PANEL;
        let mut data = vec![0i8; blocks * groups * 64];
        for (row, values) in w.chunks_exact(n).enumerate() {
            let (g, j) = (row / 4, row % 4);
            for (col, &v) in values.iter().enumerate() {
                let (b, c) = (col / BLOCK, col % BLOCK);
                data[(b * groups + g) * 64 + c * 4 + j] = v;
            }
        }
        Self {
            data,
            groups,
            blocks,
        }
    }

    /// The width activation rows must have: `k` rounded up to a multiple of 4.
    pub(crate) fn row_width(&self) -> usize {
        self.groups * 4
    }

    /// Packed blocks of [`BLOCK`] columns (a multiple of [`PANEL`]).
    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Bytes from one block to the next.
    fn block_stride(&self) -> usize {
        self.groups * 64
    }
}

/// `acc[r][j] = sum_k a[r][k] * w[k][16 * blocks.start + j]` for `rows` rows of `a` (each
/// [`PackedWeights::row_width`] bytes, padded with zeros) and the columns of `blocks`, a range
/// of whole panels; `acc` has `16 * blocks.len()` columns per row.
///
/// Panics if `kernel` does not run on this CPU or the sizes do not fit.
pub(crate) fn gemm(
    kernel: Int8Kernel,
    a: &[u8],
    rows: usize,
    w: &PackedWeights,
    blocks: Range<usize>,
    acc: &mut [i32],
) {
    assert!(kernel.is_supported(), "{kernel:?} does not run on this CPU");
    assert!(
        blocks.start.is_multiple_of(PANEL)
            && blocks.end.is_multiple_of(PANEL)
            && blocks.end <= w.blocks,
        "blocks {blocks:?} are not whole panels of the {} blocks",
        w.blocks
    );
    let width = w.row_width();
    let acc_stride = blocks.len() * BLOCK;
    assert!(
        a.len() >= rows * width,
        "gemm: {rows} rows of {width} bytes"
    );
    assert!(
        acc.len() >= rows * acc_stride,
        "gemm: the sums need {rows} x {acc_stride}"
    );
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs the kernel and the sizes were checked above.
        Int8Kernel::Avx512Vnni => unsafe { x86::gemm_vnni(a, rows, w, blocks, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Int8Kernel::Avx512Bw => unsafe { x86::gemm_512bw(a, rows, w, blocks, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Int8Kernel::Avx2 => unsafe { x86::gemm_avx2(a, rows, w, blocks, acc) },
        _ => gemm_generic(a, rows, w, blocks, acc),
    }
}

/// The portable kernel: the same sums in plain integer loops.
fn gemm_generic(a: &[u8], rows: usize, w: &PackedWeights, blocks: Range<usize>, acc: &mut [i32]) {
    let width = w.row_width();
    let acc_stride = blocks.len() * BLOCK;
    for (r, a) in a.chunks_exact(width).take(rows).enumerate() {
        let acc = &mut acc[r * acc_stride..(r + 1) * acc_stride];
        for (i, b) in blocks.clone().enumerate() {
            let acc = &mut acc[i * BLOCK..(i + 1) * BLOCK];
            acc.fill(0);
            let packed = &w.data[b * w.block_stride()..(b + 1) * w.block_stride()];
            for (a, group) in a.chunks_exact(4).zip(packed.chunks_exact(64)) {
                for (sum, weights) in acc.iter_mut().zip(group.chunks_exact(4)) {
                    for (&x, &v) in a.iter().zip(weights) {
                        *sum += i32::from(x) * i32::from(v);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK, PANEL, PackedWeights, ROWS_512, ROWS_AVX2};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// The strides a tile walks, in elements.
    #[derive(Clone, Copy)]
    struct Strides {
        /// From one activation row to the next (bytes).
        a_stride: usize,
        /// From one packed block to the next (bytes).
        block_stride: usize,
        /// Groups of four rows of `k`.
        groups: usize,
        /// From one row of sums to the next.
        acc_stride: usize,
    }

    impl Strides {
        fn new(w: &PackedWeights, blocks: &Range<usize>) -> Self {
            Self {
                a_stride: w.row_width(),
                block_stride: w.block_stride(),
                groups: w.groups,
                acc_stride: blocks.len() * BLOCK,
            }
        }
    }

    /// Four consecutive u8 activations as one i32 (to broadcast).
    #[inline(always)]
    unsafe fn four(a: *const u8) -> i32 {
        // SAFETY: the caller keeps `a..a + 4` inside the activation rows.
        unsafe { a.cast::<i32>().read_unaligned() }
    }

    /// Defines an AVX-512 tile of `M` rows x [`PANEL`] blocks and its driver `$gemm` over rows
    /// and panels; `$dot(acc, a, b)` adds the four products of each lane into `acc`.
    macro_rules! avx512_kernel {
        ($gemm:ident, $tile:ident, $features:literal, $dot:expr) => {
            #[target_feature(enable = $features)]
            unsafe fn $tile<const M: usize>(
                a: *const u8,
                b: *const i8,
                acc: *mut i32,
                d: &Strides,
            ) {
                let Strides {
                    a_stride,
                    block_stride,
                    groups,
                    acc_stride,
                } = *d;
                let mut sum = [[_mm512_setzero_si512(); PANEL]; M];
                for g in 0..groups {
                    let mut w = [_mm512_setzero_si512(); PANEL];
                    for (j, w) in w.iter_mut().enumerate() {
                        // SAFETY: block `j` of the panel holds `groups` groups of 64 bytes.
                        *w = unsafe { _mm512_loadu_si512(b.add(j * block_stride + g * 64).cast()) };
                    }
                    for (r, sum) in sum.iter_mut().enumerate() {
                        // SAFETY: row `r` of the tile holds `4 * groups` bytes.
                        let x = _mm512_set1_epi32(unsafe { four(a.add(r * a_stride + g * 4)) });
                        for (s, &w) in sum.iter_mut().zip(&w) {
                            *s = $dot(*s, x, w);
                        }
                    }
                }
                for (r, sum) in sum.iter().enumerate() {
                    for (j, &s) in sum.iter().enumerate() {
                        // SAFETY: the caller's `acc` has `M` rows of `acc_stride >= 16 PANEL`.
                        unsafe {
                            _mm512_storeu_si512(acc.add(r * acc_stride + j * BLOCK).cast(), s)
                        };
                    }
                }
            }

            /// See [`super::gemm`]; the caller checked the CPU and the sizes.
            pub(super) unsafe fn $gemm(
                a: &[u8],
                rows: usize,
                w: &PackedWeights,
                blocks: Range<usize>,
                acc: &mut [i32],
            ) {
                let d = Strides::new(w, &blocks);
                for (i, panel) in blocks.step_by(PANEL).enumerate() {
                    // SAFETY: the panel's blocks lie inside the packed weights.
                    let b = unsafe { w.data.as_ptr().add(panel * d.block_stride) };
                    for r0 in (0..rows).step_by(ROWS_512) {
                        let a = a[r0 * d.a_stride..].as_ptr();
                        let acc = acc[r0 * d.acc_stride + i * PANEL * BLOCK..].as_mut_ptr();
                        // SAFETY: the tile's rows from `r0` and the panel's columns are in
                        // bounds.
                        unsafe {
                            match (rows - r0).min(ROWS_512) {
                                8 => $tile::<8>(a, b, acc, &d),
                                7 => $tile::<7>(a, b, acc, &d),
                                6 => $tile::<6>(a, b, acc, &d),
                                5 => $tile::<5>(a, b, acc, &d),
                                4 => $tile::<4>(a, b, acc, &d),
                                3 => $tile::<3>(a, b, acc, &d),
                                2 => $tile::<2>(a, b, acc, &d),
                                _ => $tile::<1>(a, b, acc, &d),
                            }
                        }
                    }
                }
            }
        };
    }

    avx512_kernel!(
        gemm_vnni,
        tile_vnni,
        "avx512f,avx512bw,avx512vnni",
        |s, x, w| _mm512_dpbusd_epi32(s, x, w)
    );
    avx512_kernel!(gemm_512bw, tile_512bw, "avx512f,avx512bw", |s, x, w| {
        _mm512_add_epi32(
            s,
            _mm512_madd_epi16(_mm512_maddubs_epi16(x, w), _mm512_set1_epi16(1)),
        )
    });

    /// An AVX2 tile of `M` rows x one block (two registers of 8 columns).
    #[target_feature(enable = "avx2")]
    unsafe fn tile_avx2<const M: usize>(a: *const u8, b: *const i8, acc: *mut i32, d: &Strides) {
        let Strides {
            a_stride,
            groups,
            acc_stride,
            ..
        } = *d;
        let ones = _mm256_set1_epi16(1);
        let mut sum = [[_mm256_setzero_si256(); 2]; M];
        for g in 0..groups {
            // SAFETY: the block holds `groups` groups of 64 bytes.
            let w = unsafe {
                [
                    _mm256_loadu_si256(b.add(g * 64).cast()),
                    _mm256_loadu_si256(b.add(g * 64 + 32).cast()),
                ]
            };
            for (r, sum) in sum.iter_mut().enumerate() {
                // SAFETY: row `r` of the tile holds `4 * groups` bytes.
                let x = _mm256_set1_epi32(unsafe { four(a.add(r * a_stride + g * 4)) });
                for (s, &w) in sum.iter_mut().zip(&w) {
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones));
                }
            }
        }
        for (r, sum) in sum.iter().enumerate() {
            for (j, &s) in sum.iter().enumerate() {
                // SAFETY: the caller's `acc` has `M` rows of `acc_stride >= 16`.
                unsafe { _mm256_storeu_si256(acc.add(r * acc_stride + j * 8).cast(), s) };
            }
        }
    }

    /// See [`super::gemm`]; the caller checked the CPU and the sizes.
    pub(super) unsafe fn gemm_avx2(
        a: &[u8],
        rows: usize,
        w: &PackedWeights,
        blocks: Range<usize>,
        acc: &mut [i32],
    ) {
        let d = Strides::new(w, &blocks);
        for (i, block) in blocks.enumerate() {
            // SAFETY: the block lies inside the packed weights.
            let b = unsafe { w.data.as_ptr().add(block * d.block_stride) };
            for r0 in (0..rows).step_by(ROWS_AVX2) {
                let a = a[r0 * d.a_stride..].as_ptr();
                let acc = acc[r0 * d.acc_stride + i * BLOCK..].as_mut_ptr();
                // SAFETY: the tile's rows from `r0` and the block's columns are in bounds.
                unsafe {
                    match (rows - r0).min(ROWS_AVX2) {
                        4 => tile_avx2::<4>(a, b, acc, &d),
                        3 => tile_avx2::<3>(a, b, acc, &d),
                        2 => tile_avx2::<2>(a, b, acc, &d),
                        _ => tile_avx2::<1>(a, b, acc, &d),
                    }
                }
            }
        }
    }
}
