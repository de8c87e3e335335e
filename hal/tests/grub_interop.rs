//! Interoperability of bascule's GRUB env with `grub-editenv` (grub-common). A test
//! fails when the tool is missing (see `tool`).
#[path = "tool/mod.rs"]
mod tool;

use std::path::Path;
use std::process::Command;

use bascule_hal::env::grub::{GrubCodec, GrubEnv};
use bascule_hal::{EnvStore, EnvVars};

fn have_editenv() -> bool {
    tool::require("grub-editenv", "grub-common")
}

fn editenv(file: &Path, args: &[&str]) -> String {
    let out = Command::new("grub-editenv")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grub-editenv {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn vars(pairs: &[(&str, &str)]) -> EnvVars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Values `grub-editenv list` prints on one line each.
fn one_line_sample() -> EnvVars {
    vars(&[
        ("ORDER", "A B"),
        ("A_OK", "1"),
        ("A_TRY", "0"),
        ("spaces", "  lead and trail  "),
        ("equals", "a=b=c"),
        ("backslashes", "C:\\dir\\\\x\\"),
        ("empty", ""),
    ])
}

fn parse_list(text: &str) -> EnvVars {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn bascule_writes_grub_editenv_lists() {
    if !have_editenv() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut env = GrubEnv::open_dir(dir.path());
    env.commit(&one_line_sample()).unwrap();
    let listed = editenv(&dir.path().join("grubenv"), &["list"]);
    assert_eq!(parse_list(&listed), one_line_sample());
}

#[test]
fn grub_editenv_writes_bascule_reads() {
    if !have_editenv() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    editenv(&file, &["create"]);
    assert_eq!(
        GrubEnv::open_dir(dir.path()).load().unwrap(),
        EnvVars::new()
    );
    editenv(&file, &["set", "a=b"]);
    let mut args = vec!["set".to_string()];
    args.extend(one_line_sample().iter().map(|(k, v)| format!("{k}={v}")));
    args.push("multi=line one\nline two\\\n".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    editenv(&file, &args);
    let mut expected = one_line_sample();
    expected.insert("a", "b");
    expected.insert("multi", "line one\nline two\\\n");
    assert_eq!(GrubEnv::open_dir(dir.path()).load().unwrap(), expected);
    editenv(&file, &["unset", "a"]);
    expected.remove("a");
    assert_eq!(GrubEnv::open_dir(dir.path()).load().unwrap(), expected);
}

#[test]
fn newlines_and_backslashes_roundtrip_through_grub_editenv() {
    if !have_editenv() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    let mut v = one_line_sample();
    v.insert("nl", "\nx\\\ny\n\n");
    GrubEnv::open_dir(dir.path()).commit(&v).unwrap();
    // grub-editenv parses our block, edits it in place and writes it back.
    editenv(&file, &["set", "extra=1"]);
    v.insert("extra", "1");
    assert_eq!(GrubEnv::open_dir(dir.path()).load().unwrap(), v);
}

#[test]
fn bascule_block_equals_grub_editenv_block() {
    if !have_editenv() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    editenv(&file, &["create"]);
    // grub-editenv appends in the order of its arguments; bascule writes sorted names.
    let v = one_line_sample();
    for (k, val) in &v {
        editenv(&file, &["set", &format!("{k}={val}")]);
    }
    let theirs = std::fs::read(&file).unwrap();
    let ours = GrubCodec::default().encode(&v).unwrap();
    assert!(
        ours == theirs,
        "bascule:\n{}\ngrub-editenv:\n{}",
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs)
    );
}
