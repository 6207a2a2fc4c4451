//! Running iproute2, nftables and coreutils inside a network namespace, as CRIU does for
//! the raw `ip ... save` streams and the nftables ruleset. A command enters the namespace
//! with `nsenter --net=/proc/<pid>/ns/net`, so the caller's own namespaces never change.
//!
//! Output is read with a limit; input comes from a file or a byte buffer. Errors name the
//! namespace, the step and the exact command line.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};

use super::error::{NetnsError, Result};

/// Whose network namespace a command runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Netns {
    /// The namespace of this process (the host side of a restore).
    Host,
    /// The namespace of process `pid`.
    Of(i32),
}

impl Netns {
    /// The pid named in error messages.
    pub(crate) fn pid(self) -> i32 {
        match self {
            Netns::Host => i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            Netns::Of(pid) => pid,
        }
    }
}

/// What the command reads on stdin.
pub(crate) enum Input<'a> {
    Nothing,
    Bytes(&'a [u8]),
    File(File),
}

/// Where the command's stdout goes.
pub(crate) enum Output {
    /// Into memory, at most this many bytes (more is an error).
    Capture(usize),
    /// Straight into a file (a raw image).
    File(File),
}

/// A finished command.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
    pub(crate) command: String,
}

/// Stderr kept for messages; the rest is drained and dropped.
const STDERR_LIMIT: usize = 64 * 1024;

/// Run `argv` in `ns` and wait for it. A non-zero exit is *not* an error here; see
/// [`run_ok`].
pub(crate) fn run(
    ns: Netns,
    step: &str,
    argv: &[OsString],
    input: Input<'_>,
    output: Output,
) -> Result<Ran> {
    let Some((program, args)) = argv.split_first() else {
        return Err(NetnsError::Output {
            pid: ns.pid(),
            step: step.to_string(),
            detail: "empty command line".into(),
        });
    };
    let mut cmd = match ns {
        Netns::Host => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
        Netns::Of(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net"))
                .arg("--")
                .args(argv);
            c
        }
    };
    let command = describe(&cmd);
    cmd.env("LC_ALL", "C");
    cmd.stderr(Stdio::piped());
    let mut bytes_in: Option<&[u8]> = None;
    match input {
        Input::Nothing => {
            cmd.stdin(Stdio::null());
        }
        Input::Bytes(b) => {
            cmd.stdin(Stdio::piped());
            bytes_in = Some(b);
        }
        Input::File(f) => {
            cmd.stdin(Stdio::from(f));
        }
    }
    let limit = match output {
        Output::Capture(limit) => {
            cmd.stdout(Stdio::piped());
            Some(limit)
        }
        Output::File(f) => {
            cmd.stdout(Stdio::from(f));
            None
        }
    };
    let spawn_err = |source| NetnsError::Spawn {
        pid: ns.pid(),
        step: step.to_string(),
        command: command.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let (write_res, stdout_res, stderr_buf) = std::thread::scope(|s| {
        let writer = stdin.map(|mut pipe| {
            let data = bytes_in.unwrap_or_default();
            s.spawn(move || pipe.write_all(data))
        });
        let err_reader = stderr.map(|pipe| s.spawn(move || read_limited(pipe, STDERR_LIMIT)));
        let out = match (stdout, limit) {
            (Some(pipe), Some(limit)) => Some(read_limited(pipe, limit)),
            _ => None,
        };
        if matches!(&out, Some(Ok((_, true)))) {
            // Too much output: stop the tool rather than let it block on a full pipe.
            let _ = child.kill();
        }
        let write_res = writer.map(|h| h.join().unwrap_or(Ok(())));
        let err = err_reader
            .and_then(|h| h.join().ok())
            .and_then(|r| r.ok())
            .map(|(b, _)| b)
            .unwrap_or_default();
        (write_res, out, err)
    });
    let status = child.wait().map_err(spawn_err)?;
    let stderr = String::from_utf8_lossy(&stderr_buf).trim().to_string();
    let stdout = match stdout_res {
        None => Vec::new(),
        Some(Err(source)) => {
            return Err(NetnsError::Io {
                what: format!(
                    "netns of pid {}: {step}: reading output of `{command}`",
                    ns.pid()
                ),
                source,
            })
        }
        Some(Ok((_, true))) => {
            return Err(NetnsError::Output {
                pid: ns.pid(),
                step: step.to_string(),
                detail: format!(
                    "`{command}` wrote more than {} bytes",
                    limit.unwrap_or_default()
                ),
            })
        }
        Some(Ok((buf, false))) => buf,
    };
    if let Some(Err(source)) = write_res {
        if status.success() {
            return Err(NetnsError::Io {
                what: format!("netns of pid {}: {step}: feeding `{command}`", ns.pid()),
                source,
            });
        }
    }
    Ok(Ran {
        status,
        stdout,
        stderr,
        command,
    })
}

/// Run `argv` in `ns`; a non-zero exit is a [`NetnsError::Tool`].
pub(crate) fn run_ok(
    ns: Netns,
    step: &str,
    argv: &[OsString],
    input: Input<'_>,
    output: Output,
) -> Result<Ran> {
    let ran = run(ns, step, argv, input, output)?;
    if !ran.status.success() {
        return Err(failed(ns, step, &ran));
    }
    if !ran.stderr.is_empty() {
        log::debug!("netns of pid {}: {step}: {}", ns.pid(), ran.stderr);
    }
    Ok(ran)
}

/// The error for a command that exited unsuccessfully.
pub(crate) fn failed(ns: Netns, step: &str, ran: &Ran) -> NetnsError {
    NetnsError::Tool {
        pid: ns.pid(),
        step: step.to_string(),
        command: ran.command.clone(),
        status: ran.status.to_string(),
        stderr: if ran.stderr.is_empty() {
            "(no message)".into()
        } else {
            ran.stderr.clone()
        },
    }
}

/// Build an argv from string-likes.
pub(crate) fn argv<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    items.into_iter().map(Into::into).collect()
}

