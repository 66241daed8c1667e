//! Where the package manager takes packages from: the distribution's repository files pointed
//! at a mirror, and on Photon OS the repositories moved off the vendor's retired host.
//!
//! Photon OS 5.0 installed from an older ISO names `https://packages.vmware.com/` in its repo
//! files (photon-repos 5.0-5). Later photon-repos builds rewrite those baseurls in their `%post`
//! (vmware/photon `SPECS/photon-repos/migrate-repo-url.inc`, `migrate_vmw_repo_url`, commit
//! 5a69ce2b: `^baseurl\s*=\s*https://packages\.vmware\.com/` becomes
//! `baseurl=https://packages-prod.broadcom.com/`), but that package must first be fetched from
//! the old host. [`repositories`] does the same rewrite itself, before the run's first package
//! transaction, on the same files. The target, [`PHOTON_HOST`], is a default: the vendor has
//! moved its host before, and a mirror in `[packages]` replaces it.
//!
//! A mirror stands for the distribution's host: the scheme and host of each repository URL are
//! replaced by the mirror's URL, the path kept (`https://mirror.lan/photon-remote` serves
//! `https://mirror.lan/photon-remote/photon/$releasever/photon_updates_...`), as a remote
//! repository of Artifactory, Nexus or apt-cacher-ng (`http://acng:3142/deb.debian.org`) does.
//! Photon's and the RHEL-like distributions' repo files are rewritten in place rather than
//! disabled beside a file of nodeprep's: the repository ids stay the ones every `tdnf
//! --enablerepo` and every document names, each file keeps its gpg keys and settings, and the
//! diff is the baseurl lines alone. photon-repos ships them `%config(noreplace)`: an update of
//! the package keeps the rewritten files (its own version goes beside them as `.rpmnew`).

use crate::ctx::{Change, Ctx};
use crate::error::{Error, Result};
use crate::facts::OsFamily;
use crate::file::{self, Perm};
use crate::host::Output;
use crate::reads::Reads;

/// The vendor's retired host, as Photon's older repo files name it.
pub const PHOTON_RETIRED: &str = "https://packages.vmware.com";
/// Where photon-repos' own scriptlet moves them (`migrate-repo-url.inc` at vmware/photon
/// 5a69ce2b): the default target, which `[packages] photon` overrides.
pub const PHOTON_HOST: &str = "https://packages-prod.broadcom.com";

/// The repo files photon-repos ships with a remote baseurl (the ones its scriptlet migrates).
pub const PHOTON_REPO_FILES: [&str; 6] = [
    "/etc/yum.repos.d/photon.repo",
    "/etc/yum.repos.d/photon-updates.repo",
    "/etc/yum.repos.d/photon-release.repo",
    "/etc/yum.repos.d/photon-extras.repo",
    "/etc/yum.repos.d/photon-debuginfo.repo",
    "/etc/yum.repos.d/photon-srpms.repo",
];

/// The RHEL-like distributions' own repo files (Rocky, AlmaLinux, CentOS Stream, Oracle
/// Linux): the ones a `[packages] rhel` mirror rewrites. Others (kubernetes.repo, a vendor's)
/// are left as they are.
pub const RHEL_REPO_FILES: [&str; 10] = [
    "/etc/yum.repos.d/rocky.repo",
    "/etc/yum.repos.d/rocky-addons.repo",
    "/etc/yum.repos.d/rocky-extras.repo",
    "/etc/yum.repos.d/almalinux-baseos.repo",
    "/etc/yum.repos.d/almalinux-appstream.repo",
    "/etc/yum.repos.d/almalinux-extras.repo",
    "/etc/yum.repos.d/almalinux-crb.repo",
    "/etc/yum.repos.d/centos.repo",
    "/etc/yum.repos.d/centos-addons.repo",
    "/etc/yum.repos.d/oracle-linux-ol9.repo",
];

/// apt's sources: the one-line list and the deb822 files Debian and Ubuntu install.
pub const APT_SOURCES: [&str; 3] = [
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d/debian.sources",
    "/etc/apt/sources.list.d/ubuntu.sources",
];

