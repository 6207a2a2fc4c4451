//! `stasis inspect DIR --cpu [--json]`: what an image records about its CPU and JVMs,
//! this host, and whether the restore gate would let it run here (under `--cpu-cap`,
//! else the restore's default).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use stasis_cpu::report::CpuReport;
use stasis_cpu::{CpuRecord, ImageCpu};
use stasis_images::ImageDir;

use crate::args::Args;

/// Runs `stasis inspect`.
pub fn run(args: &Args) -> Result<ExitCode> {
    if !args.cpu {
        bail!("inspect describes the CPU record only yet: stasis inspect DIR --cpu [--json]");
    }
    let path = match (args.rest.first(), &args.images_dir) {
        (Some(p), _) => p.into(),
        (None, Some(d)) => d.clone(),
        (None, None) => bail!("inspect needs an images directory: stasis inspect DIR --cpu"),
    };
    let dir = ImageDir::open(&path)?;
    let image = ImageCpu::read(&dir).with_context(|| format!("{}", path.display()))?;
    let cap = image.cap(args.cpu_cap.as_deref())?;
    let report = CpuReport::new(&image, &CpuRecord::host(), cap);
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}
