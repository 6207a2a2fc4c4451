//! What prost does not check on decode: proto2 `required` fields. CRIU's protobuf-c
//! refuses a message that lacks one; prost reads the missing field as zero, which for
//! `criu_opts.images_dir_fd` would silently mean the client's fd 0. This walks the wire
//! format of a `criu_req` and names the first required field that is absent.

/// One field's value on the wire; only length-delimited payloads are kept.
enum Value<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| format!("truncated varint at byte {pos}"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(format!("varint longer than 10 bytes before byte {pos}"))
}

/// The fields of one message, in wire order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Value<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, ty) = (key >> 3, key & 7);
        if num == 0 {
            return Err(format!("field number 0 at byte {pos}"));
        }
        let skip = |pos: &mut usize, n: usize| -> Result<(), String> {
            if buf.len() - *pos < n {
                return Err(format!("field {num} runs past the end of its message"));
            }
            *pos += n;
            Ok(())
        };
        let value = match ty {
            0 => {
                varint(buf, &mut pos)?;
                Value::Scalar
            }
            1 => {
                skip(&mut pos, 8)?;
                Value::Scalar
            }
            5 => {
                skip(&mut pos, 4)?;
                Value::Scalar
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).unwrap_or(usize::MAX);
                let start = pos;
                skip(&mut pos, len)?;
                Value::Bytes(&buf[start..pos])
            }
            t => {
                return Err(format!(
                    "field {num} has wire type {t}, which proto2 never uses"
                ))
            }
        };
        out.push((num, value));
    }
    Ok(out)
}

fn require(fields: &[(u64, Value<'_>)], num: u64, name: &str) -> Result<(), String> {
    if fields.iter().any(|(n, _)| *n == num) {
        Ok(())
    } else {
        Err(format!("required field {name} is missing"))
    }
}

fn messages<'a>(fields: &'a [(u64, Value<'a>)], num: u64) -> impl Iterator<Item = &'a [u8]> {
    fields.iter().filter_map(move |(n, v)| match v {
        Value::Bytes(b) if *n == num => Some(*b),
        _ => None,
    })
}

/// A repeated message inside `criu_opts`: its field number, name, and required fields.
type Nested = (u64, &'static str, &'static [(u64, &'static str)]);

/// The repeated messages inside `criu_opts` and their required fields.
const NESTED: &[Nested] = &[
    (19, "veths", &[(1, "if_in"), (2, "if_out")]),
    (23, "ext_mnt", &[(1, "key"), (2, "val")]),
    (25, "cg_root", &[(2, "path")]),
    (27, "inherit_fd", &[(1, "key"), (2, "fd")]),
    (33, "unix_sk_ino", &[(1, "inode")]),
    (39, "join_ns", &[(1, "ns"), (2, "ns_file")]),
];

/// Checks the wire format of a `criu_req` and the presence of every required field.
pub fn check_required(req: &[u8]) -> Result<(), String> {
    let top = fields(req)?;
    require(&top, 1, "criu_req.type")?;
    for opts in messages(&top, 2) {
        let o = fields(opts).map_err(|e| format!("criu_opts: {e}"))?;
        require(&o, 1, "criu_opts.images_dir_fd")?;
        for (num, name, required) in NESTED {
            for (i, m) in messages(&o, *num).enumerate() {
                let f = fields(m).map_err(|e| format!("criu_opts.{name}[{i}]: {e}"))?;
                for (rn, rname) in *required {
                    require(&f, *rn, &format!("criu_opts.{name}[{i}].{rname}"))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_request_has_its_type() {
        check_required(&[0x08, 0x0a]).unwrap();
    }

    #[test]
    fn a_request_without_type_is_refused_by_name() {
        assert_eq!(
            check_required(&[0x20, 0x01]).unwrap_err(),
            "required field criu_req.type is missing"
        );
        assert_eq!(
            check_required(&[]).unwrap_err(),
            "required field criu_req.type is missing"
        );
    }

    #[test]
    fn opts_without_images_dir_fd_are_refused_rather_than_read_as_fd_0() {
        // type DUMP, opts { pid: 5 }
        let req = [0x08, 0x01, 0x12, 0x02, 0x10, 0x05];
        assert_eq!(
            check_required(&req).unwrap_err(),
            "required field criu_opts.images_dir_fd is missing"
        );
    }

    #[test]
    fn a_nested_entry_without_its_required_field_is_named_with_its_index() {
        // type DUMP, opts { images_dir_fd: 7, ext_mnt { key: "/a" } }
        let req = [
            0x08, 0x01, 0x12, 0x09, 0x08, 0x07, 0xba, 0x01, 0x04, 0x0a, 0x02, b'/', b'a',
        ];
        assert_eq!(
            check_required(&req).unwrap_err(),
            "required field criu_opts.ext_mnt[0].val is missing"
        );
    }

    #[test]
    fn truncated_and_impossible_encodings_are_errors_not_panics() {
        for bad in [
            &[0x08][..],
            &[0x08, 0x80][..],
            &[0x12, 0x05, 0x08][..],
            &[0x0b, 0x00][..],
            &[0x00][..],
            &[0xff; 11][..],
            &[
                0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        ] {
            assert!(check_required(bad).is_err(), "{bad:x?}");
        }
    }
}
