//! Facts about a host, gathered once per run by the state probe: OS family and version from
//! /etc/os-release, systemd or not, container or not.

use crate::error::{Error, ErrorKind, Result};

/// The families nodeprep supports, each with its package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsFamily {
    /// VMware Photon OS: tdnf, rpm.
    Photon,
    /// Debian, Ubuntu and derivatives: apt, dpkg.
    Debian,
    /// RHEL, Rocky, Alma, CentOS Stream, Fedora, Oracle Linux: dnf, rpm.
    Rhel,
}

/// Code outside this impl asks an `OsFamily` through its methods or an exhaustive `match`,
/// never `==`, `!=` or `matches!` against a variant: a new family is then a compiler error at
/// every place that must decide for it (the source scan in this module's tests holds it).
impl OsFamily {
    /// Every family, for what must be known before the probe tells which one a host is.
    pub const ALL: [OsFamily; 3] = [OsFamily::Photon, OsFamily::Debian, OsFamily::Rhel];
    /// A new family does not compile until it is named here, beside `ALL` which must list it.
    const _ALL_NAMED: () = match OsFamily::Photon {
        OsFamily::Photon | OsFamily::Debian | OsFamily::Rhel => (),
    };

    /// apt and dpkg: the package lists are refreshed by `apt-get update` before an install.
    pub fn uses_apt(self) -> bool {
        match self {
            OsFamily::Debian => true,
            OsFamily::Photon | OsFamily::Rhel => false,
        }
    }

    /// tdnf, Photon's package manager: its repositories are Photon's (`/etc/yum.repos.d/photon*.repo`).
    pub fn uses_tdnf(self) -> bool {
        match self {
            OsFamily::Photon => true,
            OsFamily::Debian | OsFamily::Rhel => false,
        }
    }

    /// The package manager's command.
    pub fn package_manager(self) -> &'static str {
        match self {
            OsFamily::Photon => "tdnf",
            OsFamily::Debian => "apt",
            OsFamily::Rhel => "dnf",
        }
    }

    /// The group whose members may use sudo.
    pub fn sudo_group(self) -> &'static str {
        match self {
            OsFamily::Debian => "sudo",
            OsFamily::Photon | OsFamily::Rhel => "wheel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub os: OsFamily,
    /// `ID` of os-release (photon, debian, ubuntu, rocky...).
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    /// systemd is PID 1 (/run/systemd/system exists).
    pub systemd: bool,
    /// The container technology when the host is a container (docker, podman, lxc...).
    pub container: Option<String>,
    /// The kernel's hostname.
    pub hostname: String,
}

