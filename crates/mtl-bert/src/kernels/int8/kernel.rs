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
//! zero weights; the activation rows are padded to the same width with zeros. For the kernels
//! without VNNI the weights are widened to i16 once, in groups of two rows: again 64 bytes per
//! block and step.
//!
//! # Kernels
//!
//! - [`Int8Kernel::Avx512Vnni`]: `vpdpbusd`, four `u8 x i8` products added into an i32 lane
//!   exactly. Tiles of 8 rows x 48 columns (24 accumulators).
//! - [`Int8Kernel::Avx512Bw`] and [`Int8Kernel::Avx2`] (no VNNI): `vpmaddwd` on the weights
//!   widened to i16 (once, at load) and the activations widened to u16 (per tile), two products
//!   per i32 lane. Not `vpmaddubsw`: its pair sums saturate in 16 bits unless the weights are
//!   7-bit (ONNX Runtime's `reduce_range`), which measured all-MiniLM-L6-v2's worst test texts
//!   at a cosine of 0.9897 to f32 (tweets and Amazon), under the 0.99 every text meets with 8
//!   bits; exact 16-bit products cost about a fifth of the int8 speed on the AVX2 path
//!   (docs/BENCHMARKS.md). AVX-512BW runs the VNNI kernel's tiles, AVX2 tiles of 4 rows x 16
//!   columns (8 accumulators of its 16 registers).
//! - [`Int8Kernel::Generic`]: plain integer loops over the 8-bit layout, for other CPUs.
//!
//! Every kernel gives the exact integer sums of 8-bit weights and activations, so the results
//! depend neither on the kernel, nor on the tiling, nor on the number of threads.

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
    /// x86-64 AVX-512BW without VNNI (`vpmaddwd` on weights widened to i16).
    Avx512Bw,
    /// x86-64 AVX2 (`vpmaddwd` on weights widened to i16).
    Avx2,
    /// Portable integer loops.
    Generic,
}

impl Int8Kernel {
    /// Every kernel, best first.
    pub(crate) const ALL: [Self; 4] = [Self::Avx512Vnni, Self::Avx512Bw, Self::Avx2, Self::Generic];

    /// The best kernel this CPU runs.
    pub(crate) fn detect() -> Self {
        Self::ALL
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
        Self::ALL.into_iter().filter(|k| k.is_supported()).collect()
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

    /// Whether the kernel runs on weights and activations widened to 16 bits.
    fn widens(self) -> bool {
        matches!(self, Self::Avx512Bw | Self::Avx2)
    }
}

/// A `[k, n]` int8 weight matrix in the kernels' layout (see the module's documentation).
pub(crate) struct PackedWeights {
    /// The layout of the module's documentation (empty when packed for AVX2).
    data: Vec<i8>,
    /// For AVX2: per block, per pair of rows, 16 columns x 2 weights as i16 (else empty).
    wide: Vec<i16>,
    /// Groups of four rows (`k` padded to a multiple of 4, divided by 4).
    groups: usize,
    /// Blocks of [`BLOCK`] columns, padded to a multiple of [`PANEL`].
    blocks: usize,
}

impl PackedWeights {
    /// Packs a row-major `[k, n]` matrix for `kernel`.
    pub(crate) fn pack(kernel: Int8Kernel, w: &[i8], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "packing: the weights are not [{k}, {n}]");
        let groups = k.div_ceil(4);
        let blocks = n.div_ceil(BLOCK).div_ceil(PANEL) * PANEL;
        let (mut data, mut wide) = (Vec::new(), Vec::new());
        if kernel.widens() {
            // Pairs of rows: 2 * groups per block, 32 values each.
            wide = vec![0i16; blocks * groups * 64];
            for (row, values) in w.chunks_exact(n).enumerate() {
                let (p, j) = (row / 2, row % 2);
                for (col, &v) in values.iter().enumerate() {
                    let (b, c) = (col / BLOCK, col % BLOCK);
                    wide[(b * 2 * groups + p) * 32 + c * 2 + j] = i16::from(v);
                }
            }
        } else {
            data = vec![0i8; blocks * groups * 64];
            for (row, values) in w.chunks_exact(n).enumerate() {
                let (g, j) = (row / 4, row % 4);
                for (col, &v) in values.iter().enumerate() {
                    let (b, c) = (col / BLOCK, col % BLOCK);
                    data[(b * groups + g) * 64 + c * 4 + j] = v;
                }
            }
        }
        Self {
            data,
            wide,
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
        self.data.len() + 2 * self.wide.len()
    }

