//! [`ImageWriter`]: writes a header, then size-prefixed entries and their
//! extra payloads.

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use super::{MAX_ENTRY_SIZE, UNNAMED};
use crate::{ImageError, ImageKind, Result};

/// Writes a header and then entries to `W`.
pub struct ImageWriter<W: Write> {
    inner: W,
    path: PathBuf,
    index: usize,
    offset: u64,
}

impl<W: Write> ImageWriter<W> {
    /// Write the header of `kind` and return a writer for its entries.
    pub fn new(w: W, kind: ImageKind) -> Result<Self> {
        Self::new_named(w, kind, Path::new(UNNAMED))
    }

    /// Like [`ImageWriter::new`], naming `path` in errors.
    pub fn new_named(w: W, kind: ImageKind, path: &Path) -> Result<Self> {
        let mut me = ImageWriter {
            inner: w,
            path: path.to_path_buf(),
            index: 0,
            offset: 0,
        };
        me.put(&kind.header.to_bytes(), "write header")?;
        Ok(me)
    }

    /// Append one entry.
    pub fn entry<M: Message>(&mut self, m: &M) -> Result<()> {
        let len = m.encoded_len();
        if len > MAX_ENTRY_SIZE as usize {
            return Err(ImageError::EntryTooLarge {
                path: self.path.clone(),
                index: self.index,
                offset: self.offset,
                size: len as u64,
                max: MAX_ENTRY_SIZE,
            });
        }
        let mut buf = Vec::with_capacity(4 + len);
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        buf.extend_from_slice(&m.encode_to_vec());
        let op = format!("write entry {}", self.index);
        self.put(&buf, &op)?;
        self.index += 1;
        Ok(())
    }

    /// Append one entry followed by its raw extra payload.
    pub fn entry_with_extra<M: Message>(&mut self, m: &M, extra: &[u8]) -> Result<()> {
        self.entry(m)?;
        self.extra(extra)
    }

    /// Append raw bytes after the last entry (e.g. a ghost file body that runs
    /// to the end of the file).
    pub fn extra(&mut self, bytes: &[u8]) -> Result<()> {
        let op = format!(
            "write extra payload of entry {}",
            self.index.saturating_sub(1)
        );
        self.put(bytes, &op)
    }

    /// Number of entries written so far.
    pub fn entries_written(&self) -> usize {
        self.index
    }

    /// Flush and hand back the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        let path = self.path.clone();
        self.inner.flush().map_err(|source| ImageError::Io {
            path,
            op: "flush".into(),
            source,
        })?;
        Ok(self.inner)
    }

    fn put(&mut self, bytes: &[u8], op: &str) -> Result<()> {
        self.inner
            .write_all(bytes)
            .map_err(|source| ImageError::Io {
                path: self.path.clone(),
                op: op.to_string(),
                source,
            })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_image, encode_image};
    use super::*;
    use crate::pb;

    fn p() -> &'static Path {
        Path::new("/images/test.img")
    }

    fn pstree(pid: u32) -> pb::PstreeEntry {
        pb::PstreeEntry {
            pid,
            ppid: 0,
            pgid: pid,
            sid: pid,
            threads: vec![pid, pid + 1],
        }
    }

    #[test]
    fn entries_round_trip_through_writer_and_reader() {
        let entries = vec![pstree(1), pstree(10), pb::PstreeEntry::default()];
        let bytes = encode_image(ImageKind::PSTREE, &entries).unwrap();
        let back: Vec<pb::PstreeEntry> = decode_image(ImageKind::PSTREE, &bytes, p()).unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn empty_seccomp_image_matches_criu_bytes() {
        let bytes = encode_image(ImageKind::SECCOMP, &[pb::SeccompEntry::default()]).unwrap();
        assert_eq!(
            bytes,
            [0x19, 0x43, 0x56, 0x54, 0x49, 0x30, 0x41, 0x64, 0, 0, 0, 0]
        );
    }

    #[test]
    fn headers_match_criu_hexdumps() {
        let inv = encode_image::<pb::InventoryEntry>(ImageKind::INVENTORY, &[]).unwrap();
        assert_eq!(inv, 0x5831_3116u32.to_le_bytes());
        let ps = encode_image(ImageKind::PSTREE, &[pstree(1)]).unwrap();
        assert_eq!(&ps[..8], &[0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50]);
        let st = encode_image(ImageKind::STATS, &[pb::StatsEntry::default()]).unwrap();
        assert_eq!(&st[..8], &[0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57]);
    }

    #[test]
    fn an_entry_above_the_size_limit_is_refused_when_writing() {
        let huge = pb::SeccompEntry {
            seccomp_filters: vec![pb::SeccompFilter {
                filter: vec![0; MAX_ENTRY_SIZE as usize],
                prev: None,
                flags: None,
            }],
        };
        let mut w = ImageWriter::new(Vec::new(), ImageKind::SECCOMP).unwrap();
        let err = w.entry(&huge).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::EntryTooLarge {
                    index: 0,
                    offset: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            w.finish().unwrap().len(),
            8,
            "nothing but the header was written"
        );
    }
}
