//! x86-64 register state in CRIU's image form: general-purpose registers and the XSAVE
//! area (`NT_X86_XSTATE`, standard layout) split into the fields of
//! `user_x86_fpregs_entry` and `user_x86_xsave_entry`, and back.

use stasis_images::pb;
use stasis_sys::ptrace::UserRegs;
use stasis_sys::xsave;

/// XSAVE components the image format has fields for: x87, SSE, AVX (YMM_Hi128), MPX
/// (BNDREGS, BNDCSR), AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM) and PKRU.
pub const STORABLE_FEATURES: u64 = 0b10_1111_1111;

/// Why an XSAVE area cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum XsaveError {
    #[error("XSAVE area of {len} bytes is shorter than the {need} bytes its components need")]
    Short { len: usize, need: usize },
    #[error("live XSAVE state components {bits:#x} have no field in CRIU's image format (xstate_bv {bv:#x})")]
    Unstorable { bits: u64, bv: u64 },
    #[error("the image's XSAVE component {index} ({name}) has {got} bytes, this CPU's has {want}")]
    Size {
        index: u32,
        name: &'static str,
        got: usize,
        want: usize,
    },
    #[error("the image uses XSAVE components {missing:#x} that this CPU or kernel does not enable (enabled: {enabled:#x})")]
    NotEnabled { missing: u64, enabled: u64 },
}

/// General-purpose registers to their image form.
pub fn regs_to_image(r: &UserRegs) -> pb::UserX86RegsEntry {
    pb::UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.rbp,
        bx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.rax,
        cx: r.rcx,
        dx: r.rdx,
        si: r.rsi,
        di: r.rdi,
        orig_ax: r.orig_rax,
        ip: r.rip,
        cs: r.cs,
        flags: r.eflags,
        sp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(pb::UserX86RegsMode::Native as i32),
    }
}

/// Image registers back into a `user_regs_struct`.
pub fn regs_from_image(e: &pb::UserX86RegsEntry, mut r: UserRegs) -> UserRegs {
    r.r15 = e.r15;
    r.r14 = e.r14;
    r.r13 = e.r13;
    r.r12 = e.r12;
    r.rbp = e.bp;
    r.rbx = e.bx;
    r.r11 = e.r11;
    r.r10 = e.r10;
    r.r9 = e.r9;
    r.r8 = e.r8;
    r.rax = e.ax;
    r.rcx = e.cx;
    r.rdx = e.dx;
    r.rsi = e.si;
    r.rdi = e.di;
    r.orig_rax = e.orig_ax;
    r.rip = e.ip;
    r.cs = e.cs;
    r.eflags = e.flags;
    r.rsp = e.sp;
    r.ss = e.ss;
    r.fs_base = e.fs_base;
    r.gs_base = e.gs_base;
    r.ds = e.ds;
    r.es = e.es;
    r.fs = e.fs;
    r.gs = e.gs;
    r
}

