//! Every shell script the project ships parses (`bash -n`): the scripts of the README
//! (`scripts/`, `.ci/run`), the benchmark (`bench/`) and the QEMU glue (`qemu/`). Most
//! of them are not run by `./scripts/test` (the benchmark needs minutes and root), so
//! without this a broken one, such as a merge's leftover conflict markers in
//! `bench/compare`, would only show when someone runs it.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files under `dir` (one level) whose first line is a bash shebang.
fn bash_scripts(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| {
                let first = b.split(|&c| c == b'\n').next().unwrap_or_default();
                first.starts_with(b"#!") && String::from_utf8_lossy(first).contains("bash")
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_shipped_bash_script_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = Vec::new();
    for dir in ["scripts", "bench", "qemu", ".ci"] {
        for script in bash_scripts(&root.join(dir)) {
            let out = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "bash -n {}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked.push(script);
        }
    }
    // The README's two commands and the benchmark are among them.
    for must in ["scripts/test", "scripts/demo", "bench/compare", ".ci/run"] {
        assert!(checked.contains(&root.join(must)), "{must} was not checked");
    }
}