/// The key a re-signing mirror signs with, where each family reads it.
pub const RPM_KEY: &str = "/etc/pki/rpm-gpg/nodeprep-mirror.asc";
pub const APT_KEY: &str = "/etc/apt/trusted.gpg.d/nodeprep-mirror.asc";

/// Every file these tasks read: each family's repository files, then the mirror's keys.
const FILES: [&str; PHOTON_REPO_FILES.len() + RHEL_REPO_FILES.len() + APT_SOURCES.len() + 2] = {
    let parts: [&[&str]; 4] = [
        &PHOTON_REPO_FILES,
        &RHEL_REPO_FILES,
        &APT_SOURCES,
        &[RPM_KEY, APT_KEY],
    ];
    let mut out = [""; PHOTON_REPO_FILES.len() + RHEL_REPO_FILES.len() + APT_SOURCES.len() + 2];
    let (mut at, mut part) = (0, 0);
    while part < parts.len() {
        let mut i = 0;
        while i < parts[part].len() {
            out[at] = parts[part][i];
            at += 1;
            i += 1;
        }
        part += 1;
    }
    out
};

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&FILES);

/// The mirrors of a host (`[packages]`, resolved for it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mirrors<'a> {
    pub photon: Option<&'a str>,
    pub debian: Option<&'a str>,
    pub debian_security: Option<&'a str>,
    pub rhel: Option<&'a str>,
    /// rpm families: `gpgcheck` of the rewritten repositories.
    pub gpgcheck: Option<bool>,
    /// The mirror's signing key (ASCII-armored), when it re-signs.
    pub gpgkey: Option<&'a str>,
}

/// The repositories of this host point where they should: on Photon, at `[packages] photon`
/// or, without one, off the retired host ([`PHOTON_HOST`]); on Debian and RHEL-like hosts, at
/// their mirror when `[packages]` names one. Each file is edited (diff shown); an absent one is
/// left absent.
pub fn repositories(cx: &mut Ctx, m: &Mirrors) -> Result<Change> {
    let os = cx.facts().os;
    let (files, mirror): (&[&str], Option<&str>) = match os {
        OsFamily::Photon => (&PHOTON_REPO_FILES, m.photon),
        OsFamily::Rhel => (&RHEL_REPO_FILES, m.rhel),
        OsFamily::Debian => (&APT_SOURCES, m.debian),
    };
    let none = match os {
        OsFamily::Debian => m.debian.is_none() && m.debian_security.is_none(),
        OsFamily::Photon | OsFamily::Rhel => mirror.is_none(),
    };
    if none && !os.uses_tdnf() {
        return Ok(Change::Skipped(
            "no mirror for this distribution in [packages]".into(),
        ));
    }
    let mut change = Change::Unchanged;
    if let (Some(key), Some(_)) = (m.gpgkey, mirror) {
        let path = if os.uses_apt() { APT_KEY } else { RPM_KEY };
        change |= file::content(cx, path, key, Perm::CONFIG)?;
    }
    for &path in files {
        if cx.file(path)?.is_none() {
            continue;
        }
        change |= file::edit(cx, path, None, |old| {
            let old = old.unwrap_or_default();
            Ok(match os {
                OsFamily::Photon => photon_repo(old, mirror, m),
                OsFamily::Rhel => rhel_repo(old, mirror.unwrap_or_default(), m),
                OsFamily::Debian => apt_sources(old, m),
            })
        })?;
    }
    if change.changed() && os.uses_apt() {
        cx.packages_run().sources_changed();
    }
    if none && !change.changed() {
        return Ok(Change::Unchanged);
    }
    Ok(change)
}

/// `url` with its scheme and host (`https://host[:port]`) replaced by `mirror` (trailing
/// slash dropped); `None` when `url` is not an http(s) URL.
pub fn rebased(url: &str, mirror: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let mirror = mirror.trim_end_matches('/');
    // Already at the mirror (which may have a path of its own): as it is.
    if url
        .strip_prefix(mirror)
        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    {
        return Some(url.to_string());
    }
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    Some(format!("{}{path}", mirror.trim_end_matches('/')))
}

