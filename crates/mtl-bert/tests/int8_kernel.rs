//! `MTL_INT8_KERNEL`: forcing a slower int8 GEMM kernel than the CPU's best, end to end.
//!
//! One test in its own process (this file), as it sets an environment variable that every
//! int8 load reads.

#![cfg(feature = "flex")]

mod common;

use common::{minilm_dir, tiny_dir};
use mtl_bert::burn::prelude::Device;
use mtl_bert::{EncodeOptions, INT8_KERNEL_ENV, Precision, SentenceEncoder};

fn texts() -> Vec<String> {
    [
        "the quick brown fox jumps over the lazy dog",
        "markets rally as the referee blows the whistle before halftime",
        "!",
        "",
        "Ünïcödé çafé ☕",
    ]
    .map(String::from)
    .to_vec()
}

/// The int8 embeddings of [`texts`] with whatever kernel the environment names, and the
/// precision's description.
fn embed(dir: &std::path::Path) -> mtl_bert::Result<(Vec<f32>, String)> {
    let encoder = SentenceEncoder::load_with_precision(dir, &Device::flex(), Precision::Int8)?;
    let out = encoder.encode(&texts(), &EncodeOptions::default())?;
    Ok((out.values, Precision::Int8.describe()))
}

fn set(value: Option<&str>) {
    // SAFETY: this test binary runs one test, on one thread, and nothing else reads the
    // environment concurrently.
    unsafe {
        match value {
            Some(v) => std::env::set_var(INT8_KERNEL_ENV, v),
            None => std::env::remove_var(INT8_KERNEL_ENV),
        }
    }
}

#[test]
fn the_environment_forces_a_kernel_and_bad_names_are_errors() {
    for dir in [tiny_dir(), minilm_dir()] {
        set(None);
        let (best, described) = embed(&dir).unwrap();
        assert!(best.iter().all(|v| v.is_finite()));
        let fp32 = SentenceEncoder::load(&dir, &Device::flex())
            .unwrap()
            .encode(&texts(), &EncodeOptions::default())
            .unwrap();

        // Every kernel this CPU runs gives the exact integer sums of the same 8-bit weights and
        // activations: the same embeddings to the bit as the best kernel's.
        let mut forced = vec!["generic"];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") {
                forced.push("avx2");
            }
            if has!("avx512f") && has!("avx512bw") {
                forced.push("avx512bw");
                if has!("avx512vnni") {
                    forced.push("avx512-vnni");
                }
            }
        }
        for name in forced {
            set(Some(name));
            let (values, forced_described) = embed(&dir).unwrap();
            assert_eq!(forced_described, format!("int8 ({name})"));
            assert_eq!(
                values,
                best,
                "{name} against {described}, {}",
                dir.display()
            );
            for (i, (a, f)) in values.chunks_exact(fp32.dim).zip(fp32.rows()).enumerate() {
                let cosine = mtl_bert::cosine_matrix(&[a, f])[0][1];
                assert!(
                    cosine >= 0.98,
                    "{name}, {}: text {i}: {cosine}",
                    dir.display()
                );
            }
        }

        set(Some("avx9000"));
        let err = embed(&dir).unwrap_err().to_string();
        assert!(
            err.contains("MTL_INT8_KERNEL=\"avx9000\" is not an int8 kernel")
                && err.contains("generic"),
            "{err}"
        );
    }
    set(None);
}