fn u16_at(b: &[u8], o: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[o], b[o + 1]]))
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
fn words32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}
fn words64(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}
fn put32(b: &mut [u8], o: usize, w: &[u32]) {
    for (i, v) in w.iter().enumerate() {
        b[o + 4 * i..o + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
}
fn put64(b: &mut [u8], o: usize, w: &[u64]) {
    for (i, v) in w.iter().enumerate() {
        b[o + 8 * i..o + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// (component index, name, bytes the image stores of it).
const COMPONENTS: [(u32, &str, usize); 7] = [
    (2, "YMM_Hi128", 256),
    (3, "BNDREGS", 64),
    (4, "BNDCSR", 16),
    (5, "opmask", 64),
    (6, "ZMM_Hi256", 512),
    (7, "Hi16_ZMM", 1024),
    (9, "PKRU", 8),
];

fn component_slot(x: &mut pb::UserX86XsaveEntry, index: u32) -> Slot<'_> {
    match index {
        2 => Slot::W32(&mut x.ymmh_space),
        3 => Slot::W64(&mut x.bndreg_state),
        4 => Slot::W64(&mut x.bndcsr_state),
        5 => Slot::W64(&mut x.opmask_reg),
        6 => Slot::W64(&mut x.zmm_upper),
        7 => Slot::W64(&mut x.hi16_zmm),
        _ => Slot::W32(&mut x.pkru),
    }
}

enum Slot<'a> {
    W32(&'a mut Vec<u32>),
    W64(&'a mut Vec<u64>),
}

impl Slot<'_> {
    /// The component's bytes as stored in the image.
    fn bytes(&self) -> Vec<u8> {
        match self {
            Slot::W32(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
            Slot::W64(v) => v.iter().flat_map(|w| w.to_le_bytes()).collect(),
        }
    }
}

/// Splits an `NT_X86_XSTATE` buffer into CRIU's fpregs entry (with its xsave part).
pub fn xsave_to_image(buf: &[u8]) -> Result<pb::UserX86FpregsEntry, XsaveError> {
    let need = xsave::HEADER_OFFSET + 64;
    if buf.len() < need {
        return Err(XsaveError::Short {
            len: buf.len(),
            need,
        });
    }
    let bv = u64_at(buf, xsave::HEADER_OFFSET);
    let unstorable = bv & !STORABLE_FEATURES;
    if unstorable != 0 {
        return Err(XsaveError::Unstorable {
            bits: unstorable,
            bv,
        });
    }
    let enabled = xsave::enabled_features_of(buf).unwrap_or(bv);
    let mut x = pb::UserX86XsaveEntry {
        xstate_bv: bv,
        ..Default::default()
    };
    for (index, _, stored) in COMPONENTS {
        if enabled & (1 << index) == 0 {
            continue;
        }
        let Some((off, _)) = xsave::component(index) else {
            continue;
        };
        if buf.len() < off + stored {
            return Err(XsaveError::Short {
                len: buf.len(),
                need: off + stored,
            });
        }
        let bytes = &buf[off..off + stored];
        match component_slot(&mut x, index) {
            Slot::W32(v) => *v = words32(bytes),
            Slot::W64(v) => *v = words64(bytes),
        }
    }
    Ok(pb::UserX86FpregsEntry {
        cwd: u16_at(buf, 0),
        swd: u16_at(buf, 2),
        twd: u16_at(buf, 4),
        fop: u16_at(buf, 6),
        rip: u64_at(buf, 8),
        rdp: u64_at(buf, 16),
        mxcsr: u32_at(buf, 24),
        mxcsr_mask: u32_at(buf, 28),
        st_space: words32(&buf[32..160]),
        xmm_space: words32(&buf[160..416]),
        padding: words32(&buf[416..512]),
        xsave: Some(x),
    })
}

/// Writes the image's FPU/XSAVE state into `buf`, an `NT_X86_XSTATE` buffer of the
/// restoring task (which supplies the right size and this host's enabled features).
pub fn xsave_from_image(fp: &pb::UserX86FpregsEntry, buf: &mut [u8]) -> Result<(), XsaveError> {
    let need = xsave::HEADER_OFFSET + 64;
    if buf.len() < need {
        return Err(XsaveError::Short {
            len: buf.len(),
            need,
        });
    }
    let enabled = xsave::enabled_features_of(buf).unwrap_or(0b11);
    let len_ok = |v: usize, want: usize, index: u32, name: &'static str| {
        if v == want {
            Ok(())
        } else {
            Err(XsaveError::Size {
                index,
                name,
                got: v,
                want,
            })
        }
    };
    len_ok(fp.st_space.len() * 4, 128, 0, "x87 registers")?;
    len_ok(fp.xmm_space.len() * 4, 256, 1, "SSE registers")?;
    buf[0..2].copy_from_slice(&(fp.cwd as u16).to_le_bytes());
    buf[2..4].copy_from_slice(&(fp.swd as u16).to_le_bytes());
    buf[4..6].copy_from_slice(&(fp.twd as u16).to_le_bytes());
    buf[6..8].copy_from_slice(&(fp.fop as u16).to_le_bytes());
    put64(buf, 8, &[fp.rip, fp.rdp]);
    put32(buf, 24, &[fp.mxcsr, fp.mxcsr_mask]);
    put32(buf, 32, &fp.st_space);
    put32(buf, 160, &fp.xmm_space);
    let bv = match &fp.xsave {
        Some(x) => x.xstate_bv,
        None => 0b11,
    };
    let missing = bv & !enabled;
    if missing != 0 {
        return Err(XsaveError::NotEnabled { missing, enabled });
    }
    // Header: xstate_bv, then xcomp_bv = 0 (standard format) and reserved zeros.
    buf[xsave::HEADER_OFFSET..xsave::HEADER_OFFSET + 64].fill(0);
    put64(buf, xsave::HEADER_OFFSET, &[bv]);
    if let Some(x) = &fp.xsave {
        let mut x = x.clone();
        for (index, name, stored) in COMPONENTS {
            let bytes = component_slot(&mut x, index).bytes();
            if bytes.is_empty() || bv & (1 << index) == 0 {
                continue;
            }
            len_ok(bytes.len(), stored, index, name)?;
            let (off, _) = xsave::component(index).ok_or(XsaveError::NotEnabled {
                missing: 1 << index,
                enabled,
            })?;
            let dst = buf.get_mut(off..off + stored).ok_or(XsaveError::Short {
                len: 0,
                need: off + stored,
            })?;
            dst.copy_from_slice(&bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_xstate() -> Vec<u8> {
        // A realistic buffer: legacy area, header, and this CPU's components.
        let size = core::arch::x86_64::__cpuid_count(0xd, 0).ebx as usize;
        let mut buf = vec![0u8; size.max(576)];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let enabled = xsave::supported_user_features() & STORABLE_FEATURES;
        buf[xsave::SW_BYTES_OFFSET..xsave::SW_BYTES_OFFSET + 8]
            .copy_from_slice(&(enabled | 0b11).to_le_bytes());
        buf[xsave::HEADER_OFFSET..xsave::HEADER_OFFSET + 64].fill(0);
        buf[xsave::HEADER_OFFSET..xsave::HEADER_OFFSET + 8].copy_from_slice(&enabled.to_le_bytes());
        buf
    }

    #[test]
    fn xsave_survives_the_round_trip_through_the_image() {
        let orig = own_xstate();
        let img = xsave_to_image(&orig).unwrap();
        let mut back = own_xstate();
        // Clear the registers, keep the kernel's word of enabled features.
        back[..xsave::SW_BYTES_OFFSET].fill(0);

        for (index, _, stored) in COMPONENTS {
            if let Some((off, _)) = xsave::component(index) {
                if off + stored <= back.len() {
                    back[off..off + stored].fill(0);
                }
            }
        }
        xsave_from_image(&img, &mut back).unwrap();
        assert_eq!(&orig[..416], &back[..416], "legacy registers");
        for (index, _, stored) in COMPONENTS {
            if let Some((off, _)) = xsave::component(index) {
                if orig.len() >= off + stored
                    && img.xsave.as_ref().unwrap().xstate_bv & (1 << index) != 0
                {
                    assert_eq!(
                        &orig[off..off + stored],
                        &back[off..off + stored],
                        "component {index}"
                    );
                }
            }
        }
    }

    #[test]
    fn state_without_an_image_field_is_refused() {
        let mut buf = own_xstate();
        buf[xsave::HEADER_OFFSET..xsave::HEADER_OFFSET + 8]
            .copy_from_slice(&(1u64 << 17 | 3).to_le_bytes());
        let err = xsave_to_image(&buf).unwrap_err();
        assert!(err.to_string().contains("0x20000"), "{err}");
    }
}
