//! Vectorisable `f32` special functions: branch-free, so that the kernels' loops vectorise.
//!
//! Every function is generic over `FMA`: `true` uses fused multiply-add (one rounding), `false`
//! plain multiply then add, for targets without FMA where `f32::mul_add` would be a slow libm call.

/// `a * b + c`.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Horner evaluation of `c[0] + c[1] w + ... + c[N - 1] w^(N - 1)`.
#[inline(always)]
fn horner<const FMA: bool, const N: usize>(c: &[f32; N], w: f32) -> f32 {
    let mut p = c[N - 1];
    let mut i = N - 1;
    while i > 0 {
        i -= 1;
        p = madd::<FMA>(p, w, c[i]);
    }
    p
}

// erf(a), a = |z|, in three pieces, each a Chebyshev interpolant (fitted in f64 against
// libm's `erf`/`erfc`, then rounded to f32) expanded about the middle of its interval:
//
// - a <  T1:       erf(a) = a + a * S(a^2 - S_MID)   (S ~ erf(a)/a - 1, degree 6)
// - T1 <= a < T2:  erf(a) = 1 - M(a - M_MID)         (M ~ erfc, degree 10)
// - T2 <= a < TOP: erf(a) = 1 - L(a - L_MID)         (L ~ erfc, degree 10)
// - a >= TOP:      erf(a) = 1 (erfc(3.925) < half an ulp of 1)
//
// Writing the two upper pieces as 1 - erfc keeps their absolute error far below an ulp of
// erf, and the `a + a * S` form keeps the small piece's rounding error relative to erf's.
// All pieces are evaluated and the right one is selected per lane (no branches).
const ERF_T1: f32 = 0.921875;
const ERF_T2: f32 = 2.0;
const ERF_TOP: f32 = 3.925;
const ERF_S_MID: f32 = 0.424_926_76; // T1^2 / 2
const ERF_M_MID: f32 = 1.460_937_5; // (T1 + T2) / 2
const ERF_L_MID: f32 = 2.9625; // (T2 + TOP) / 2
#[allow(clippy::excessive_precision)]
const ERF_S: [f32; 7] = [
    -0.012974859,
    -0.29331043,
    0.08364798,
    -0.019360995,
    0.0036976577,
    -0.0006008735,
    8.387591e-5,
];
#[allow(clippy::excessive_precision)]
const ERF_M: [f32; 11] = [
    0.03882115,
    -0.13351303,
    0.1950542,
    -0.14547074,
    0.041243542,
    0.019547405,
    -0.020515233,
    0.0038473275,
    0.0029809563,
    -0.00150365,
    -7.166351e-5,
];
#[allow(clippy::excessive_precision)]
const ERF_L: [f32; 11] = [
    2.7943715e-5,
    -0.00017406729,
    0.0005158923,
    -0.00096253806,
    0.0012515576,
    -0.001184324,
    0.000844361,
    -0.00045721274,
    0.00014254815,
    2.1343494e-5,
    -2.5542615e-5,
];

/// The error function: max error 0.81 ulp with FMA, 0.89 without; NaN in, NaN out.
#[inline(always)]
pub(crate) fn erf<const FMA: bool>(z: f32) -> f32 {
    let a = z.abs();
    let small = madd::<FMA>(
        a,
        horner::<FMA, 7>(&ERF_S, madd::<FMA>(a, a, -ERF_S_MID)),
        a,
    );
    let mid = 1.0 - horner::<FMA, 11>(&ERF_M, a - ERF_M_MID);
    let large = 1.0 - horner::<FMA, 11>(&ERF_L, a - ERF_L_MID);
    // Selects ordered so that a NaN `a` (every comparison false) keeps `large`, itself NaN.
    let mut r = large;
    r = if a < ERF_T2 { mid } else { r };
    r = if a < ERF_T1 { small } else { r };
    r = if a >= ERF_TOP { 1.0 } else { r };
    r.copysign(z)
}

/// `exp(x)`, Cephes' `expf` polynomial with a branch-free range reduction (about 1 ulp).
///
/// The argument is clamped to `[-87, 88]`, so the result never underflows to a subnormal
/// or overflows: exp(-87) = 1.6e-38 stands in for anything smaller.
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer, left in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = madd::<FMA>(x, core::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    // f = x - n ln 2, with ln 2 split in two for accuracy.
    let f = madd::<FMA>(n, -0.693_359_4, x);
    let f = madd::<FMA>(n, 2.121_944_4e-4, f);
    let mut p = 1.987_569_1e-4;
    p = madd::<FMA>(p, f, 1.398_199_9e-3);
    p = madd::<FMA>(p, f, 8.333_452e-3);
    p = madd::<FMA>(p, f, 4.166_579_6e-2);
    p = madd::<FMA>(p, f, 1.666_666_5e-1);
    p = madd::<FMA>(p, f, 0.5); // 5.0000001201e-1 in Cephes, 0.5 in f32
    let y = madd::<FMA>(p, f * f, f) + 1.0;
    // 2^n from the integer in t's mantissa.
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    y * f32::from_bits(((k + 127) << 23) as u32)
}

/// `gelu(z) = 0.5 z (1 + erf(z / sqrt 2))`, evaluated in the same order as Burn's flex
/// `gelu`, so that the two agree to the bit whenever the two `erf`s do.
#[inline(always)]
pub(crate) fn gelu<const FMA: bool>(z: f32) -> f32 {
    0.5 * z * (1.0 + erf::<FMA>(z / core::f32::consts::SQRT_2))
}

/// `gelu'(z) = Phi(z) + z phi(z)`, with `Phi(z) = 0.5 (1 + erf(z / sqrt 2))` and
/// `phi(z) = exp(-z^2 / 2) / sqrt(2 pi)`.
#[inline(always)]
pub(crate) fn gelu_grad<const FMA: bool>(z: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf::<FMA>(z / core::f32::consts::SQRT_2));
    let pdf = INV_SQRT_2PI * exp::<FMA>(-0.5 * z * z);
    madd::<FMA>(z, pdf, cdf)
}
