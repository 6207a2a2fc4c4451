//! Plan-time checks of the file objects: malformed or unsupported images are refused
//! with the image and the object named, before anything is created.

use super::Objects;
use crate::RestoreError;
use stasis_images::{names, pb, ImageDir, ImageKind};

fn scratch(name: &str) -> (std::path::PathBuf, ImageDir) {
    let path = std::env::temp_dir().join(format!("stasis-fds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    let dir = ImageDir::create(&path).unwrap();
    (path, dir)
}

fn pipe(id: u32, pipe_id: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Pipe as i32,
        id,
        pipe: Some(pb::PipeEntry {
            id,
            pipe_id,
            flags: 0,
            fown: Default::default(),
        }),
        ..Default::default()
    }
}

fn message(e: RestoreError) -> String {
    e.to_string()
}

#[test]
fn pipe_data_larger_than_its_capacity_is_refused_naming_the_image() {
    let (path, dir) = scratch("pipe-cap");
    let mut w = dir
        .writer(ImageKind::PIPES_DATA, names::PIPES_DATA)
        .unwrap();
    let e = pb::PipeDataEntry {
        pipe_id: 7,
        bytes: 8192,
        size: Some(4096),
    };
    w.entry_with_extra(&e, &[0u8; 8192]).unwrap();
    w.commit().unwrap();
    let err = message(Objects::read(&dir, vec![pipe(1, 7)]).unwrap_err());
    assert!(
        err.contains(names::PIPES_DATA) && err.contains("capacity"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(path);
}

#[test]
fn a_socket_queue_for_something_that_is_no_socket_is_refused() {
    let (path, dir) = scratch("skq");
    let mut w = dir.writer(ImageKind::SK_QUEUES, names::SK_QUEUES).unwrap();
    let e = pb::SkPacketEntry {
        id_for: 1,
        length: 3,
        scm: Vec::new(),
    };
    w.entry_with_extra(&e, b"abc").unwrap();
    w.commit().unwrap();
    let err = message(Objects::read(&dir, vec![pipe(1, 7)]).unwrap_err());
    assert!(
        err.contains(names::SK_QUEUES) && err.contains("no unix socket"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(path);
}

#[test]
fn an_entry_without_its_payload_or_of_an_unsupported_kind_is_refused() {
    let (path, dir) = scratch("kinds");
    let mut no_payload = pipe(1, 7);
    no_payload.pipe = None;
    let err = message(Objects::read(&dir, vec![no_payload]).unwrap_err());
    assert!(
        err.contains("file id 1") && err.contains("payload"),
        "{err}"
    );
    let fanotify = pb::FileEntry {
        r#type: pb::FdTypes::Fanotify as i32,
        id: 2,
        ..Default::default()
    };
    let err = message(Objects::read(&dir, vec![fanotify]).unwrap_err());
    assert!(
        err.contains("FANOTIFY") && err.contains("not supported"),
        "{err}"
    );
    let err = message(Objects::read(&dir, vec![pipe(3, 7), pipe(3, 8)]).unwrap_err());
    assert!(err.contains("appears twice"), "{err}");
    let _ = std::fs::remove_dir_all(path);
}

#[test]
fn a_truncated_ghost_image_is_refused_naming_it() {
    let (path, dir) = scratch("ghost");
    let reg = pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id: 4,
        reg: Some(pb::RegFileEntry {
            id: 4,
            name: "/tmp/gone".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    dir.write(
        ImageKind::REMAP_FPATH,
        names::REMAP_FPATH,
        &[pb::RemapFilePathEntry {
            orig_id: 4,
            remap_id: 1,
            remap_type: Some(pb::RemapType::Ghost as i32),
        }],
    )
    .unwrap();
    let mut w = dir
        .writer(ImageKind::GHOST_FILE, &names::ghost_file(1))
        .unwrap();
    let g = pb::GhostFileEntry {
        mode: libc::S_IFREG | 0o600,
        chunks: Some(true),
        size: Some(100),
        ..Default::default()
    };
    w.entry(&g).unwrap();
    // A chunk that reaches past the file's size.
    w.entry_with_extra(&pb::GhostChunkEntry { len: 80, off: 50 }, &[1u8; 80])
        .unwrap();
    w.commit().unwrap();
    let err = message(Objects::read(&dir, vec![reg]).unwrap_err());
    assert!(
        err.contains(&names::ghost_file(1)) && err.contains("beyond"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(path);
}
