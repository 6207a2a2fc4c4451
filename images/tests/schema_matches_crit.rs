//! Checks stasis' compiled schemas against the ones built into the installed
//! crit (pycriu): every message, field number, label, type, type name and
//! default that crit knows must be identical here, so crit (and CRIU, which
//! shares the numbering) decodes stasis' images field for field. Fields CRIU
//! added after crit's version are allowed on top. Needs `crit` installed.

use std::collections::BTreeMap;
use std::process::Command;

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use serde_json::Value;

/// number -> (name, label, type, type_name, default)
type Fields = BTreeMap<i32, (String, i32, i32, String, Option<String>)>;

fn short(type_name: &str) -> String {
    let t = type_name.trim_start_matches('.');
    t.strip_prefix("criu.rpc.")
        .or_else(|| t.strip_prefix("criu."))
        .unwrap_or(t)
        .to_string()
}

fn walk_enum(
    prefix: &str,
    e: &EnumDescriptorProto,
    out: &mut BTreeMap<String, BTreeMap<String, i32>>,
) {
    let vals = e
        .value
        .iter()
        .map(|v| (v.name().to_string(), v.number()))
        .collect();
    out.insert(format!("{prefix}{}", e.name()), vals);
}

fn walk_msg(
    prefix: &str,
    m: &DescriptorProto,
    msgs: &mut BTreeMap<String, Fields>,
    enums: &mut BTreeMap<String, BTreeMap<String, i32>>,
) {
    let name = format!("{prefix}{}", m.name());
    let fields = m
        .field
        .iter()
        .map(|f| {
            (
                f.number(),
                (
                    f.name().to_string(),
                    f.label() as i32,
                    f.r#type() as i32,
                    short(f.type_name()),
                    f.default_value.clone(),
                ),
            )
        })
        .collect();
    msgs.insert(name.clone(), fields);
    for e in &m.enum_type {
        walk_enum(&format!("{name}."), e, enums);
    }
    for n in &m.nested_type {
        walk_msg(&format!("{name}."), n, msgs, enums);
    }
}

#[test]
fn every_message_crit_knows_has_the_same_wire_schema() {
    let fds = FileDescriptorSet::decode(stasis_images::pb::FILE_DESCRIPTOR_SET).unwrap();
    let (mut ours, mut our_enums) = (BTreeMap::new(), BTreeMap::new());
    for file in &fds.file {
        let prefix = if file.package() == "criu.rpc" {
            "rpc."
        } else {
            ""
        };
        for e in &file.enum_type {
            walk_enum(prefix, e, &mut our_enums);
        }
        for m in &file.message_type {
            walk_msg(prefix, m, &mut ours, &mut our_enums);
        }
    }

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/pycriu_schema.py"
    );
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .output()
        .expect("python3 with crit's pycriu (Debian package criu) must be installed");
    assert!(
        out.status.success(),
        "pycriu schema dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Field 2 of pagemap_entry was renamed when CRIU 4.2 added the u64 field 5.
    let renamed = [("pagemap_entry", 2, "compat_nr_pages")];
    let mut problems = Vec::new();
    let mut checked = 0;
    for (msg, fields) in theirs["messages"].as_object().unwrap() {
        let Some(mine) = ours.get(msg) else {
            problems.push(format!("message {msg} is missing"));
            continue;
        };
        for (num, f) in fields.as_object().unwrap() {
            let num: i32 = num.parse().unwrap();
            let f = f.as_array().unwrap();
            let mut name = f[0].as_str().unwrap().to_string();
            if let Some((_, _, new)) = renamed.iter().find(|(m, n, _)| m == msg && *n == num) {
                name = new.to_string();
            }
            let type_name = f[3].as_str().unwrap();
            let type_name = type_name
                .strip_prefix("rpc.")
                .unwrap_or(type_name)
                .to_string();
            let want = (
                name,
                f[1].as_i64().unwrap() as i32,
                f[2].as_i64().unwrap() as i32,
                type_name,
                f[4].as_str().map(str::to_string),
            );
            match mine.get(&num) {
                Some(got) if *got == want => checked += 1,
                Some(got) => problems.push(format!(
                    "{msg} #{num}: crit has {want:?}, stasis has {got:?}"
                )),
                None => problems.push(format!("{msg} #{num} ({}) is missing", want.0)),
            }
        }
    }
    for (name, vals) in theirs["enums"].as_object().unwrap() {
        let Some(mine) = our_enums.get(name) else {
            problems.push(format!("enum {name} is missing"));
            continue;
        };
        for (v, n) in vals.as_object().unwrap() {
            if mine.get(v).map(|x| i64::from(*x)) != n.as_i64() {
                problems.push(format!("enum {name}: {v} = {n} differs"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "schema differences from crit:\n{}",
        problems.join("\n")
    );
    assert!(
        checked > 900,
        "only {checked} fields compared; is pycriu complete?"
    );
}