/// `key=value` of an INI line (spaces around `=` allowed), when the line sets `key`.
fn ini_value<'t>(line: &'t str, key: &str) -> Option<&'t str> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| v.trim())
}

/// A Photon repo file: each remote baseurl at the mirror, or (no mirror) moved off the
/// retired host exactly as `migrate_vmw_repo_url` does; `gpgcheck` as the mirror asks.
pub fn photon_repo(text: &str, mirror: Option<&str>, m: &Mirrors) -> String {
    let retired = format!("{PHOTON_RETIRED}/");
    let out = rewrite_lines(text, |line| {
        let url = ini_value(line, "baseurl")?;
        match mirror {
            Some(mirror) => {
                let new = rebased(url, mirror)?;
                (new != url).then(|| format!("baseurl={new}"))
            }
            None => url
                .strip_prefix(&retired)
                .map(|rest| format!("baseurl={PHOTON_HOST}/{rest}")),
        }
    });
    match mirror {
        Some(_) => rpm_gpg(&out, m),
        None => out,
    }
}

/// A RHEL-like repo file: `mirrorlist=` and `metalink=` commented out, the (possibly
/// commented) `baseurl=` at the mirror; `gpgcheck` and the key as the mirror asks.
pub fn rhel_repo(text: &str, mirror: &str, m: &Mirrors) -> String {
    let out = rewrite_lines(text, |line| {
        if ini_value(line, "mirrorlist").is_some() || ini_value(line, "metalink").is_some() {
            return Some(format!("#{line}"));
        }
        let bare = line.strip_prefix('#').unwrap_or(line);
        let url = ini_value(bare, "baseurl")?;
        let new = format!("baseurl={}", rebased(url, mirror)?);
        (new != line).then_some(new)
    });
    rpm_gpg(&out, m)
}

/// Each section's `gpgcheck` (and `gpgkey`, when the mirror has its own key) as `[packages]`
/// says; untouched otherwise.
fn rpm_gpg(text: &str, m: &Mirrors) -> String {
    let mut out = text.to_string();
    let sections: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_string)
        .collect();
    for s in &sections {
        if let Some(check) = m.gpgcheck {
            out = file::set_ini_key(&out, s, "gpgcheck", if check { "1" } else { "0" });
        }
        if m.gpgkey.is_some() {
            out = file::set_ini_key(&out, s, "gpgkey", &format!("file://{RPM_KEY}"));
        }
    }
    out
}

/// apt's sources (one-line `deb URI suite...` and deb822 `URIs:`): the archive's URIs at
/// `debian`, the security archive's (`security.debian.org`, `/debian-security`) at
/// `debian_security` (else at `debian` when it is on the archive's host).
pub fn apt_sources(text: &str, m: &Mirrors) -> String {
    let rebase = |uri: &str| -> Option<String> {
        let security = uri.contains("security.debian.org") || uri.contains("security.ubuntu.com");
        let mirror = if security {
            m.debian_security?
        } else {
            m.debian?
        };
        let new = rebased(uri, mirror)?;
        (new != uri).then_some(new)
    };
    rewrite_lines(text, |line| {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("URIs:") {
            let uris: Vec<String> = rest
                .split_whitespace()
                .map(|u| rebase(u).unwrap_or_else(|| u.to_string()))
                .collect();
            let new = format!("URIs: {}", uris.join(" "));
            return (new != line).then_some(new);
        }
        let mut words: Vec<&str> = trimmed.split_whitespace().collect();
        if !matches!(words.first(), Some(&"deb") | Some(&"deb-src")) {
            return None;
        }
        // `deb [options] URI suite components`.
        let mut i = 1;
        if words.get(1).is_some_and(|w| w.starts_with('[')) {
            while i < words.len() && !words[i].ends_with(']') {
                i += 1;
            }
            i += 1;
        }
        let new = rebase(words.get(i)?)?;
        words[i] = &new;
        Some(words.join(" "))
    })
}