    /// Bytes from one block to the next in the 8-bit layout (twice that in the widened one).
    fn block_stride(&self) -> usize {
        self.groups * 64
    }

    /// The packed weights as bytes: the widened layout's or the 8-bit one's.
    #[cfg(target_arch = "x86_64")]
    fn bytes_for(&self, wide: bool) -> &[u8] {
        if wide {
            // SAFETY: i16 has no padding and u8 no alignment: the same memory as bytes.
            unsafe { std::slice::from_raw_parts(self.wide.as_ptr().cast(), self.wide.len() * 2) }
        } else {
            // SAFETY: as above, for i8.
            unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast(), self.data.len()) }
        }
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
    assert_eq!(
        w.wide.is_empty(),
        !kernel.widens(),
        "the weights were packed for another kernel"
    );
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
    use std::cell::Cell;
    use std::ops::Range;

    /// What a tile walks, in bytes. Each step of `k` reads 4 bytes of an activation row (four
    /// u8, or two u16) and 64 bytes of a block (16 columns x four i8, or x two i16).
    #[derive(Clone, Copy)]
    struct Strides {
        /// From one activation row to the next.
        a_stride: usize,
        /// From one packed block to the next.
        block_stride: usize,
        /// Steps along `k`.
        steps: usize,
        /// From one row of sums to the next, in i32.
        acc_stride: usize,
    }

    impl Strides {
        /// For the 8-bit layout, or for the widened one (`wide`: i16 weights, u16 rows).
        fn new(w: &PackedWeights, blocks: &Range<usize>, wide: bool) -> Self {
            let f = if wide { 2 } else { 1 };
            Self {
                a_stride: f * w.row_width(),
                block_stride: f * w.block_stride(),
                steps: f * w.groups,
                acc_stride: blocks.len() * BLOCK,
            }
        }
    }

    /// Four bytes of an activation row as one i32 (to broadcast).
    #[inline(always)]
    unsafe fn four(a: *const u8) -> i32 {
        // SAFETY: the caller keeps `a..a + 4` inside the activation rows.
        unsafe { a.cast::<i32>().read_unaligned() }
    }

    thread_local! {
        /// A thread's activation rows widened to u16, for the kernels on i16 weights.
        static WIDE: Cell<Vec<u16>> = const { Cell::new(Vec::new()) };
    }

    /// Runs `f` on the first `rows` activation rows widened to u16, as bytes.
    fn widened<T>(a: &[u8], rows: usize, width: usize, f: impl FnOnce(&[u8]) -> T) -> T {
        let mut wide = WIDE.take();
        wide.clear();
        wide.extend(a[..rows * width].iter().map(|&v| u16::from(v)));
        // SAFETY: u16 has no padding and u8 no alignment: the same memory as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(wide.as_ptr().cast::<u8>(), wide.len() * 2) };
        let out = f(bytes);
        WIDE.set(wide);
        out
    }

