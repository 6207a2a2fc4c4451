//! The RPC captures in `tests/fixtures/rpc-captures/`: every packet of a `criu swrk`
//! session between a real client and CRIU 4.2, with its exact bytes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Who sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// client → criu: a `criu_req`.
    ToCriu,
    /// criu → client: a `criu_resp`.
    ToClient,
}

/// One packet of a capture.
#[derive(Clone, Debug)]
pub struct Packet {
    pub direction: Direction,
    /// The decoded text the capture shows (informative; the bytes are authoritative).
    pub text: String,
    pub bytes: Vec<u8>,
}

/// One capture file: a session with one `criu swrk`.
#[derive(Clone, Debug)]
pub struct Capture {
    pub name: String,
    pub packets: Vec<Packet>,
}

impl Capture {
    pub fn requests(&self) -> impl Iterator<Item = &Packet> {
        self.packets
            .iter()
            .filter(|p| p.direction == Direction::ToCriu)
    }

    pub fn responses(&self) -> impl Iterator<Item = &Packet> {
        self.packets
            .iter()
            .filter(|p| p.direction == Direction::ToClient)
    }

    /// The first request (the one that opens the session).
    pub fn first_request(&self) -> &Packet {
        self.requests().next().expect("a capture has a request")
    }

    /// The last response (the final answer, after any notifications).
    pub fn final_response(&self) -> Option<&Packet> {
        self.responses().last()
    }
}

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rpc-captures")
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("at {i}: {e}")))
        .collect()
}

/// Parses one capture file's text.
pub fn parse(name: &str, text: &str) -> Result<Capture, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut packets = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let direction = if line.contains(" client -> criu ") {
            Direction::ToCriu
        } else if line.contains(" criu -> client ") {
            Direction::ToClient
        } else {
            i += 1;
            continue;
        };
        let len: usize = line
            .rsplit_once("len=")
            .and_then(|(_, n)| n.trim().parse().ok())
            .ok_or_else(|| format!("{name}:{}: no len=", i + 1))?;
        let text = lines
            .get(i + 1)
            .map(|l| l.trim().to_string())
            .unwrap_or_default();
        let hexline = lines
            .get(i + 2)
            .and_then(|l| l.trim().strip_prefix("hex="))
            .ok_or_else(|| format!("{name}:{}: no hex= line", i + 3))?;
        let bytes = hex(hexline).map_err(|e| format!("{name}:{}: {e}", i + 3))?;
        if bytes.len() != len {
            return Err(format!(
                "{name}:{}: len={len} but {} bytes of hex",
                i + 1,
                bytes.len()
            ));
        }
        packets.push(Packet {
            direction,
            text,
            bytes,
        });
        i += 3;
    }
    if packets.is_empty() {
        return Err(format!("{name}: no packets"));
    }
    Ok(Capture {
        name: name.to_string(),
        packets,
    })
}

/// Every capture, sorted by name.
pub fn all() -> Vec<Capture> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("read the captures directory")
        .map(|e| e.expect("captures entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 40,
        "expected the 46 captures, found {}",
        names.len()
    );
    names
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(p).expect("read a capture");
            parse(&name, &text).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// The capture named `name` (file stem).
pub fn get(name: &str) -> Capture {
    all()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no capture {name}"))
}
