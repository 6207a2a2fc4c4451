//! An image directory: every file operation is relative to a directory fd
//! opened once, so a rename or remount of the path mid-dump cannot redirect
//! writes. Whole images are written to a temporary name and renamed into
//! place, so a reader never sees a half-written file.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::framing::{ImageReader, ImageWriter};
#[cfg(test)]
use crate::magic;
use crate::{ImageError, ImageKind, Result};

/// A directory of images.
#[derive(Debug)]
pub struct ImageDir {
    path: PathBuf,
    fd: OwnedFd,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ImageDir {
    /// Create the directory (and missing parents) with mode 0700 if it does
    /// not exist, then open it. An existing directory is fine.
    pub fn create(path: &Path) -> Result<ImageDir> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| ImageError::Io {
                path: path.to_path_buf(),
                op: "create image directory".into(),
                source,
            })?;
        Self::open(path)
    }

    /// Open an existing image directory.
    pub fn open(path: &Path) -> Result<ImageDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => ImageError::Missing {
                path: path.to_path_buf(),
            },
            e => ImageError::Io {
                path: path.to_path_buf(),
                op: "open image directory".into(),
                source: e.into(),
            },
        })?;
        Ok(ImageDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// Open the `parent` symlink of an incremental dump, if there is one.
    pub fn open_parent(&self) -> Result<Option<ImageDir>> {
        let path = self.file_path("parent");
        match rustix::fs::openat(
            &self.fd,
            "parent",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(ImageDir { path, fd })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(ImageError::Io {
                path,
                op: "open parent image directory".into(),
                source: e.into(),
            }),
        }
    }

    /// The path this directory was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside this directory (for messages and for tools
    /// that need a path).
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether `name` exists in this directory.
    pub fn exists(&self, name: &str) -> bool {
        check_name(&self.path, name).is_ok()
            && rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Write all `entries` to `name` (mode 0600), atomically.
    pub fn write<M: Message>(&self, kind: ImageKind, name: &str, entries: &[M]) -> Result<()> {
        let mut w = self.writer(kind, name)?;
        for e in entries {
            w.entry(e)?;
        }
        w.commit()
    }

    /// Write a single-entry image.
    pub fn write_one<M: Message>(&self, kind: ImageKind, name: &str, entry: &M) -> Result<()> {
        self.write(kind, name, std::slice::from_ref(entry))
    }

    /// Start writing `name` entry by entry (with extra payloads if the kind
    /// needs them). Nothing appears under `name` until
    /// [`ImageFileWriter::commit`]; dropping the writer discards the file.
    pub fn writer(&self, kind: ImageKind, name: &str) -> Result<ImageFileWriter<'_>> {
        check_name(&self.path, name)?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = format!(".{name}.stasis-tmp-{}-{n}", std::process::id());
        let fd = rustix::fs::openat(
            &self.fd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| ImageError::Io {
            path: self.file_path(&tmp),
            op: "create temporary image".into(),
            source: e.into(),
        })?;
        let final_path = self.file_path(name);
        let file = BufWriter::new(File::from(fd));
        let pending = Pending {
            dir: self,
            tmp,
            done: false,
        };
        let writer = ImageWriter::new_named(file, kind, &final_path)?;
        Ok(ImageFileWriter {
            writer,
            pending,
            name: name.to_string(),
            final_path,
        })
    }

    /// Read every entry of `name`. A missing file is [`ImageError::Missing`].
    pub fn read<M: Message + Default>(&self, kind: ImageKind, name: &str) -> Result<Vec<M>> {
        let mut r = self.reader(kind, name)?;
        let mut out = Vec::new();
        while let Some(m) = r.next()? {
            out.push(m);
        }
        Ok(out)
    }

    /// Read every entry of `name`, or `None` if the file does not exist (CRIU
    /// treats most missing images as empty; say so explicitly at the call).
    pub fn read_if_exists<M: Message + Default>(
        &self,
        kind: ImageKind,
        name: &str,
    ) -> Result<Option<Vec<M>>> {
        match self.read(kind, name) {
            Ok(v) => Ok(Some(v)),
            Err(ImageError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read an image that must hold exactly one entry.
    pub fn read_one<M: Message + Default>(&self, kind: ImageKind, name: &str) -> Result<M> {
        let mut all = self.read::<M>(kind, name)?;
        if all.len() != 1 {
            return Err(ImageError::EntryCount {
                path: self.file_path(name),
                expected: "exactly one entry",
                found: all.len(),
            });
        }
        Ok(all.remove(0))
    }

    /// Open `name` and check its header; entries are then read one by one.
    pub fn reader(&self, kind: ImageKind, name: &str) -> Result<ImageReader<BufReader<File>>> {
        let file = self.open_raw(name)?;
        let path = self.file_path(name);
        let len = file
            .metadata()
            .map_err(|source| ImageError::Io {
                path: path.clone(),
                op: "stat".into(),
                source,
            })?
            .len();
        ImageReader::new(BufReader::new(file), kind, &path, Some(len))
    }

    /// Open a file for reading without interpreting it (raw images such as
    /// `pages-N.img`). A missing file is [`ImageError::Missing`].
    pub fn open_raw(&self, name: &str) -> Result<File> {
        check_name(&self.path, name)?;
        rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => ImageError::Missing {
                path: self.file_path(name),
            },
            e => ImageError::Io {
                path: self.file_path(name),
                op: "open".into(),
                source: e.into(),
            },
        })
    }

    /// Create (or truncate) a raw file with mode 0600, for images written
    /// progressively such as `pages-N.img`.
    pub fn create_raw(&self, name: &str) -> Result<File> {
        check_name(&self.path, name)?;
        rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map(File::from)
        .map_err(|e| ImageError::Io {
            path: self.file_path(name),
            op: "create".into(),
            source: e.into(),
        })
    }

    /// Remove `name`; a missing file is not an error.
    pub fn remove(&self, name: &str) -> Result<()> {
        check_name(&self.path, name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(ImageError::Io {
                path: self.file_path(name),
                op: "remove".into(),
                source: e.into(),
            }),
        }
    }
}

/// Image file names are single path components.
fn check_name(dir: &Path, name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(ImageError::Invalid {
            path: dir.join(name),
            detail: format!("{name:?} is not a plain file name inside the image directory"),
        });
    }
    Ok(())
}

