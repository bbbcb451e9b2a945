//! AVX-512 VBMI's two-table byte permute (`vpermi2b`): 64 look-ups into a
//! 128-byte table in one instruction, which product-quantization scoring
//! spends most of its time on.
//!
//! `pulp` (which enables the other x86 levels for the workspace without
//! `unsafe` in its callers) detects VBMI but wraps none of its
//! instructions, so the token and the one intrinsic live here, beside the
//! workspace's other `unsafe` code. [`Vbmi::vectorize`] runs a body with
//! x86-64-v4 and VBMI enabled, so that [`Vbmi::permute_bytes`] and
//! `pulp`'s AVX-512 wrappers are inlined into it as single instructions.

use core::arch::x86_64::{__m512i, _mm512_permutex2var_epi8};

/// Proof that this CPU runs x86-64-v4 (AVX-512 F, BW, CD, DQ, VL) and
/// AVX-512 VBMI: only [`Vbmi::try_new`] makes one, after checking both.
#[derive(Debug, Clone, Copy)]
pub struct Vbmi {
    v4: pulp::x86::V4,
}

impl Vbmi {
    /// The token if this CPU has x86-64-v4 and AVX-512 VBMI, else `None`.
    pub fn try_new() -> Option<Self> {
        let v4 = pulp::x86::V4::try_new()?;
        std::arch::is_x86_feature_detected!("avx512vbmi").then_some(Self { v4 })
    }

    /// The x86-64-v4 token for `pulp`'s AVX-512 wrappers.
    #[inline(always)]
    pub fn v4(self) -> pulp::x86::V4 {
        self.v4
    }

    /// Run `body` with x86-64-v4 and VBMI enabled. `body.call` should be
    /// `#[inline(always)]`: the features apply to what is inlined here.
    #[inline(always)]
    pub fn vectorize<F: pulp::NullaryFnOnce>(self, body: F) -> F::Output {
        // SAFETY: `self` exists only if `try_new` found every feature
        // `run_with_vbmi` enables on this CPU.
        unsafe { run_with_vbmi(body) }
    }

    /// Byte `i` of the result is byte `idx[i] & 127` of the 128-byte table
    /// `low ++ high` (`vpermi2b`; bit 7 and above of each index are
    /// ignored).
    #[inline(always)]
    pub fn permute_bytes(self, low: __m512i, idx: __m512i, high: __m512i) -> __m512i {
        // SAFETY: the token proves the CPU has AVX-512 VBMI (and F, which
        // provides the register type); the intrinsic reads only its
        // register operands.
        unsafe { _mm512_permutex2var_epi8(low, idx, high) }
    }
}

/// `body.call()` compiled with x86-64-v4 and VBMI enabled.
#[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx512vbmi")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn run_with_vbmi<F: pulp::NullaryFnOnce>(body: F) -> F::Output {
    body.call()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every index picks the byte of the 128-byte table it names; bit 7 is
    /// ignored.
    #[test]
    fn permute_picks_table_bytes() {
        let Some(vbmi) = Vbmi::try_new() else {
            eprintln!("no AVX-512 VBMI on this CPU: nothing to check");
            return;
        };
        let table: Vec<u8> = (0..128u32).map(|i| (i * 37 + 11) as u8).collect();
        let low: [u8; 64] = table[..64].try_into().unwrap();
        let high: [u8; 64] = table[64..].try_into().unwrap();
        for start in [0u32, 64, 128, 192] {
            let idx: [u8; 64] = std::array::from_fn(|i| (start + i as u32) as u8);
            struct Body([u8; 64], [u8; 64], [u8; 64], Vbmi);
            impl pulp::NullaryFnOnce for Body {
                type Output = [u8; 64];
                #[inline(always)]
                fn call(self) -> [u8; 64] {
                    let Body(low, idx, high, vbmi) = self;
                    pulp::cast(vbmi.permute_bytes(
                        pulp::cast(low),
                        pulp::cast(idx),
                        pulp::cast(high),
                    ))
                }
            }
            let got = vbmi.vectorize(Body(low, idx, high, vbmi));
            for (g, i) in got.iter().zip(idx) {
                assert_eq!(*g, table[usize::from(i & 127)]);
            }
        }
    }
}
