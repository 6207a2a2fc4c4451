//! [`ImageReader`]: checks a header, then reads size-prefixed entries and
//! their extra payloads, bounded by [`MAX_ENTRY_SIZE`] and the file length.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use prost::Message;

use super::MAX_ENTRY_SIZE;
use crate::{ImageError, ImageKind, Result};

/// Checks the header and then reads entries from `R`.
pub struct ImageReader<R: Read> {
    inner: R,
    path: PathBuf,
    file_len: Option<u64>,
    offset: u64,
    index: usize,
    buf: Vec<u8>,
}

impl<R: Read> ImageReader<R> {
    /// Read and check the header of `kind`. `path_for_errors` names the file
    /// in errors; `file_len`, when known, bounds every entry by what is left.
    pub fn new(
        r: R,
        kind: ImageKind,
        path_for_errors: &Path,
        file_len: Option<u64>,
    ) -> Result<Self> {
        let mut me = ImageReader {
            inner: r,
            path: path_for_errors.to_path_buf(),
            file_len,
            offset: 0,
            index: 0,
            buf: Vec::new(),
        };
        let (first, second) = kind.header.words();
        me.expect_word(first)?;
        if let Some(second) = second {
            me.expect_word(second)?;
        }
        Ok(me)
    }

    /// Read a header of any known kind and report which it is.
    pub fn detect(
        r: R,
        path_for_errors: &Path,
        file_len: Option<u64>,
    ) -> Result<(ImageKind, Self)> {
        let mut me = ImageReader {
            inner: r,
            path: path_for_errors.to_path_buf(),
            file_len,
            offset: 0,
            index: 0,
            buf: Vec::new(),
        };
        let first = me.word("header")?;
        let second = match first {
            crate::magic::IMG_COMMON | crate::magic::IMG_SERVICE => Some(me.word("header")?),
            _ => None,
        };
        match ImageKind::from_header(first, second) {
            Some(kind) => Ok((kind, me)),
            None => Err(ImageError::BadMagic {
                path: me.path.clone(),
                expected: match first {
                    crate::magic::IMG_COMMON | crate::magic::IMG_SERVICE => first,
                    _ => crate::magic::IMG_COMMON,
                },
                found: second.unwrap_or(first),
            }),
        }
    }

    /// The next entry, or `None` at a clean end of file.
    #[allow(clippy::should_implement_trait)] // generic over M, so not an Iterator
    pub fn next<M: Message + Default>(&mut self) -> Result<Option<M>> {
        let start = self.offset;
        let index = self.index;
        if !self.next_payload()? {
            return Ok(None);
        }
        M::decode(self.buf.as_slice())
            .map(Some)
            .map_err(|source| ImageError::Decode {
                path: self.path.clone(),
                index,
                offset: start,
                message: std::any::type_name::<M>(),
                source,
            })
    }

    /// The raw protobuf bytes of the next entry, or `None` at a clean end of file.
    pub fn next_raw(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(if self.next_payload()? {
            Some(self.buf.clone())
        } else {
            None
        })
    }

    /// Read `len` bytes of extra payload that follow the last entry.
    pub fn read_extra(&mut self, len: usize) -> Result<Vec<u8>> {
        let what = format!("extra payload of entry {}", self.index.saturating_sub(1));
        let mut out = Vec::new();
        let start = self.offset;
        self.fill(&mut out, len as u64, &what, start)?;
        Ok(out)
    }