/// `text` with each line `f` returns a replacement for replaced; the final newline kept.
fn rewrite_lines(text: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match f(body) {
            Some(new) => out.push_str(&new),
            None => out.push_str(body),
        }
        out.push_str(nl);
    }
    out
}

/// tdnf skipped repositories it could not reach (`Disabling Repo: 'NAME'`: Photon's repo files
/// say `skip_if_unavailable=1`), so the packages they hold look missing: the error names each
/// repository, its URL and the fix, instead of a missing package. `None` when tdnf said no such
/// thing.
pub fn skipped_repositories(cx: &mut Ctx, out: &Output) -> Option<Error> {
    let stdout = out.stdout_str();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let names: Vec<String> = stdout
        .lines()
        .chain(stderr.lines())
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("Disabling Repo: '")?;
            Some(rest.strip_suffix('\'').unwrap_or(rest).to_string())
        })
        .collect();
    if names.is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    for name in &names {
        let url = repo_url_named(cx, name).unwrap_or_else(|| "(baseurl not found)".into());
        lines.push(format!("repository `{name}` at {url}"));
    }
    Some(Error::new(
        crate::error::ErrorKind::Command,
        format!(
            "tdnf could not reach {} and skipped {} (skip_if_unavailable=1), so its packages look missing:\n  {}\nfix: point [packages] photon at a mirror this host reaches, or give the host a [proxy]; a repo file still naming {PHOTON_RETIRED} is moved to {PHOTON_HOST} by the `package repositories` step",
            if names.len() == 1 {
                "a repository"
            } else {
                "repositories"
            },
            if names.len() == 1 { "it" } else { "them" },
            lines.join("\n  ")
        ),
    ))
}

/// The baseurl of the Photon repository whose `name=` (its `$releasever` and `$basearch`
/// matching anything) is `name`, from the repo files already read.
fn repo_url_named(cx: &mut Ctx, name: &str) -> Option<String> {
    for path in PHOTON_REPO_FILES {
        let Ok(Some(f)) = cx.file(path) else { continue };
        let text = String::from_utf8_lossy(&f.content).into_owned();
        let mut matched = false;
        for line in text.lines() {
            if line.starts_with('[') {
                matched = false;
            }
            if let Some(n) = ini_value(line, "name") {
                matched = template_matches(n, name);
            }
            if matched && let Some(u) = ini_value(line, "baseurl") {
                return Some(u.to_string());
            }
        }
    }
    None
}