    /// Defines an AVX-512 tile of `M` rows x [`PANEL`] blocks and its driver `$gemm` over rows
    /// and panels; `$dot(acc, x, w)` adds one step's products of each lane into `acc`, and
    /// `$wide` says whether the kernel runs on the widened layout.
    macro_rules! avx512_kernel {
        ($gemm:ident, $tile:ident, $features:literal, $wide:expr, $dot:expr) => {
            #[target_feature(enable = $features)]
            unsafe fn $tile<const M: usize>(
                a: *const u8,
                b: *const u8,
                acc: *mut i32,
                d: &Strides,
            ) {
                let mut sum = [[_mm512_setzero_si512(); PANEL]; M];
                for step in 0..d.steps {
                    let mut w = [_mm512_setzero_si512(); PANEL];
                    for (j, w) in w.iter_mut().enumerate() {
                        // SAFETY: block `j` of the panel holds `steps` steps of 64 bytes.
                        *w = unsafe {
                            _mm512_loadu_si512(b.add(j * d.block_stride + step * 64).cast())
                        };
                    }
                    for (r, sum) in sum.iter_mut().enumerate() {
                        // SAFETY: row `r` of the tile holds `4 * steps` bytes.
                        let x =
                            _mm512_set1_epi32(unsafe { four(a.add(r * d.a_stride + step * 4)) });
                        for (s, &w) in sum.iter_mut().zip(&w) {
                            *s = $dot(*s, x, w);
                        }
                    }
                }
                for (r, sum) in sum.iter().enumerate() {
                    for (j, &s) in sum.iter().enumerate() {
                        // SAFETY: the caller's `acc` has `M` rows of `acc_stride >= 16 PANEL`.
                        unsafe {
                            _mm512_storeu_si512(acc.add(r * d.acc_stride + j * BLOCK).cast(), s)
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
                let d = Strides::new(w, &blocks, $wide);
                let mut run = |a: &[u8]| {
                    let weights = w.bytes_for($wide);
                    for (i, panel) in blocks.clone().step_by(PANEL).enumerate() {
                        let b = weights[panel * d.block_stride..].as_ptr();
                        for r0 in (0..rows).step_by(ROWS_512) {
                            let a = a[r0 * d.a_stride..].as_ptr();
                            let acc = acc[r0 * d.acc_stride + i * PANEL * BLOCK..].as_mut_ptr();
                            // SAFETY: the tile's rows from `r0` and the panel's columns are in
                            // bounds, and the caller checked the CPU.
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
                };
                if $wide {
                    widened(a, rows, w.row_width(), run)
                } else {
                    run(a)
                }
            }
        };
    }

    avx512_kernel!(
        gemm_vnni,
        tile_vnni,
        "avx512f,avx512bw,avx512vnni",
        false,
        |s, x, w| _mm512_dpbusd_epi32(s, x, w)
    );
    avx512_kernel!(
        gemm_512bw,
        tile_512bw,
        "avx512f,avx512bw",
        true,
        |s, x, w| _mm512_add_epi32(s, _mm512_madd_epi16(x, w))
    );

    /// An AVX2 tile of `M` rows x one block (two registers of 8 columns), on the widened layout.
    #[target_feature(enable = "avx2")]
    unsafe fn tile_avx2<const M: usize>(a: *const u8, b: *const u8, acc: *mut i32, d: &Strides) {
        let mut sum = [[_mm256_setzero_si256(); 2]; M];
        for step in 0..d.steps {
            // SAFETY: the block holds `steps` steps of 64 bytes.
            let w = unsafe {
                [
                    _mm256_loadu_si256(b.add(step * 64).cast()),
                    _mm256_loadu_si256(b.add(step * 64 + 32).cast()),
                ]
            };
            for (r, sum) in sum.iter_mut().enumerate() {
                // SAFETY: row `r` of the tile holds `4 * steps` bytes.
                let x = _mm256_set1_epi32(unsafe { four(a.add(r * d.a_stride + step * 4)) });
                for (s, &w) in sum.iter_mut().zip(&w) {
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(x, w));
                }
            }
        }
        for (r, sum) in sum.iter().enumerate() {
            for (j, &s) in sum.iter().enumerate() {
                // SAFETY: the caller's `acc` has `M` rows of `acc_stride >= 16`.
                unsafe { _mm256_storeu_si256(acc.add(r * d.acc_stride + j * 8).cast(), s) };
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
        let d = Strides::new(w, &blocks, true);
        let weights = w.bytes_for(true);
        widened(a, rows, w.row_width(), |a| {
            for (i, block) in blocks.enumerate() {
                let b = weights[block * d.block_stride..].as_ptr();
                for r0 in (0..rows).step_by(ROWS_AVX2) {
                    let a = a[r0 * d.a_stride..].as_ptr();
                    let acc = acc[r0 * d.acc_stride + i * BLOCK..].as_mut_ptr();
                    // SAFETY: the tile's rows from `r0` and the block's columns are in bounds,
                    // and the caller checked the CPU.
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
        })
    }
}