    /// Read everything up to the end of the file (e.g. a ghost file body),
    /// refusing more than `limit` bytes.
    pub fn read_to_end(&mut self, limit: u64) -> Result<Vec<u8>> {
        let start = self.offset;
        if let Some(left) = self.remaining() {
            if left > limit {
                return Err(self.too_large(start, left, limit));
            }
        }
        let mut out = Vec::new();
        let got = (&mut self.inner)
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|source| ImageError::Io {
                path: self.path.clone(),
                op: "read trailing payload".into(),
                source,
            })? as u64;
        self.offset += got;
        if got > limit {
            return Err(self.too_large(start, got, limit));
        }
        Ok(out)
    }

    /// Number of entries read so far.
    pub fn entries_read(&self) -> usize {
        self.index
    }

    /// Byte offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file name used in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hand back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn too_large(&self, offset: u64, size: u64, limit: u64) -> ImageError {
        ImageError::Invalid {
            path: self.path.clone(),
            detail: format!("trailing payload at byte offset {offset} is {size} bytes, above the limit of {limit}"),
        }
    }

    fn remaining(&self) -> Option<u64> {
        self.file_len.map(|l| l.saturating_sub(self.offset))
    }

    /// Load the next entry's payload into `self.buf`; false at clean EOF.
    fn next_payload(&mut self) -> Result<bool> {
        let index = self.index;
        let start = self.offset;
        let mut word = Vec::with_capacity(4);
        let got = self.read_up_to(&mut word, 4, &format!("size of entry {index}"))?;
        if got == 0 {
            return Ok(false);
        }
        if got < 4 {
            return Err(ImageError::Truncated {
                path: self.path.clone(),
                what: format!("size of entry {index}"),
                offset: start,
                needed: 4,
                available: got,
            });
        }
        let size = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if size > MAX_ENTRY_SIZE {
            return Err(ImageError::EntryTooLarge {
                path: self.path.clone(),
                index,
                offset: start,
                size: size.into(),
                max: MAX_ENTRY_SIZE,
            });
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let res = self.fill(&mut buf, size.into(), &format!("entry {index}"), start);
        self.buf = buf;
        res?;
        self.index += 1;
        Ok(true)
    }

    /// Append exactly `len` bytes to `out`, or fail naming `what` (which
    /// began at byte `start`).
    fn fill(&mut self, out: &mut Vec<u8>, len: u64, what: &str, start: u64) -> Result<()> {
        if let Some(left) = self.remaining() {
            if len > left {
                return Err(ImageError::Truncated {
                    path: self.path.clone(),
                    what: what.to_string(),
                    offset: start,
                    needed: len,
                    available: left,
                });
            }
        }
        let got = self.read_up_to(out, len, what)?;
        if got < len {
            return Err(ImageError::Truncated {
                path: self.path.clone(),
                what: what.to_string(),
                offset: start,
                needed: len,
                available: got,
            });
        }
        Ok(())
    }

    /// Read up to `len` bytes (fewer only at EOF); the buffer grows with the
    /// data, never to the claimed size up front.
    fn read_up_to(&mut self, out: &mut Vec<u8>, len: u64, what: &str) -> Result<u64> {
        let mut total = 0u64;
        let mut taker = (&mut self.inner).take(len);
        loop {
            match taker.read_to_end(out) {
                Ok(n) => {
                    total += n as u64;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ImageError::Io {
                        path: self.path.clone(),
                        op: format!("read {what}"),
                        source,
                    })
                }
            }
        }
        self.offset += total;
        Ok(total)
    }

    fn word(&mut self, what: &str) -> Result<u32> {
        let start = self.offset;
        let mut w = Vec::with_capacity(4);
        let got = self.read_up_to(&mut w, 4, what)?;
        if got < 4 {
            return Err(ImageError::Truncated {
                path: self.path.clone(),
                what: what.to_string(),
                offset: start,
                needed: 4,
                available: got,
            });
        }
        Ok(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    }

    fn expect_word(&mut self, expected: u32) -> Result<()> {
        let found = self.word("header")?;
        if found != expected {
            return Err(ImageError::BadMagic {
                path: self.path.clone(),
                expected,
                found,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_image, encode_image, ImageWriter};
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
    fn wrong_magic_is_reported_in_hex() {
        let bytes = encode_image(ImageKind::PSTREE, &[pstree(1)]).unwrap();
        let err = decode_image::<pb::CoreEntry>(ImageKind::CORE, &bytes, p()).unwrap_err();
        assert!(matches!(
            err,
            ImageError::BadMagic {
                expected: 0x5505_3847,
                found: 0x5027_3030,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("/images/test.img")
                && msg.contains("0x55053847")
                && msg.contains("0x50273030"),
            "{msg}"
        );

        let err = decode_image::<pb::StatsEntry>(ImageKind::STATS, &bytes, p()).unwrap_err();
        assert!(matches!(
            err,
            ImageError::BadMagic {
                expected: 0x5510_5940,
                found: 0x5456_4319,
                ..
            }
        ));
    }

    #[test]
    fn truncated_header_is_an_error() {
        for len in 0..8 {
            let bytes = &ImageKind::PSTREE.header.to_bytes()[..len];
            let err = decode_image::<pb::PstreeEntry>(ImageKind::PSTREE, bytes, p()).unwrap_err();
            assert!(
                matches!(err, ImageError::Truncated { ref what, .. } if what == "header"),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn truncated_size_word_names_entry_and_offset() {
        let mut bytes = encode_image(ImageKind::PSTREE, &[pstree(1)]).unwrap();
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[1, 0]);
        let err = decode_image::<pb::PstreeEntry>(ImageKind::PSTREE, &bytes, p()).unwrap_err();
        match err {
            ImageError::Truncated {
                what,
                offset,
                needed: 4,
                available: 2,
                ..
            } => {
                assert_eq!(what, "size of entry 1");
                assert_eq!(offset, end);
            }
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn entry_longer_than_the_file_is_truncated_not_allocated() {
        let mut bytes = ImageKind::CORE.header.to_bytes();
        bytes.extend_from_slice(&(MAX_ENTRY_SIZE - 1).to_le_bytes());
        bytes.extend_from_slice(&[0x08, 0x01]);
        let err = decode_image::<pb::CoreEntry>(ImageKind::CORE, &bytes, p()).unwrap_err();
        assert!(
            matches!(err, ImageError::Truncated { ref what, offset: 8, available: 2, .. } if what == "entry 0"),
            "{err}"
        );
        // Without a known length (a pipe), the reader still only buffers what arrives.
        let mut r = ImageReader::new(&bytes[..], ImageKind::CORE, p(), None).unwrap();
        let err = r.next::<pb::CoreEntry>().unwrap_err();
        assert!(
            matches!(err, ImageError::Truncated { available: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn entry_above_the_size_limit_is_rejected() {
        let mut bytes = ImageKind::CORE.header.to_bytes();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_image::<pb::CoreEntry>(ImageKind::CORE, &bytes, p()).unwrap_err();
        assert!(matches!(
            err,
            ImageError::EntryTooLarge {
                index: 0,
                offset: 8,
                size: 0xffff_ffff,
                ..
            }
        ));
        assert!(
            err.to_string().contains("entry 0 at byte offset 8"),
            "{err}"
        );
    }

    #[test]
    fn undecodable_entry_names_file_index_and_offset() {
        let mut bytes = encode_image(ImageKind::PSTREE, &[pstree(1)]).unwrap();
        let off = bytes.len();
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&[0x0f, 0xff]); // wire type 7 is invalid
        let err = decode_image::<pb::PstreeEntry>(ImageKind::PSTREE, &bytes, p()).unwrap_err();
        match &err {
            ImageError::Decode {
                index: 1,
                offset,
                message,
                ..
            } => {
                assert_eq!(*offset, off as u64);
                assert!(message.ends_with("PstreeEntry"));
            }
            e => panic!("unexpected {e}"),
        }
        assert!(
            err.to_string().contains("/images/test.img: entry 1"),
            "{err}"
        );
    }

    #[test]
    fn extra_payloads_round_trip() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::PIPES_DATA).unwrap();
        let e = pb::PipeDataEntry {
            pipe_id: 7,
            bytes: 5,
            size: None,
        };
        w.entry_with_extra(&e, b"hello").unwrap();
        w.entry_with_extra(
            &pb::PipeDataEntry {
                pipe_id: 8,
                bytes: 0,
                size: Some(4096),
            },
            b"",
        )
        .unwrap();
        let bytes = w.finish().unwrap();

        let mut r = ImageReader::new(
            &bytes[..],
            ImageKind::PIPES_DATA,
            p(),
            Some(bytes.len() as u64),
        )
        .unwrap();
        let e0: pb::PipeDataEntry = r.next().unwrap().unwrap();
        assert_eq!(r.read_extra(e0.bytes as usize).unwrap(), b"hello");
        let e1: pb::PipeDataEntry = r.next().unwrap().unwrap();
        assert_eq!(e1.size, Some(4096));
        assert!(r.read_extra(0).unwrap().is_empty());
        assert!(r.next::<pb::PipeDataEntry>().unwrap().is_none());
    }

    #[test]
    fn extra_payload_beyond_the_file_is_truncated() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::PIPES_DATA).unwrap();
        w.entry_with_extra(
            &pb::PipeDataEntry {
                pipe_id: 1,
                bytes: 10,
                size: None,
            },
            b"abc",
        )
        .unwrap();
        let bytes = w.finish().unwrap();
        let mut r = ImageReader::new(
            &bytes[..],
            ImageKind::PIPES_DATA,
            p(),
            Some(bytes.len() as u64),
        )
        .unwrap();
        let e: pb::PipeDataEntry = r.next().unwrap().unwrap();
        let err = r.read_extra(e.bytes as usize).unwrap_err();
        assert!(
            matches!(err, ImageError::Truncated { ref what, needed: 10, available: 3, .. } if what == "extra payload of entry 0"),
            "{err}"
        );
    }

    #[test]
    fn trailing_payload_is_bounded() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::GHOST_FILE).unwrap();
        w.entry(&pb::GhostFileEntry {
            uid: 0,
            gid: 0,
            mode: 0o100644,
            ..Default::default()
        })
        .unwrap();
        w.extra(b"file body").unwrap();
        let bytes = w.finish().unwrap();
        let mut r = ImageReader::new(&bytes[..], ImageKind::GHOST_FILE, p(), None).unwrap();
        let _: pb::GhostFileEntry = r.next().unwrap().unwrap();
        assert_eq!(r.read_to_end(100).unwrap(), b"file body");
        let mut r = ImageReader::new(&bytes[..], ImageKind::GHOST_FILE, p(), None).unwrap();
        let _: pb::GhostFileEntry = r.next().unwrap().unwrap();
        assert!(r.read_to_end(4).is_err());
    }

    #[test]
    fn detect_identifies_the_kind_from_the_header() {
        let bytes = encode_image(ImageKind::STATS, &[pb::StatsEntry::default()]).unwrap();
        let (kind, mut r) = ImageReader::detect(&bytes[..], p(), None).unwrap();
        assert_eq!(kind, ImageKind::STATS);
        assert!(r.next_raw().unwrap().is_some());
        assert!(ImageReader::detect(&[1u8, 2, 3, 4][..], p(), None).is_err());
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn drain<M: Message + Default>(kind: ImageKind, bytes: &[u8], known_len: bool) {
        let len = known_len.then_some(bytes.len() as u64);
        if let Ok(mut r) = ImageReader::new(bytes, kind, p(), len) {
            for _ in 0..1000 {
                match r.next::<M>() {
                    Ok(Some(_)) => {
                        let _ = r.read_extra((r.offset() % 7) as usize);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let core = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            tc: Some(pb::TaskCoreEntry {
                comm: "sleep".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let valid = encode_image(ImageKind::CORE, &[core.clone(), core]).unwrap();
        for cut in 0..valid.len() {
            drain::<pb::CoreEntry>(ImageKind::CORE, &valid[..cut], true);
            drain::<pb::CoreEntry>(ImageKind::CORE, &valid[..cut], false);
        }
        for round in 0..3000 {
            let n = (rng.next() % 200) as usize;
            let mut bytes = if round % 2 == 0 {
                ImageKind::CORE.header.to_bytes()
            } else {
                Vec::new()
            };
            bytes.extend(rng.bytes(n));
            // Flip a byte of a valid image now and then.
            let mut mutated = valid.clone();
            let i = (rng.next() as usize) % mutated.len();
            mutated[i] ^= rng.next() as u8 | 1;
            for b in [&bytes, &mutated] {
                drain::<pb::CoreEntry>(ImageKind::CORE, b, true);
                drain::<pb::MmEntry>(ImageKind::CORE, b, false);
                drain::<pb::FileEntry>(ImageKind::CORE, b, true);
            }
        }
    }
}
