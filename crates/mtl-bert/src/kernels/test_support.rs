//! What the kernels' tests share: reproducible random inputs (no `rand` dependency) and f64
//! references.

/// xorshift64* with Box-Muller normals.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `(0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Standard normal.
    pub(crate) fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.next_f64(), self.next_f64());
        ((-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()) as f32
    }

    /// `n` normals times `scale`.
    pub(crate) fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| scale * self.normal()).collect()
    }
}

/// Exact (erf) GELU in f64.
pub(crate) fn gelu_f64(z: f64) -> f64 {
    0.5 * z * (1.0 + libm::erf(z / core::f64::consts::SQRT_2))
}
