//! The standard (non-compacted) XSAVE layout that `NT_X86_XSTATE` uses: where each state
//! component lives, as CPUID leaf 0xD reports it for this CPU.

/// Byte offset of the XSAVE header (`xstate_bv`, `xcomp_bv`).
pub const HEADER_OFFSET: usize = 512;
/// Byte offset of the software-reserved bytes in the legacy area.
pub const SW_BYTES_OFFSET: usize = 464;

/// Offset and size in bytes of XSAVE state component `index` (2 and above) in the
/// standard layout, or `None` when this CPU does not have it.
pub fn component(index: u32) -> Option<(usize, usize)> {
    if !(2..64).contains(&index) {
        return None;
    }
    let r = core::arch::x86_64::__cpuid_count(0xd, index);
    if r.eax == 0 {
        None
    } else {
        Some((r.ebx as usize, r.eax as usize))
    }
}

/// The user state components this CPU can save (CPUID 0xD.0 EDX:EAX).
pub fn supported_user_features() -> u64 {
    let r = core::arch::x86_64::__cpuid_count(0xd, 0);
    (u64::from(r.edx) << 32) | u64::from(r.eax)
}

/// The features the kernel enabled for user space (XCR0 restricted to user state), as
/// an `NT_X86_XSTATE` buffer from ptrace reports them: the kernel stores them in the first
/// word of the legacy area's software-reserved bytes (the convention GDB reads).
pub fn enabled_features_of(buf: &[u8]) -> Option<u64> {
    let word = buf.get(SW_BYTES_OFFSET..SW_BYTES_OFFSET + 8)?;
    let xcr0 = u64::from_le_bytes(word.try_into().ok()?);
    // x87 and SSE are always enabled; anything else means the word is not an XCR0.
    (xcr0 & 0b11 == 0b11).then_some(xcr0)
}