impl Facts {
    /// Reads the facts out of an os-release text and the probe's other answers.
    pub fn from_os_release(os_release: &str) -> Result<Facts> {
        let field = |key: &str| -> String {
            os_release
                .lines()
                .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
                .next_back()
                .unwrap_or_default()
        };
        let id = field("ID");
        let like = field("ID_LIKE");
        let words: Vec<&str> = std::iter::once(id.as_str())
            .chain(like.split_whitespace())
            .collect();
        let os = if words.contains(&"photon") {
            OsFamily::Photon
        } else if words.iter().any(|w| matches!(*w, "debian" | "ubuntu")) {
            OsFamily::Debian
        } else if words.iter().any(|w| {
            matches!(
                *w,
                "rhel" | "fedora" | "centos" | "rocky" | "almalinux" | "ol"
            )
        }) {
            OsFamily::Rhel
        } else {
            let name = if id.is_empty() {
                "an OS without /etc/os-release ID".to_string()
            } else {
                format!("`{id}`")
            };
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "unsupported OS {name}: nodeprep handles Photon OS (tdnf), Debian/Ubuntu (apt) and RHEL-like (dnf) hosts"
                ),
            ));
        };
        Ok(Facts {
            os,
            id,
            version_id: field("VERSION_ID"),
            pretty_name: field("PRETTY_NAME"),
            systemd: true,
            container: None,
            hostname: String::new(),
        })
    }

    /// The major version as a number (`5.0` → 5, `12` → 12, `9.4` → 9).
    pub fn major_version(&self) -> u32 {
        self.version_id
            .split('.')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn in_container(&self) -> bool {
        self.container.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        let photon =
            Facts::from_os_release(include_str!("../tests/data/photon/os-release")).unwrap();
        assert_eq!(
            (photon.os, photon.version_id.as_str()),
            (OsFamily::Photon, "5.0")
        );
        let debian = Facts::from_os_release("ID=debian\nVERSION_ID=\"12\"\n").unwrap();
        assert_eq!((debian.os, debian.major_version()), (OsFamily::Debian, 12));
        let ubuntu =
            Facts::from_os_release("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"").unwrap();
        assert_eq!(ubuntu.os, OsFamily::Debian);
        let rocky = Facts::from_os_release(
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"",
        )
        .unwrap();
        assert_eq!((rocky.os, rocky.major_version()), (OsFamily::Rhel, 9));
        let err = Facts::from_os_release("ID=alpine\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("unsupported OS `alpine`"), "{err}");
    }
}

/// The source scan that keeps `OsFamily` decided by exhaustive matches: every Rust file of the
/// workspace, `OsFamily`'s own impl excepted.
#[cfg(test)]
mod family_scan {
    use std::path::{Path, PathBuf};

    /// The places in `source` that test an `OsFamily` against a variant instead of matching
    /// it exhaustively: `== OsFamily::X`, `OsFamily::X !=`, `matches!(os, OsFamily::X ..)`,
    /// `if let OsFamily::X = os`. As `(line number, line)`.
    fn comparisons(source: &str) -> Vec<(usize, String)> {
        // Comments hold no code: cut at `//` (a string holding `//` only hides its own line).
        let code: Vec<&str> = source
            .lines()
            .map(|l| l.find("//").map_or(l, |i| &l[..i]))
            .collect();
        let mut found = Vec::new();
        for (i, line) in code.iter().enumerate() {
            let mut from = 0;
            while let Some(at) = line[from..].find("OsFamily::") {
                let start = from + at;
                let end = start + "OsFamily::".len();
                // Before: the path that leads to it (`tasks::`, `crate::facts::`), then spaces.
                let before = line[..start]
                    .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                    .trim_end();
                // After: the variant, then spaces.
                let after = line[end..]
                    .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_')
                    .trim_start();
                let compared = [before.ends_with("=="), before.ends_with("!=")]
                    .into_iter()
                    .chain([after.starts_with("=="), after.starts_with("!=")])
                    .any(|b| b);
                // A pattern of `if let`, `while let` or `let .. else`: after `let`, before `=`.
                let in_pattern = line[..start]
                    .rfind("let ")
                    .is_some_and(|l| !line[l..start].contains('='));
                if compared || in_pattern {
                    found.push((i + 1, line.trim().to_string()));
                }
                from = end;
            }
        }
        // matches!(..): its arguments up to the closing parenthesis, over lines.
        let joined = code.join("\n");
        let mut from = 0;
        while let Some(at) = joined[from..].find("matches!(") {
            let open = from + at + "matches!".len();
            let mut depth = 0;
            let mut close = joined.len();
            for (j, c) in joined[open..].char_indices() {
                match c {
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = open + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if joined[open..close].contains("OsFamily::") {
                let line = joined[..open].matches('\n').count();
                found.push((line + 1, code[line].trim().to_string()));
            }
            from = open;
        }
        found
    }

    /// The lines of `impl OsFamily {` up to its closing brace, in facts.rs.
    fn own_impl(source: &str) -> std::ops::RangeInclusive<usize> {
        let lines: Vec<&str> = source.lines().collect();
        let start = lines
            .iter()
            .position(|l| *l == "impl OsFamily {")
            .expect("facts.rs has `impl OsFamily {`");
        let end = start + lines[start..].iter().position(|l| *l == "}").unwrap();
        start + 1..=end + 1
    }

    /// The first line of this module, in facts.rs (the file's last module).
    fn scan_module(source: &str) -> usize {
        1 + source
            .lines()
            .position(|l| l == "mod family_scan {")
            .expect("facts.rs has `mod family_scan {`")
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    rust_files(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_scan_finds_each_form() {
        for planted in [
            "if cx.facts().os == OsFamily::Debian {",
            "let photon = os==tasks::OsFamily::Photon;",
            "if os != crate::facts::OsFamily::Rhel {",
            "if OsFamily::Rhel == os {",
            "let apt = matches!(os, OsFamily::Debian);",
            "let rpm = matches!(\n    cx.facts().os,\n    OsFamily::Photon | OsFamily::Rhel\n);",
            "if let OsFamily::Photon = os {",
            "let OsFamily::Debian = cx.facts().os else {",
        ] {
            assert_eq!(comparisons(planted).len(), 1, "{planted}");
            // Anywhere in a file: after other lines, on the line it starts.
            let file = format!("fn f() {{\n    let a = 1;\n{planted}\n}}\n");
            assert_eq!(comparisons(&file)[0].0, 3, "{file}");
        }
        for fine in [
            "match os { OsFamily::Debian => 1, OsFamily::Photon | OsFamily::Rhel => 2 }",
            "assert_eq!(facts.os, OsFamily::Photon);",
            "let os = OsFamily::Rhel;",
            "for os in OsFamily::ALL {",
            "// if os == OsFamily::Debian",
            "let tool = matches!(w, \"apt\" | \"dnf\");",
        ] {
            assert_eq!(comparisons(fine), Vec::new(), "{fine}");
        }
    }

    /// A new family must be a compiler error wherever a family is decided: no `==`, `!=`,
    /// `matches!` or `if let` against an `OsFamily` variant outside `impl OsFamily`.
    #[test]
    fn families_are_matched_exhaustively() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        for dir in ["tasks", "playbooks", "xtask", "tests"] {
            rust_files(&root.join(dir), &mut files);
        }
        let facts = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/facts.rs");
        let mut offenders = Vec::new();
        for path in &files {
            let source = std::fs::read_to_string(path).unwrap();
            // In facts.rs: `OsFamily`'s impl, and this module's planted examples.
            let allowed = |n: usize| {
                *path == facts && (own_impl(&source).contains(&n) || n >= scan_module(&source))
            };
            for (n, line) in comparisons(&source) {
                if !allowed(n) {
                    let rel = path.strip_prefix(root).unwrap().display();
                    offenders.push(format!("{rel}:{n}: {line}"));
                }
            }
        }
        for family in [
            "tasks/src/network.rs",
            "tasks/src/kubelet.rs",
            "tasks/src/locale.rs",
            "playbooks/src/roles/common.rs",
            "xtask/src/runner/fanout.rs",
        ] {
            assert!(
                files.iter().any(|f| f.ends_with(family)),
                "{family} not scanned"
            );
        }
        assert!(
            offenders.is_empty(),
            "OsFamily compared with a variant (use an OsFamily method or an exhaustive match, so \
             that a new family is a compiler error here):\n{}",
            offenders.join("\n")
        );
    }
}
