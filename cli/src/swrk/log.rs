//! The swrk log: CRIU's levels (0 none, 1 errors, 2 warnings, 3 info, 4 debug) to the file
//! a request names (`log_file`, default `criu.log`, in the work dir), or to stderr with
//! `log_to_stderr`. Nothing is written anywhere before a request sets it up: stasis's
//! stdio belongs to the client (on restore, runc hands it the container's stdio).
//!
//! Errors are written as `Error (module): message` and warnings as `Warn (module): ...`,
//! the shape of CRIU's lines, because runc and containerd grep the log for "Error".

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

enum Sink {
    Nowhere,
    File(File),
    Stderr,
}

struct SwrkLogger {
    sink: Mutex<Sink>,
    start: Instant,
}

static LOGGER: std::sync::OnceLock<&'static SwrkLogger> = std::sync::OnceLock::new();

impl SwrkLogger {
    fn write(&self, line: &str) {
        let t = self.start.elapsed();
        let text = format!("({:02}.{:06}) {line}\n", t.as_secs(), t.subsec_micros());
        if let Ok(mut sink) = self.sink.lock() {
            let _ = match &mut *sink {
                Sink::Nowhere => Ok(()),
                Sink::File(f) => f.write_all(text.as_bytes()),
                Sink::Stderr => std::io::stderr().write_all(text.as_bytes()),
            };
        }
    }
}

impl log::Log for SwrkLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let module = r.module_path().unwrap_or(r.target());
        let line = match r.level() {
            log::Level::Error => format!("Error ({module}): {}", r.args()),
            log::Level::Warn => format!("Warn  ({module}): {}", r.args()),
            _ => r.args().to_string(),
        };
        self.write(&line);
    }

    fn flush(&self) {}
}

/// Installs the logger, writing nowhere until [`to_file`] or [`to_stderr`].
pub fn install() {
    let logger: &'static SwrkLogger = LOGGER.get_or_init(|| {
        Box::leak(Box::new(SwrkLogger {
            sink: Mutex::new(Sink::Nowhere),
            start: Instant::now(),
        }))
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(log::LevelFilter::Off);
    }
}

fn filter(level: u32) -> log::LevelFilter {
    match level {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

fn set(sink: Sink, level: u32) {
    if let Some(l) = LOGGER.get() {
        if let Ok(mut s) = l.sink.lock() {
            *s = sink;
        }
        log::set_max_level(filter(level));
    }
}

/// Logs to `path` (created 0600, or truncated, as CRIU does) at CRIU level `level`.
pub fn to_file(path: &Path, level: u32) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let copy = f.try_clone()?;
    set(Sink::File(f), level);
    Ok(copy)
}

/// Logs to stderr (`log_to_stderr`).
pub fn to_stderr(level: u32) {
    set(Sink::Stderr, level);
}

/// Writes `line` whatever the level (what `display_stats` asks to show).
pub fn always(line: &str) {
    if let Some(l) = LOGGER.get() {
        l.write(line);
    }
}