/// Whether `text` is `template` with each `$word` standing for any text.
fn template_matches(template: &str, text: &str) -> bool {
    let parts: Vec<&str> = template
        .split('$')
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                p
            } else {
                p.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
            }
        })
        .collect();
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Fixture;

    /// The files read are every family's repository files and the keys, each once.
    #[test]
    fn reads_every_repository_file_and_key() {
        let want: Vec<&str> = PHOTON_REPO_FILES
            .iter()
            .chain(&RHEL_REPO_FILES)
            .chain(&APT_SOURCES)
            .chain(&[RPM_KEY, APT_KEY])
            .copied()
            .collect();
        assert_eq!(FILES.to_vec(), want);
        assert_eq!(READS.files, &FILES[..]);
    }

    const UPDATES: &str = include_str!("../tests/data/photon/photon-updates.repo");

    #[test]
    fn photon_moved_as_photon_repos_does() {
        let m = Mirrors::default();
        let new = photon_repo(UPDATES, None, &m);
        assert_eq!(
            new,
            UPDATES.replace(
                "baseurl=https://packages.vmware.com/",
                "baseurl=https://packages-prod.broadcom.com/"
            )
        );
        // Already moved: unchanged.
        assert_eq!(photon_repo(&new, None, &m), new);
        // A mirror wins, whichever host the file names.
        let m = Mirrors {
            photon: Some("https://mirror.lan/photon-remote/"),
            gpgcheck: Some(false),
            ..Mirrors::default()
        };
        let mirrored = photon_repo(&new, m.photon, &m);
        assert!(mirrored.contains("baseurl=https://mirror.lan/photon-remote/photon/$releasever/photon_updates_$releasever_$basearch\n"), "{mirrored}");
        assert!(mirrored.contains("gpgcheck=0\n"), "{mirrored}");
        assert_eq!(photon_repo(UPDATES, m.photon, &m), mirrored);
        assert_eq!(photon_repo(&mirrored, m.photon, &m), mirrored);
        // The ISO's file:// baseurl is no remote one.
        let iso = "[photon-iso]\nbaseurl=file:///mnt/cdrom/RPMS\n";
        assert_eq!(photon_repo(iso, m.photon, &Mirrors::default()), iso);
    }

    #[test]
    fn apt_sources_at_the_mirror() {
        let m = Mirrors {
            debian: Some("http://acng:3142/deb.debian.org"),
            ..Mirrors::default()
        };
        let list = "deb http://deb.debian.org/debian bookworm main\ndeb [signed-by=/k.gpg] http://deb.debian.org/debian bookworm-updates main\ndeb http://security.debian.org/debian-security bookworm-security main\n";
        assert_eq!(
            apt_sources(list, &m),
            "deb http://acng:3142/deb.debian.org/debian bookworm main\ndeb [signed-by=/k.gpg] http://acng:3142/deb.debian.org/debian bookworm-updates main\ndeb http://security.debian.org/debian-security bookworm-security main\n"
        );
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            apt_sources(deb822, &m),
            "Types: deb\nURIs: http://acng:3142/deb.debian.org/debian\nSuites: bookworm\n"
        );
    }

    #[test]
    fn rhel_repo_at_the_mirror() {
        let text = "[baseos]\nname=Rocky Linux $releasever - BaseOS\nmirrorlist=https://mirrors.rockylinux.org/mirrorlist?arch=$basearch&repo=BaseOS-$releasever$rltype\n#baseurl=http://dl.rockylinux.org/$contentdir/$releasever/BaseOS/$basearch/os/\ngpgcheck=1\n";
        let m = Mirrors {
            rhel: Some("https://mirror.lan/rocky"),
            ..Mirrors::default()
        };
        let new = rhel_repo(text, "https://mirror.lan/rocky", &m);
        assert_eq!(
            new,
            "[baseos]\nname=Rocky Linux $releasever - BaseOS\n#mirrorlist=https://mirrors.rockylinux.org/mirrorlist?arch=$basearch&repo=BaseOS-$releasever$rltype\nbaseurl=https://mirror.lan/rocky/$contentdir/$releasever/BaseOS/$basearch/os/\ngpgcheck=1\n"
        );
        assert_eq!(rhel_repo(&new, "https://mirror.lan/rocky", &m), new);
    }

    #[test]
    fn a_skipped_repository_is_named_with_its_url() {
        let (mut cx, _rec) = Fixture::photon().ctx(crate::Mode::Apply);
        let out = Output {
            status: Some(1),
            stdout: b"Refreshing metadata for: 'VMware Photon Linux 5.0 (x86_64) Updates'\nDisabling Repo: 'VMware Photon Linux 5.0 (x86_64) Updates'\nError(1011) : No matching packages\n".to_vec(),
            stderr: Vec::new(),
        };
        let e = skipped_repositories(&mut cx, &out).unwrap().to_string();
        assert!(e.contains("repository `VMware Photon Linux 5.0 (x86_64) Updates` at https://packages.vmware.com/photon/$releasever/photon_updates_$releasever_$basearch"), "{e}");
        assert!(e.contains("fix:"), "{e}");
        assert!(template_matches(
            "A $releasever ($basearch) B",
            "A 5.0 (x86_64) B"
        ));
        assert!(!template_matches(
            "A $releasever ($basearch) B",
            "A 5.0 (x86_64) C"
        ));
    }
}
