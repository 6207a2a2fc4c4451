//! Proves that prost encodes proto2 the way CRIU's protobuf-c expects:
//! required fields always present, repeated scalars unpacked, CRIU's defaults.

use std::path::Path;

use prost::Message;

use crate::{decode_image, pb, ImageKind};

fn p() -> &'static Path {
    Path::new("/images/test.img")
}

#[test]
fn required_scalars_are_encoded_even_when_zero() {
    // pagemap_entry{vaddr=0, compat_nr_pages=0}: both required fields present.
    let e = pb::PagemapEntry::default();
    assert_eq!(e.encode_to_vec(), [0x08, 0x00, 0x10, 0x00]);
    // fdinfo_entry: id, flags, type, fd all required.
    let f = pb::FdinfoEntry::default();
    assert_eq!(f.encode_to_vec(), [0x08, 0, 0x10, 0, 0x18, 0, 0x20, 0]);
    // optional fields left out are absent.
    let s = pb::PipeDataEntry {
        pipe_id: 5,
        bytes: 0,
        size: None,
    };
    assert_eq!(s.encode_to_vec(), [0x08, 5, 0x10, 0]);
}

#[test]
fn required_messages_are_plain_fields_and_always_encoded() {
    // timens_entry{monotonic, boottime}: both required timespecs, present even when zero.
    let t = pb::TimensEntry {
        monotonic: pb::Timespec::default(),
        boottime: pb::Timespec::default(),
    };
    assert_eq!(
        t.encode_to_vec(),
        [0x0a, 4, 0x08, 0, 0x10, 0, 0x12, 4, 0x08, 0, 0x10, 0]
    );
}

#[test]
fn repeated_scalars_are_encoded_unpacked() {
    let e = pb::PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1, 2],
    };
    // field 5, wire type 0 (varint), once per element: 0x28 1 0x28 2.
    assert_eq!(
        e.encode_to_vec(),
        [0x08, 1, 0x10, 0, 0x18, 1, 0x20, 1, 0x28, 1, 0x28, 2]
    );
    // and packed input (as some writers emit) is still accepted.
    let packed = [0x08, 1, 0x10, 0, 0x18, 1, 0x20, 1, 0x2a, 2, 1, 2];
    assert_eq!(pb::PstreeEntry::decode(&packed[..]).unwrap(), e);
}

#[test]
fn proto_defaults_follow_criu() {
    let d = pb::UserDescT::default();
    assert!(d.read_exec_only && d.seg_not_present);
    assert_eq!(pb::RegFileEntry::default().mnt_id(), -1);
    let o = pb::rpc::CriuOpts::default();
    assert_eq!(
        o.images_dir_fd, 0,
        "required field has no proto default; callers set -1"
    );
    assert_eq!(o.log_level(), 2);
    assert_eq!(o.ghost_limit(), 1 << 20);
    assert_eq!(o.cpu_cap(), 0xffff_ffff);
}

#[test]
fn missing_required_field_reads_as_zero_because_prost_does_not_check_it() {
    let mut bytes = ImageKind::PSTREE.header.to_bytes();
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&[0x08, 0x01]); // only pid
                                            // prost does not enforce `required` on decode; the missing fields read as 0.
    let v: Vec<pb::PstreeEntry> = decode_image(ImageKind::PSTREE, &bytes, p()).unwrap();
    assert_eq!(v[0].pid, 1);
}