struct Pending<'a> {
    dir: &'a ImageDir,
    tmp: String,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = rustix::fs::unlinkat(&self.dir.fd, self.tmp.as_str(), AtFlags::empty());
        }
    }
}

/// An image being written under a temporary name; see [`ImageDir::writer`].
pub struct ImageFileWriter<'a> {
    writer: ImageWriter<BufWriter<File>>,
    pending: Pending<'a>,
    name: String,
    final_path: PathBuf,
}

impl ImageFileWriter<'_> {
    /// Append one entry.
    pub fn entry<M: Message>(&mut self, m: &M) -> Result<()> {
        self.writer.entry(m)
    }

    /// Append one entry followed by its raw extra payload.
    pub fn entry_with_extra<M: Message>(&mut self, m: &M, extra: &[u8]) -> Result<()> {
        self.writer.entry_with_extra(m, extra)
    }

    /// Append raw bytes after the last entry.
    pub fn extra(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.extra(bytes)
    }

    /// Number of entries written so far.
    pub fn entries_written(&self) -> usize {
        self.writer.entries_written()
    }

    /// Flush and rename the image into place.
    pub fn commit(self) -> Result<()> {
        let ImageFileWriter {
            writer,
            mut pending,
            name,
            final_path,
        } = self;
        let buffered = writer.finish()?;
        buffered.into_inner().map_err(|e| ImageError::Io {
            path: final_path.clone(),
            op: "flush".into(),
            source: e.into_error(),
        })?;
        let dir = pending.dir;
        rustix::fs::renameat(&dir.fd, pending.tmp.as_str(), &dir.fd, name.as_str()).map_err(
            |e| ImageError::Io {
                path: final_path,
                op: "rename into place".into(),
                source: e.into(),
            },
        )?;
        pending.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{names, pb};
    use std::os::unix::fs::PermissionsExt;

    fn fs_entry() -> pb::FsEntry {
        pb::FsEntry {
            cwd_id: 3,
            root_id: 4,
            umask: Some(0o22),
        }
    }

    #[test]
    fn create_makes_a_private_directory_and_accepts_an_existing_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/images");
        let dir = ImageDir::create(&path).unwrap();
        assert_eq!(dir.path(), path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        ImageDir::create(&path).unwrap();
        ImageDir::open(&path).unwrap();
        assert!(matches!(
            ImageDir::open(&tmp.path().join("nope")),
            Err(ImageError::Missing { .. })
        ));
    }

    #[test]
    fn written_images_read_back_and_are_mode_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        dir.write_one(ImageKind::FS, &names::fs(1), &fs_entry())
            .unwrap();
        assert!(dir.exists("fs-1.img"));
        let mode = std::fs::metadata(dir.file_path("fs-1.img"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            dir.read_one::<pb::FsEntry>(ImageKind::FS, "fs-1.img")
                .unwrap(),
            fs_entry()
        );
        // Only the final file is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["fs-1.img"]);
    }

    #[test]
    fn missing_image_is_reported_as_missing_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        let err = dir
            .read::<pb::FsEntry>(ImageKind::FS, "fs-9.img")
            .unwrap_err();
        assert!(
            matches!(err, ImageError::Missing { ref path } if path.ends_with("fs-9.img")),
            "{err}"
        );
    }

    #[test]
    fn read_one_names_the_count_it_found() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        dir.write(ImageKind::FS, "fs-1.img", &[fs_entry(), fs_entry()])
            .unwrap();
        let err = dir
            .read_one::<pb::FsEntry>(ImageKind::FS, "fs-1.img")
            .unwrap_err();
        assert!(matches!(err, ImageError::EntryCount { found: 2, .. }));
        assert!(
            err.to_string()
                .contains("fs-1.img: expected exactly one entry, found 2"),
            "{err}"
        );
        dir.write::<pb::FsEntry>(ImageKind::FS, "fs-2.img", &[])
            .unwrap();
        assert!(matches!(
            dir.read_one::<pb::FsEntry>(ImageKind::FS, "fs-2.img"),
            Err(ImageError::EntryCount { found: 0, .. })
        ));
    }

    #[test]
    fn header_is_checked_against_the_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        dir.write_one(ImageKind::FS, "fs-1.img", &fs_entry())
            .unwrap();
        let err = dir
            .read::<pb::MmEntry>(ImageKind::MM, "fs-1.img")
            .unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::BadMagic {
                    found: magic::FS,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_abandoned_writer_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        {
            let mut w = dir.writer(ImageKind::FS, "fs-1.img").unwrap();
            w.entry(&fs_entry()).unwrap();
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        for bad in ["", ".", "..", "../x.img", "a/b.img"] {
            assert!(matches!(
                dir.write_one(ImageKind::FS, bad, &fs_entry()),
                Err(ImageError::Invalid { .. })
            ));
            assert!(!dir.exists(bad));
        }
    }

    #[test]
    fn pagemap_is_written_with_both_counts_and_normalised_on_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        let head = pb::PagemapHead { pages_id: 1 };
        let entries = vec![
            crate::pagemap::pagemap_entry(0x1000, 3, crate::PE_PRESENT),
            // caller filled only field 5
            pb::PagemapEntry {
                vaddr: 0x8000,
                nr_pages: Some(2),
                flags: Some(crate::PE_PARENT),
                ..Default::default()
            },
        ];
        dir.write_pagemap(7, &head, &entries).unwrap();
        let (h, back) = dir.read_pagemap(7).unwrap();
        assert_eq!(h, head);
        assert_eq!(back[0].compat_nr_pages, 3);
        assert_eq!(back[1].compat_nr_pages, 2);
        assert_eq!(back[1].nr_pages, Some(2));

        // An old-style image: only compat_nr_pages, in_parent, no flags.
        let old = vec![
            pb::PagemapEntry {
                vaddr: 0x1000,
                compat_nr_pages: 4,
                ..Default::default()
            },
            pb::PagemapEntry {
                vaddr: 0x9000,
                compat_nr_pages: 1,
                in_parent: Some(true),
                ..Default::default()
            },
        ];
        let mut w = dir.writer(ImageKind::PAGEMAP, &names::pagemap(8)).unwrap();
        w.entry(&head).unwrap();
        for e in &old {
            w.entry(e).unwrap();
        }
        w.commit().unwrap();
        let (_, back) = dir.read_pagemap(8).unwrap();
        assert_eq!(
            (back[0].flags, back[0].nr_pages),
            (Some(crate::PE_PRESENT), Some(4))
        );
        assert_eq!(
            (back[1].flags, back[1].nr_pages),
            (Some(crate::PE_PARENT), Some(1))
        );
    }

    #[test]
    fn pagemap_without_head_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ImageDir::create(tmp.path()).unwrap();
        dir.write::<pb::PagemapHead>(ImageKind::PAGEMAP, "pagemap-1.img", &[])
            .unwrap();
        assert!(matches!(
            dir.read_pagemap(1),
            Err(ImageError::EntryCount { found: 0, .. })
        ));
    }
}
