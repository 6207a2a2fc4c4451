//! CPU identification instructions (`cpuid`, `xgetbv`) wrapped safely.
//!
//! These are the only two instructions `stasis-cpu` needs to describe the host: `cpuid`
//! for the feature leaves and `xgetbv(0)` for XCR0, the set of register states the
//! kernel enabled for XSAVE. Both are unprivileged and side-effect free.

/// The four registers one `cpuid` invocation returns, in the order `[eax, ebx, ecx, edx]`.
pub type CpuidRegs = [u32; 4];

/// Executes `cpuid` with `eax = leaf` and `ecx = subleaf`.
///
/// A leaf above the processor's maximum returns whatever the processor returns for it
/// (Intel repeats the highest basic leaf); callers check the maximum leaf (leaf 0 and
/// 0x8000_0000) first, as HotSpot does.
#[cfg(target_arch = "x86_64")]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidRegs {
    // `__cpuid_count` is a safe function on x86_64 in current Rust: every x86_64
    // processor implements `cpuid`, so there is no precondition to uphold.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// `cpuid` is x86-only; other architectures report all-zero leaves.
#[cfg(not(target_arch = "x86_64"))]
pub fn cpuid(_leaf: u32, _subleaf: u32) -> CpuidRegs {
    [0; 4]
}

/// CPUID.1:ECX bit 27: the OS has set CR4.OSXSAVE, so `xgetbv` is enabled.
const CPUID1_ECX_OSXSAVE: u32 = 1 << 27;

/// Reads extended control register `xcr` with `xgetbv`, or `None` when the OS has not
/// enabled XSAVE (CPUID.1:ECX.OSXSAVE clear), in which case `xgetbv` would fault.
///
/// Only XCR0 (`xcr = 0`) is architecturally always readable once OSXSAVE is set;
/// XCR1 needs CPUID.(EAX=0xD,ECX=1):EAX bit 2, which this wrapper also checks.
#[cfg(target_arch = "x86_64")]
pub fn xgetbv(xcr: u32) -> Option<u64> {
    if cpuid(1, 0)[2] & CPUID1_ECX_OSXSAVE == 0 {
        return None;
    }
    match xcr {
        0 => {}
        1 if cpuid(0, 0)[0] >= 0xd && cpuid(0xd, 1)[0] & (1 << 2) != 0 => {}
        _ => return None,
    }
    // SAFETY: `_xgetbv` is `unsafe` only because it needs the `xsave` target feature
    // at run time: the instruction raises #UD unless CR4.OSXSAVE is set, and #GP for an
    // XCR the processor does not implement. CPUID.1:ECX.OSXSAVE mirrors CR4.OSXSAVE and
    // was checked above, and `xcr` is 0 (always implemented) or 1 after checking
    // CPUID.(0xD,1):EAX[2] (XGETBV with ECX=1 supported). The instruction only reads a
    // register into EDX:EAX; it touches no memory.
    Some(unsafe { xgetbv_enabled(xcr) })
}

/// The instruction itself, compiled with the `xsave` target feature so the intrinsic is
/// available.
///
/// # Safety
/// The caller must have checked that CR4.OSXSAVE is set (CPUID.1:ECX[27]) and that the
/// processor implements `xcr`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv_enabled(xcr: u32) -> u64 {
    // SAFETY: forwarded from this function's contract: OSXSAVE is set and `xcr` exists.
    unsafe { core::arch::x86_64::_xgetbv(xcr) }
}

/// `xgetbv` is x86-only; other architectures have no XCR0.
#[cfg(not(target_arch = "x86_64"))]
pub fn xgetbv(_xcr: u32) -> Option<u64> {
    None
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn leaf_zero_names_a_known_vendor_and_a_maximum_leaf() {
        let r = cpuid(0, 0);
        assert!(r[0] >= 1, "maximum basic leaf {:#x}", r[0]);
        let mut vendor = Vec::new();
        for reg in [r[1], r[3], r[2]] {
            vendor.extend_from_slice(&reg.to_le_bytes());
        }
        assert_eq!(vendor.len(), 12);
    }

    #[test]
    fn xcr0_enables_x87_and_sse_state_on_a_linux_x86_64_host() {
        let xcr0 = xgetbv(0).expect("Linux enables OSXSAVE on every XSAVE-capable CPU");
        assert_eq!(xcr0 & 0b11, 0b11, "XCR0 {xcr0:#x}");
    }

    #[test]
    fn xgetbv_refuses_an_unimplemented_register() {
        assert_eq!(xgetbv(7), None);
    }
}
