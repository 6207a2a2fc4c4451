//! The log: CRIU's levels (0 none, 1 errors, 2 warnings, 3 info, 4 debug) to the `-o`
//! file, with a timestamp relative to the start; errors always reach stderr too.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

struct Logger {
    file: Option<Mutex<File>>,
    start: Instant,
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Some(f) = &self.file {
            let t = self.start.elapsed();
            if let Ok(mut f) = f.lock() {
                let _ = writeln!(
                    f,
                    "({:>3}.{:06}) {}: {}",
                    t.as_secs(),
                    t.subsec_micros(),
                    r.level(),
                    r.args()
                );
            }
        }
    }

    fn flush(&self) {}
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

/// Installs the logger.
pub fn init(file: Option<&Path>, level: u32) -> Result<()> {
    let file = match file {
        Some(p) => {
            Some(Mutex::new(File::create(p).with_context(|| {
                format!("creating log file {}", p.display())
            })?))
        }
        None => None,
    };
    let logger = Logger {
        file,
        start: Instant::now(),
        level: filter(level),
    };
    log::set_max_level(logger.level);
    log::set_boxed_logger(Box::new(logger)).context("installing the logger")?;
    Ok(())
}
