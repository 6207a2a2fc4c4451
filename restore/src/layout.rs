//! Address-space layout helpers: the kernel's special mappings of a task, and free
//! ranges that avoid both the current and the dumped layout.

use crate::{RestoreError, Result};

/// `[start, end)` ranges of the kernel's special mappings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Specials {
    pub vvar: Option<(u64, u64)>,
    pub vvar_vclock: Option<(u64, u64)>,
    pub vdso: Option<(u64, u64)>,
}

/// All mappings of a task as `[start, end)` with their names.
pub fn mappings(pid: i32) -> Result<Vec<(u64, u64, String)>> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Io {
        path: path.clone().into(),
        source,
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        let name = line.splitn(6, ' ').nth(5).unwrap_or("").trim().to_string();
        let parsed = range.split_once('-').and_then(|(s, e)| {
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        });
        let (s, e) = parsed.ok_or_else(|| RestoreError::Proc {
            path: path.clone(),
            what: format!("cannot parse {line:?}"),
        })?;
        out.push((s, e, name));
    }
    Ok(out)
}

/// The special mappings of a task.
pub fn special_mappings(pid: i32) -> Result<Specials> {
    let mut s = Specials::default();
    for (a, b, name) in mappings(pid)? {
        match name.as_str() {
            "[vvar]" => s.vvar = Some((a, b)),
            "[vvar_vclock]" => s.vvar_vclock = Some((a, b)),
            "[vdso]" => s.vdso = Some((a, b)),
            _ => {}
        }
    }
    Ok(s)
}

/// The lowest address at or above `from` where `len` bytes overlap none of `busy`.
pub fn free_range(busy: &[(u64, u64)], from: u64, len: u64) -> Option<u64> {
    let mut busy = busy.to_vec();
    busy.sort_unstable();
    let mut at = from;
    for (s, e) in busy {
        if e <= at {
            continue;
        }
        if s >= at + len {
            break;
        }
        at = at.max(e);
    }
    (at + len <= 0x7fff_f000_0000).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_range_skips_every_busy_interval() {
        let busy = [(0x2000, 0x5000), (0x1000, 0x1800), (0x6000, 0x7000)];
        assert_eq!(free_range(&busy, 0x1000, 0x1000), Some(0x5000));
        assert_eq!(free_range(&busy, 0x1000, 0x800), Some(0x1800));
        assert_eq!(free_range(&busy, 0x1000, 0x2000), Some(0x7000));
    }
}
