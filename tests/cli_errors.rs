//! The shape of errors where the user meets them: the first line names the problem
//! (a config error, a public key given to sign with, an unsupported URL scheme), and
//! the exit codes are the ones the README states (1 for errors, 2 for a command line
//! that does not parse).
mod common;

use common::{BundleOpts, Fixture};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The first line of `stderr` that is an error (log lines may come before it).
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("bascule: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

#[test]
fn config_error_names_the_problem_and_line_on_its_first_line() {
    let fx = Fixture::new();
    let config = std::fs::read_to_string(fx.config()).unwrap();
    std::fs::write(fx.config(), format!("colour = \"red\"\n{config}")).unwrap();
    let run = fx.run(&["status"]).fails_with(&["colour"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let first = error_line(&run.stderr);
    assert!(
        first.contains("system.toml: unknown key `colour`") && first.contains("at line 1"),
        "first line does not name the key and its line: {first}\n{}",
        run.stderr
    );
}

#[test]
fn argument_errors_exit_2_and_the_readme_says_so() {
    let fx = Fixture::new();
    for args in [
        &["install"][..],
        &["install", "b.bundle", "--verify", "sometimes"],
        &["no-such-command"],
    ] {
        let run = fx.run(args);
        assert_eq!(run.code, 2, "bascule {args:?}:\n{}", run.stderr);
        assert!(run.stderr.contains("--help"), "{}", run.stderr);
    }
    // An error of a command that did parse is exit 1.
    let run = fx.run(&["install", "missing.bundle"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let readme = readme().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        readme.contains("Errors print a first line naming the problem and exit 1")
            && readme
                .contains("does not parse (unknown option, missing or malformed argument) exits 2"),
        "README does not state the exit codes"
    );
}

#[test]
fn signing_with_a_public_key_says_it_is_a_public_key() {
    let fx = Fixture::new();
    let image = fx.image(4096, 3);
    let public = fx.path("signing/release.pub");
    let out = fx.path("bundles/pub.bundle");
    let run = common::Run::from_output(
        fx.bundle_cmd(&image, &BundleOpts::default().key(&public), &out)
            .output()
            .unwrap(),
    );
    let run = run.fails_with(&["is a public key", "release.pub", "secret key"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("chmod"), "{}", run.stderr);
    assert!(!out.exists(), "a bundle was written");
}

#[test]
fn install_from_an_unsupported_url_scheme_says_so() {
    let fx = Fixture::new();
    let before = fx.snapshot();
    let run = fx
        .run(&[
            "install",
            "ftp://updates.example/r.bundle",
            "--progress",
            "none",
        ])
        .fails_with(&[
            "unsupported URL scheme \"ftp\"",
            "ftp://updates.example/r.bundle",
        ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("No such file"), "{}", run.stderr);
    fx.assert_untouched(&before);
}
