//! File primitives. Every edit is computed on the controller from the cached contents, then
//! written through [`Ctx::write_file`] (temporary file beside the target, renamed over it); in
//! check mode nothing is written and the unified diff is recorded.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};

/// Mode and ownership of a managed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub mode: u32,
    pub owner: &'static str,
    pub group: &'static str,
}

impl Perm {
    /// 0644 root:root: what configuration files get, whatever the host's umask (Photon's is 0027).
    pub const CONFIG: Perm = Perm {
        mode: 0o644,
        owner: "root",
        group: "root",
    };

    pub const fn mode(mode: u32) -> Perm {
        Perm {
            mode,
            owner: "root",
            group: "root",
        }
    }
}

/// The whole file is `content`, with `perm`.
pub fn content(cx: &mut Ctx, path: &str, content: &str, perm: Perm) -> Result<Change> {
    edit(cx, path, Some(perm), |_| Ok(content.to_string()))
}

/// The general edit: `f` gets the current text (`None` when absent) and returns the desired
/// one. `perm`: enforced when given; `None` keeps an existing file's and uses
/// [`Perm::CONFIG`] for a new one.
pub fn edit(
    cx: &mut Ctx,
    path: &str,
    perm: Option<Perm>,
    f: impl FnOnce(Option<&str>) -> Result<String>,
) -> Result<Change> {
    let current = cx.file(path)?;
    if current.as_ref().is_some_and(|c| c.is_dir) {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("{path} is a directory, expected a file"),
        ));
    }
    let old_text = match &current {
        Some(c) => Some(String::from_utf8(c.content.clone()).map_err(|_| {
            Error::new(
                ErrorKind::Invalid,
                format!("{path} is not UTF-8 text; not editing it"),
            )
        })?),
        None => None,
    };
    let new_text = f(old_text.as_deref()).map_err(|e| prefix(e, path))?;
    let (mode, owner, group) = match (perm, &current) {
        (Some(p), _) => (p.mode, p.owner.to_string(), p.group.to_string()),
        (None, Some(c)) => (c.mode, c.owner.clone(), c.group.clone()),
        (None, None) => (0o644, "root".to_string(), "root".to_string()),
    };
    match &current {
        Some(c) if c.content == new_text.as_bytes() => {
            if c.mode == mode && c.owner == owner && c.group == group {
                return Ok(Change::Unchanged);
            }
            if cx.diff_wanted() {
                cx.record_diff(format!(
                    "{path}: mode/owner {:04o} {}:{} -> {mode:04o} {owner}:{group}\n",
                    c.mode, c.owner, c.group
                ));
            }
            if c.owner != owner || c.group != group {
                cx.apply(&["chown", &format!("{owner}:{group}"), path])?;
            }
            if c.mode != mode {
                cx.apply(&["chmod", &format!("{mode:04o}"), path])?;
            }
            cx.known_mode(path, mode, &owner, &group);
            Ok(Change::Changed)
        }
        _ => {
            if cx.diff_wanted() {
                cx.record_diff(unified_diff(path, old_text.as_deref(), &new_text));
            }
            cx.write_file(path, new_text.as_bytes(), mode, &owner, &group)?;
            Ok(Change::Changed)
        }
    }
}

fn prefix(e: Error, path: &str) -> Error {
    if e.message().starts_with(path) {
        e
    } else {
        Error::new(e.kind(), format!("{path}: {}", e.message()))
    }
}

/// A unified diff between two versions of a file (an absent file diffs as empty).
pub fn unified_diff(path: &str, old: Option<&str>, new: &str) -> String {
    let old_name = if old.is_some() {
        format!("{path} (before)")
    } else {
        "/dev/null".to_string()
    };
    similar::TextDiff::from_lines(old.unwrap_or(""), new)
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &format!("{path} (after)"))
        .to_string()
}

/// `path` is absent: removed when there, backed up first like a replaced file (see
/// [`Ctx::remove_file`]); the diff shows what goes.
pub fn absent(cx: &mut Ctx, path: &str) -> Result<Change> {
    let Some(current) = cx.file(path)? else {
        return Ok(Change::Unchanged);
    };
    if current.is_dir {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("{path} is a directory, expected a file"),
        ));
    }
    if cx.diff_wanted() {
        let diff = similar::TextDiff::from_lines(current.text().as_str(), "")
            .unified_diff()
            .context_radius(3)
            .header(&format!("{path} (before)"), "/dev/null")
            .to_string();
        cx.record_diff(diff);
    }
    cx.remove_file(path)?;
    Ok(Change::Changed)
}

