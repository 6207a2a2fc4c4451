//! Compiles the C workloads in `workloads/` with the system gcc (`-O2 -g`,
//! dynamically linked against glibc, as a real program would be; `*_static.c` linked
//! statically, for a container's root) into
//! `$OUT_DIR/workloads/`, where the harness finds them (`env!("OUT_DIR")`).

use std::path::Path;
use std::process::Command;

fn main() {
    let src = Path::new("workloads");
    let out =
        Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("workloads");
    std::fs::create_dir_all(&out).expect("create $OUT_DIR/workloads");
    println!("cargo:rerun-if-changed=workloads");

    let mut sources: Vec<_> = std::fs::read_dir(src)
        .expect("read workloads/")
        .map(|e| e.expect("read workloads/ entry").path())
        .collect();
    sources.sort();
    for path in &sources {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for path in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
    {
        let name = path.file_stem().expect("workload file name");
        let bin = out.join(name);
        // `*_static.c` runs inside a container's own root (a busybox rootfs): no
        // shared libraries there.
        let link = if name.to_string_lossy().ends_with("_static") {
            "-static"
        } else {
            "-pthread"
        };
        let result = Command::new("gcc")
            .args([
                "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", link, "-o",
            ])
            .arg(&bin)
            .arg(path)
            .output();
        match result {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "gcc failed on {}:\n{}",
                path.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run gcc ({e}); install it: apt-get install -y gcc"),
        }
    }
}