/// Read at most `limit` bytes; the flag says whether there was more. Anything beyond the
/// limit is not read (the caller kills the writer).
fn read_limited(pipe: impl Read, limit: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = pipe.take(cap);
    reader.read_to_end(&mut buf)?;
    let over = buf.len() > limit;
    buf.truncate(limit);
    if over {
        // Drain so a tool that only writes to stderr never blocks on it.
        let _ = std::io::copy(&mut reader.into_inner(), &mut std::io::sink());
    }
    Ok((buf, over))
}

/// The command line for messages. A long or multi-line argument (a generated script)
/// is shown by its first line and its size: the step already says what it does.
fn describe(cmd: &Command) -> String {
    const LONGEST: usize = 120;
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        s.push(' ');
        let first = a.lines().next().unwrap_or("");
        if a.len() <= LONGEST && first.len() == a.len() {
            s.push_str(&a);
        } else {
            let cut = (0..=first.len().min(LONGEST))
                .rev()
                .find(|&i| first.is_char_boundary(i))
                .unwrap_or(0);
            s.push_str(&format!("{}… ({} bytes)", &first[..cut], a.len()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_script_is_described_by_its_first_line_and_size() {
        let script = format!("w() {{ true; }}\n{}", "w a b\n".repeat(100));
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&script);
        let d = describe(&cmd);
        assert_eq!(
            d,
            format!("sh -c w() {{ true; }}… ({} bytes)", script.len())
        );
        let mut short = Command::new("ip");
        short.args(["link", "show"]);
        assert_eq!(describe(&short), "ip link show");
    }

    #[test]
    fn output_above_the_limit_is_an_error_not_a_truncation() {
        let err = run(
            Netns::Host,
            "test",
            &argv(["sh", "-c", "yes | head -c 100000"]),
            Input::Nothing,
            Output::Capture(1000),
        )
        .unwrap_err();
        assert!(err.to_string().contains("more than 1000 bytes"), "{err}");
    }

    #[test]
    fn failing_command_reports_its_stderr_and_command_line() {
        let err = run_ok(
            Netns::Host,
            "probe step",
            &argv(["sh", "-c", "echo boom >&2; exit 3"]),
            Input::Nothing,
            Output::Capture(10),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("probe step") && msg.contains("boom") && msg.contains("sh -c"),
            "{msg}"
        );
    }

    #[test]
    fn stdin_bytes_reach_the_command() {
        let ran = run_ok(
            Netns::Host,
            "cat",
            &argv(["cat"]),
            Input::Bytes(b"hello"),
            Output::Capture(100),
        )
        .unwrap();
        assert_eq!(ran.stdout, b"hello");
    }
}