/// The text with `line` present (exactly, as a whole line): appended when missing.
pub fn with_line(text: &str, line: &str) -> String {
    if text.lines().any(|l| l == line) {
        return text.to_string();
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

/// Active lines for which `pred` holds are commented out (`# ` prepended). An absent file is
/// left absent.
pub fn lines_commented(cx: &mut Ctx, path: &str, pred: impl Fn(&str) -> bool) -> Result<Change> {
    if cx.file(path)?.is_none() {
        return Ok(Change::Unchanged);
    }
    edit(cx, path, None, |old| {
        Ok(comment_lines(old.unwrap_or(""), &pred))
    })
}

pub fn comment_lines(text: &str, pred: &dyn Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && pred(line.trim_end_matches('\n')) {
            out.push_str("# ");
        }
        out.push_str(line);
    }
    out
}

/// `key=value` in `[section]` of an INI-style file (systemd's format). An active `key=` line is
/// replaced; otherwise the line goes after a commented `#key=` of the section, or at its end;
/// a missing section is appended.
pub fn ini_key(
    cx: &mut Ctx,
    path: &str,
    section: &str,
    key: &str,
    value: &str,
    perm: Option<Perm>,
) -> Result<Change> {
    edit(cx, path, perm, |old| {
        Ok(set_ini_key(old.unwrap_or(""), section, key, value))
    })
}

pub fn set_ini_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let wanted = format!("{key}={value}");
    let header = format!("[{section}]");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let key_of = |l: &str| l.split_once('=').map(|(k, _)| k.trim().to_string());
    let start = lines.iter().position(|l| l.trim() == header);
    let Some(start) = start else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&format!("{header}\n{wanted}\n"));
        return out;
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |p| start + 1 + p);
    let active: Vec<usize> = (start + 1..end)
        .filter(|&i| {
            !lines[i].trim_start().starts_with(['#', ';'])
                && key_of(&lines[i]).as_deref() == Some(key)
        })
        .collect();
    if let Some(&first) = active.first() {
        lines[first] = wanted;
        // Later duplicates would override the first: drop them.
        for &i in active[1..].iter().rev() {
            lines.remove(i);
        }
    } else if let Some(i) = (start + 1..end).find(|&i| {
        let l = lines[i]
            .trim_start()
            .trim_start_matches(['#', ';'])
            .trim_start();
        key_of(l).as_deref() == Some(key)
    }) {
        lines.insert(i + 1, wanted);
    } else {
        let mut at = end;
        while at > start + 1 && lines[at - 1].trim().is_empty() {
            at -= 1;
        }
        lines.insert(at, wanted);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// A structural edit of a TOML file: `f` edits the document; formatting and comments of
/// everything it does not touch are kept.
pub fn toml(
    cx: &mut Ctx,
    path: &str,
    perm: Option<Perm>,
    f: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<()>,
) -> Result<Change> {
    edit(cx, path, perm, |old| {
        let mut doc: toml_edit::DocumentMut = old
            .unwrap_or("")
            .parse()
            .map_err(|e| Error::new(ErrorKind::Invalid, format!("not valid TOML: {e}")))?;
        f(&mut doc)?;
        Ok(doc.to_string())
    })
}

/// `patch` merged into the JSON object `old` (none or blank: an empty object): objects merge
/// key by key, anything else replaces; keys the patch does not name are kept, and a text
/// equal in meaning is kept as it is.
pub fn merged_json(old: Option<&str>, patch: &serde_json::Value) -> Result<String> {
    let mut doc: serde_json::Value = match old {
        Some(t) if !t.trim().is_empty() => serde_json::from_str(t)
            .map_err(|e| Error::new(ErrorKind::Invalid, format!("not valid JSON: {e}")))?,
        _ => serde_json::Value::Object(Default::default()),
    };
    if !doc.is_object() {
        return Err(Error::new(
            ErrorKind::Invalid,
            "expected a JSON object at the top level",
        ));
    }
    let before = doc.clone();
    merge(&mut doc, patch);
    if doc == before {
        // Equal in meaning: keep the operator's formatting.
        return Ok(old.unwrap_or("").to_string());
    }
    let mut out = serde_json::to_string_pretty(&doc).expect("a Value always serializes");
    out.push('\n');
    Ok(out)
}

fn merge(doc: &mut serde_json::Value, patch: &serde_json::Value) {
    match (doc, patch) {
        (serde_json::Value::Object(d), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                match d.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}

/// A command that checks a candidate file before it replaces a live one (`haproxy -c -f`,
/// `visudo -c -f`, `iptables-restore --test`), with what to say when it refuses or is missing.
#[derive(Debug, Clone)]
pub struct Checker<'a> {
    /// The command; the candidate's path goes last.
    pub argv: &'a [&'a str],
    /// The error when it refuses the candidate (its output follows).
    pub rejected: String,
    /// The error when it is not installed (exit 127).
    pub missing: String,
}

/// A new text goes live only if `checker` accepts it: written first to `candidate` (`perm`,
/// never backed up: it is scratch), checked, then installed by `install`; the candidate is
/// removed whatever happens. A refusal leaves the live file as it was and carries the
/// checker's output.
pub fn checked(
    cx: &mut Ctx,
    candidate: &str,
    perm: Perm,
    text: &str,
    checker: Checker<'_>,
    install: impl FnOnce(&mut Ctx) -> Result<Change>,
) -> Result<Change> {
    cx.write_scratch(
        candidate,
        text.as_bytes(),
        perm.mode,
        perm.owner,
        perm.group,
    )?;
    let mut argv = checker.argv.to_vec();
    argv.push(candidate);
    let refused = match cx.apply_unchecked(&argv) {
        Ok(Some(out)) if !out.success() => Some(out),
        Ok(_) => None,
        Err(e) => {
            cx.remove_scratch(candidate)?;
            return Err(e);
        }
    };
    if let Some(out) = refused {
        cx.remove_scratch(candidate)?;
        let mut messages = out.stdout.clone();
        messages.extend_from_slice(&out.stderr);
        let msg = if out.status == Some(127) {
            checker.missing
        } else {
            checker.rejected
        };
        return Err(Error::new(ErrorKind::Invalid, msg).with_stderr(&messages));
    }
    let change = install(cx)?;
    cx.remove_scratch(candidate)?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn line_added_once() {
        assert_eq!(with_line("", "overlay"), "overlay\n");
        assert_eq!(with_line("a", "b"), "a\nb\n");
        assert_eq!(with_line("a\nb\n", "b"), "a\nb\n");
    }

    #[test]
    fn comment_swap_lines() {
        let fstab =
            "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# /old none swap sw 0 0\n";
        let out = comment_lines(fstab, &|l| l.split_whitespace().nth(2) == Some("swap"));
        expect![[r#"
            UUID=1 / ext4 defaults 0 1
            # /swapfile none swap sw 0 0
            # /old none swap sw 0 0
        "#]]
        .assert_eq(&out);
        assert_eq!(comment_lines(&out, &|l| l.contains("swap")), out);
    }

    #[test]
    fn ini_keys() {
        let timesyncd = "[Time]\n#NTP=\n#FallbackNTP=0.debian.pool.ntp.org\n";
        let out = set_ini_key(timesyncd, "Time", "NTP", "ntp1.lan ntp2.lan");
        expect![[r#"
            [Time]
            #NTP=
            NTP=ntp1.lan ntp2.lan
            #FallbackNTP=0.debian.pool.ntp.org
        "#]]
        .assert_eq(&out);
        assert_eq!(set_ini_key(&out, "Time", "NTP", "ntp1.lan ntp2.lan"), out);
        let replaced = set_ini_key(&out, "Time", "NTP", "ntp3.lan");
        assert!(
            replaced.contains("\nNTP=ntp3.lan\n") && !replaced.contains("ntp1"),
            "{replaced}"
        );
        assert_eq!(set_ini_key("", "Time", "NTP", "a"), "[Time]\nNTP=a\n");
        assert_eq!(
            set_ini_key("[Other]\nx=1\n", "Time", "NTP", "a"),
            "[Other]\nx=1\n\n[Time]\nNTP=a\n"
        );
        let dup = set_ini_key("[Time]\nNTP=a\nNTP=b\n[X]\nNTP=c\n", "Time", "NTP", "z");
        assert_eq!(dup, "[Time]\nNTP=z\n[X]\nNTP=c\n");
    }

    #[test]
    fn json_merges_and_keeps() {
        let old = "{\"debug\": true, \"log-opts\": {\"max-file\": \"3\"}}";
        let patch =
            serde_json::json!({"log-driver": "json-file", "log-opts": {"max-size": "100m"}});
        let out = merged_json(Some(old), &patch).unwrap();
        expect![[r#"
            {
              "debug": true,
              "log-opts": {
                "max-file": "3",
                "max-size": "100m"
              },
              "log-driver": "json-file"
            }
        "#]]
        .assert_eq(&out);
        assert_eq!(merged_json(Some(&out), &patch).unwrap(), out);
        assert!(merged_json(Some("[1]"), &patch).is_err());
        assert!(
            merged_json(Some("{oops"), &patch)
                .unwrap_err()
                .message()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn diff_is_unified() {
        let d = unified_diff("/etc/x", Some("a\nb\n"), "a\nc\n");
        expect![[r#"
            --- /etc/x (before)
            +++ /etc/x (after)
            @@ -1,2 +1,2 @@
             a
            -b
            +c
        "#]]
        .assert_eq(&d);
    }
}
