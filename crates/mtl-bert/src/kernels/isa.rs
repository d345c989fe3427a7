//! Which instruction-set variant of a kernel runs, chosen at run time on x86-64.
//!
//! Kernels are straight-line code that LLVM vectorises; [`isa_variants!`] compiles one three
//! times (`avx512f`, `avx2 + fma`, baseline) and picks the variant with [`Isa`], so no
//! `RUSTFLAGS` are needed and tests can force each variant the CPU runs.

/// Which compiled variant of the kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// x86-64 AVX-512F (with FMA).
    Avx512,
    /// x86-64 AVX2 + FMA.
    Avx2Fma,
    /// Whatever the target's baseline is; FMA only where the baseline has it (aarch64).
    Baseline,
}

impl Isa {
    /// The best variant this CPU runs.
    pub(crate) fn detect() -> Self {
        if Isa::Avx512.is_supported() {
            Isa::Avx512
        } else if Isa::Avx2Fma.is_supported() {
            Isa::Avx2Fma
        } else {
            Isa::Baseline
        }
    }

    /// Whether this CPU runs the variant.
    pub(crate) fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            Isa::Baseline => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every variant this CPU runs, best first (the tests run each one).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        [Isa::Avx512, Isa::Avx2Fma, Isa::Baseline]
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }
}

/// Whether the baseline variant may use fused multiply-add (always on aarch64).
pub(crate) const BASELINE_FMA: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));

/// Defines `fn $name(isa: $crate::kernels::isa::Isa, args..)` that runs `$generic::<FMA>(args..)` compiled for `isa`.
///
/// The caller must have checked `isa.is_supported()`.
macro_rules! isa_variants {
    ($name:ident, $generic:ident, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        #[inline]
        fn $name(isa: $crate::kernels::isa::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { $generic::<true>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { $generic::<true>($($arg),*) }
                match isa {
                    // SAFETY: the public `*_with` functions assert `isa.is_supported()`.
                    $crate::kernels::isa::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::kernels::isa::Isa::Avx2Fma => return unsafe { avx2($($arg),*) },
                    $crate::kernels::isa::Isa::Baseline => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa;
            $generic::<{ $crate::kernels::isa::BASELINE_FMA }>($($arg),*)
        }
    };
}

pub(crate) use isa_variants;
