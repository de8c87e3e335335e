//! The board's default environment as a text file of `name=value` lines: the
//! `u-boot-initial-env` that U-Boot's build makes (`make u-boot-initial-env`) and that
//! `fw_printenv -f` / `fw_setenv -f` (libubootenv) read when the stored env is blank.
//!
//! Read as libubootenv's `libuboot_load_file` reads it, as bytes: trailing `\n`/`\r`
//! are cut; an empty line or one starting with `#` is a comment; a line without `=`
//! is skipped; the name is everything before the first `=`, the value everything
//! after it; an empty value unsets the name; a later line wins. Two differences, both
//! on input libubootenv mangles: a line is read whole (libubootenv cuts lines at its
//! buffer size, 1024 or 2048 bytes, and reads the rest as a new line), and a line with
//! an empty name is skipped (U-Boot cannot store it). A NUL byte ends a line's content,
//! as it does for libubootenv's C strings.
use super::super::EnvVars;

/// The variables of a `u-boot-initial-env` file.
pub fn parse_initial_env(text: &[u8]) -> EnvVars {
    let mut vars = EnvVars::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.split(|&b| b == 0).next().unwrap_or(&[]);
        let end = line
            .iter()
            .rposition(|&b| b != b'\r')
            .map_or(0, |last| last + 1);
        let line = &line[..end];
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&line[..eq], &line[eq + 1..]);
        if name.is_empty() {
            continue;
        }
        if value.is_empty() {
            vars.remove(name);
        } else {
            vars.insert(name, value);
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_as_libubootenv_does() {
        let text = b"# comment\n\nbootcmd=run distro_bootcmd\r\n\
                     noequals\n=novalue\nbootdelay=2\nbootdelay=3\n\
                     gone=1\ngone=\nnote=caf\xe9\nlast=x";
        let vars = parse_initial_env(text);
        let expected: EnvVars = [
            ("bootcmd", &b"run distro_bootcmd"[..]),
            ("bootdelay", b"3"),
            ("note", b"caf\xe9"),
            ("last", b"x"),
        ]
        .into_iter()
        .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn value_keeps_equals_and_nul_ends_a_line() {
        let vars = parse_initial_env(b"a=b=c\nn=1\x00junk\n");
        assert!(vars["a"] == "b=c");
        assert!(vars["n"] == "1");
    }
}
