//! Quoting for a POSIX shell: how an argv vector becomes the one string a remote shell (ssh)
//! or a script (the probe, the lock) reads back as the same words. Used by the transports
//! (`host/`) and the probe's scripts (`state/`) alike.

/// Quotes one word for a POSIX shell: as is when it is made of safe characters only.
///
/// Kept instead of `shlex::try_quote`: shlex also quotes `=`, `@`, `%`, `,` and `:`, and puts
/// a word holding a single quote in double quotes, so every recorded plan and `-vv` line
/// would read `'DEBIAN_FRONTEND=noninteractive'`; the plans tests pin the current form, and
/// the quoting and injection tests (tests/e2e/security.rs, over a real ssh) pin its safety.
pub fn shell_quote(word: &str) -> String {
    // A plain loop over the bytes: every path of every probe passes here.
    let bytes = word.as_bytes();
    let mut safe = !bytes.is_empty();
    let mut i = 0;
    while safe && i < bytes.len() {
        safe = matches!(
            bytes[i],
            b'a'..=b'z'
                | b'A'..=b'Z'
                | b'0'..=b'9'
                | b'_'
                | b'@'
                | b'%'
                | b'+'
                | b'='
                | b':'
                | b','
                | b'.'
                | b'/'
                | b'-'
        );
        i += 1;
    }
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Cmd, Host, Local};

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(id)`x`;\n"), "'$(id)`x`;\n'");
        // Bare: letters, digits and `_@%+=:,./-`; every other character is quoted.
        for c in (0u8..=127).map(char::from).chain(['é', '日']) {
            let bare = c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
            let word = format!("a{c}");
            let quoted = shell_quote(&word) != word;
            assert_eq!(quoted, !bare, "{c:?}");
        }
        assert_eq!(shell_join(&["echo", "a;b", "c"]), "echo 'a;b' c");
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        let nasty = [
            "a b",
            "it's",
            "$(echo PWNED)",
            "`id`",
            "x;y",
            "line\nbreak",
            "\\",
            "\"q\"",
        ];
        for word in nasty {
            let out = Local::new("t")
                .exec(&Cmd::new(&[
                    "sh",
                    "-c",
                    &format!("printf %s {}", shell_quote(word)),
                ]))
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word);
        }
    }
}
