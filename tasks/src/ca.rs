//! Local CA certificates added to the system trust store.
//!
//! | | package | files (mode 0644) | the bundle applications read | then, when a file changed or the bundle lacks one |
//! |---|---|---|---|---|
//! | Photon | `openssl-c_rehash` | /etc/ssl/certs/STEM.pem (must end in `.pem`) | /etc/pki/tls/certs/ca-bundle.crt | `rehash_ca_certificates.sh` |
//! | Debian | `ca-certificates` | /usr/local/share/ca-certificates/STEM.crt (must end in `.crt`) | /etc/ssl/certs/ca-certificates.crt | `update-ca-certificates` |
//! | RHEL | `ca-certificates` | /etc/pki/ca-trust/source/anchors/STEM.pem | /etc/pki/tls/certs/ca-bundle.crt | `update-ca-trust extract` |
//!
//! The bundle is what TLS clients read (curl, tdnf, apt, containerd's registries): a
//! certificate file in the source directory that the bundle does not hold (a bundle rebuilt
//! without it by an update or a manual rehash gone wrong) trusts nothing, so the step also
//! checks that the bundle holds each certificate (PEM blocks compared without their line
//! breaks) and rebuilds it the distribution's way when it does not. On Photon OS the bundle is
//! `ca-certificates-pki`'s, rebuilt from `/etc/ssl/certs/*.pem` by `rehash_ca_certificates.sh`
//! (openssl-c_rehash; vmware/photon `SPECS/ca-certificates/ca-certificates.spec` and
//! `SPECS/openssl/openssl.spec`, see tests/data/photon/README.md).
//!
//! STEM is the given file name without its extension (`corp-root.crt` → `corp-root`). A
//! certificate file is public; a private key is refused (these files are world-readable).
//! Certificates removed from the inventory are not removed from hosts (nothing marks which
//! files nodeprep put there).
//!
//! Steps: "ca packages" ([`ca_packages`]), "ca certificates" ([`ca_files`]) and the handler
//! [`ca_trust_updated`]; or all three as one step: [`ca_certificates`].

use crate::ctx::{Change, Ctx};
use crate::error::{Error, Result};
use crate::facts::OsFamily;
use crate::file::{self, Perm};
use crate::pkg;
use crate::reads::Reads;

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::NONE;

/// Where and how one OS family trusts local CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub package: &'static str,
    pub dir: &'static str,
    pub ext: &'static str,
    pub update: &'static [&'static str],
    /// The one bundle applications read, which `update` rebuilds.
    pub bundle: &'static str,
}

/// Photon OS's and RHEL's bundle (`ca-certificates-pki` on Photon).
pub const PKI_BUNDLE: &str = "/etc/pki/tls/certs/ca-bundle.crt";
/// Debian's and Ubuntu's bundle (`update-ca-certificates`).
pub const DEBIAN_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn layout(os: OsFamily) -> Layout {
    match os {
        OsFamily::Photon => Layout {
            package: "openssl-c_rehash",
            dir: "/etc/ssl/certs",
            ext: "pem",
            update: &["rehash_ca_certificates.sh"],
            bundle: PKI_BUNDLE,
        },
        OsFamily::Debian => Layout {
            package: "ca-certificates",
            dir: "/usr/local/share/ca-certificates",
            ext: "crt",
            update: &["update-ca-certificates"],
            bundle: DEBIAN_BUNDLE,
        },
        OsFamily::Rhel => Layout {
            package: "ca-certificates",
            dir: "/etc/pki/ca-trust/source/anchors",
            ext: "pem",
            update: &["update-ca-trust", "extract"],
            bundle: PKI_BUNDLE,
        },
    }
}

/// The file name's stem: `corp-root.crt` → `corp-root`. Plain names only.
pub fn stem(name: &str) -> Result<&str> {
    let stem = [".pem", ".crt", ".cer", ".cert"]
        .iter()
        .find_map(|e| name.strip_suffix(e))
        .unwrap_or(name);
    let ok = !stem.is_empty()
        && !stem.starts_with('.')
        && stem.len() <= 200
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-+".contains(&b));
    if ok {
        Ok(stem)
    } else {
        Err(Error::invalid(format!(
            "invalid certificate file name {name:?}: expected a plain name such as corp-root.crt"
        )))
    }
}

/// A PEM text with one or more certificates and nothing secret: line ends normalised to `\n`,
/// one final newline.
pub fn normalized_pem(name: &str, pem: &str) -> Result<String> {
    let text = pem.replace("\r\n", "\n");
    if text.contains("PRIVATE KEY-----") {
        return Err(Error::invalid(format!(
            "{name} holds a private key: refusing to install it as a (world-readable) CA certificate"
        )));
    }
    let begins = text.matches("-----BEGIN CERTIFICATE-----").count();
    let ends = text.matches("-----END CERTIFICATE-----").count();
    if begins == 0 || begins != ends {
        return Err(Error::invalid(format!(
            "{name} is not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)"
        )));
    }
    let mut out = text.trim_end().to_string();
    out.push('\n');
    Ok(out)
}

/// The certificates of a PEM text, each as its base64 body without whitespace (how a bundle
/// and a source file may differ: line ends, line lengths, text around the blocks).
pub fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b) = body.take() {
                out.push(b);
            }
        } else if let Some(b) = body.as_mut() {
            b.extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    out
}

/// The names of `certs` (name, PEM) whose certificates are not all in `bundle`.
pub fn missing_from_bundle<'c>(bundle: &str, certs: &'c [(String, String)]) -> Vec<&'c str> {
    let have: std::collections::HashSet<String> = pem_blocks(bundle).into_iter().collect();
    certs
        .iter()
        .filter(|(_, pem)| pem_blocks(pem).iter().any(|b| !have.contains(b)))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The certificates of `certs` this host's bundle lacks (all of them when there is no bundle),
/// read through the cache.
pub fn bundle_lacks<'c>(cx: &mut Ctx, certs: &'c [(String, String)]) -> Result<Vec<&'c str>> {
    let bundle = layout(cx.facts().os).bundle;
    let text = match cx.file(bundle)? {
        Some(f) if !f.is_dir => String::from_utf8_lossy(&f.content).into_owned(),
        _ => String::new(),
    };
    Ok(missing_from_bundle(&text, certs))
}

/// The target path of each certificate on this OS family, with its normalised contents.
pub fn planned(os: OsFamily, certs: &[(String, String)]) -> Result<Vec<(String, String)>> {
    let l = layout(os);
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, pem) in certs {
        let path = format!("{}/{}.{}", l.dir, stem(name)?, l.ext);
        if out.iter().any(|(p, _)| *p == path) {
            return Err(Error::invalid(format!(
                "two certificates would both be installed as {path}"
            )));
        }
        out.push((path, normalized_pem(name, pem)?));
    }
    Ok(out)
}

/// The package [`ca_packages`] ensures on this host, for the plan's one transaction.
pub fn packages(cx: &mut Ctx) -> Result<Vec<String>> {
    Ok(vec![layout(cx.facts().os).package.to_string()])
}

/// Step "ca packages": the tools that rebuild the trust store.
pub fn ca_packages(cx: &mut Ctx) -> Result<Change> {
    let package = layout(cx.facts().os).package;
    pkg::installed(cx, &[package])
}

/// Step "ca certificates": each certificate is in the trust store's source directory, mode
/// 0644 root:root. Changed when any file changed: run [`ca_trust_updated`] then.
pub fn ca_files(cx: &mut Ctx, certs: &[(String, String)]) -> Result<Change> {
    let plan = planned(cx.facts().os, certs)?;
    let mut paths: Vec<&str> = plan.iter().map(|(p, _)| p.as_str()).collect();
    // The bundle too: [`ca_bundle_rebuilt`] reads it next.
    paths.push(layout(cx.facts().os).bundle);
    cx.prefetch(&paths)?;
    let mut c = Change::Unchanged;
    for (path, pem) in &plan {
        c |= file::content(cx, path, pem, Perm::CONFIG)?;
    }
    Ok(c)
}

/// Handler: rebuilds the trust store when a certificate `changed`.
pub fn ca_trust_updated(cx: &mut Ctx, changed: bool) -> Result<Change> {
    if !changed {
        return Ok(Change::Unchanged);
    }
    let l = layout(cx.facts().os);
    cx.apply_touching(l.update, &[l.bundle])?;
    cx.note_done_or_would(
        format!("trust store rebuilt ({})", l.update.join(" ")),
        format!("would rebuild the trust store ({})", l.update.join(" ")),
    );
    Ok(Change::Changed)
}

/// The bundle applications read holds each of `certs`: rebuilt when a certificate file
/// `changed` (as [`ca_trust_updated`]) or, when none did, when the bundle lacks one of them
/// (read from the probe; named in the diff). After a rebuild the bundle is read again when
/// next needed (`verify`'s check "ca bundle"); in check mode the cache holds what the rebuild
/// would leave (the bundle and the certificates it lacked), for the steps after.
pub fn ca_bundle_rebuilt(
    cx: &mut Ctx,
    certs: &[(String, String)],
    changed: bool,
) -> Result<Change> {
    let bundle = layout(cx.facts().os).bundle;
    let lacking = bundle_lacks(cx, certs)?;
    if !changed {
        if lacking.is_empty() {
            return Ok(Change::Unchanged);
        }
        cx.note_change(format!("{bundle} lacks {}", lacking.join(", ")));
    }
    let mut after = match cx.file(bundle)? {
        Some(f) if !f.is_dir => String::from_utf8_lossy(&f.content).into_owned(),
        _ => String::new(),
    };
    let c = ca_trust_updated(cx, true)?;
    if cx.check_mode() {
        for (name, pem) in certs {
            if lacking.contains(&name.as_str()) {
                after.push_str(&normalized_pem(name, pem)?);
            }
        }
        cx.known(bundle, &after);
    }
    Ok(c)
}

/// The three in one step: packages, files, and the trust store rebuilt when a file changed.
pub fn ca_certificates(cx: &mut Ctx, certs: &[(String, String)]) -> Result<Change> {
    if certs.is_empty() {
        return Ok(Change::Unchanged);
    }
    planned(cx.facts().os, certs)?;
    let mut c = ca_packages(cx)?;
    let files = ca_files(cx, certs)?;
    c |= ca_bundle_rebuilt(cx, certs, files.changed())?;
    Ok(c | files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::{Fixture, actions as strings};
    use expect_test::expect;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\r\nMIIBszCCAVmgAwIBAgIUQ0FSb290\r\n-----END CERTIFICATE-----\r\n\r\n";

    fn certs() -> Vec<(String, String)> {
        vec![
            ("corp-root.crt".into(), PEM.into()),
            ("corp-issuing".into(), PEM.into()),
        ]
    }

    #[test]
    fn names_and_contents() {
        assert_eq!(stem("corp-root.crt").unwrap(), "corp-root");
        assert_eq!(stem("corp.root.pem").unwrap(), "corp.root");
        for bad in ["", ".crt", "../x.crt", "a/b.pem", ".hidden", "a b.crt"] {
            assert!(stem(bad).is_err(), "{bad:?}");
        }
        expect![[r#"
            -----BEGIN CERTIFICATE-----
            MIIBszCCAVmgAwIBAgIUQ0FSb290
            -----END CERTIFICATE-----
        "#]]
        .assert_eq(&normalized_pem("x", PEM).unwrap());
        assert!(normalized_pem("x", "hello").is_err());
        let key = format!("{PEM}-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n");
        assert!(
            normalized_pem("x", &key)
                .unwrap_err()
                .message()
                .contains("private key")
        );
        let dup = vec![
            ("a.crt".to_string(), PEM.to_string()),
            ("a.pem".to_string(), PEM.to_string()),
        ];
        assert!(planned(OsFamily::Debian, &dup).is_err());
    }

    /// openssl-c_rehash comes with every minimal install (cloud-init requires it).
    #[test]
    fn photon_plan() {
        let (mut cx, rec) = Fixture::photon()
            .absent("/etc/ssl/certs/corp-root.pem")
            .file("/etc/ssl/certs/corp-issuing.pem", "old\n", 0o640)
            .file(PKI_BUNDLE, OTHER, 0o644)
            .ctx(Mode::Apply);
        assert_eq!(ca_certificates(&mut cx, &certs()).unwrap(), Change::Changed);
        expect![[r#"
            [
                "write /etc/ssl/certs/corp-root.pem 0644 root:root",
                "write /etc/ssl/certs/corp-issuing.pem 0644 root:root",
                "run rehash_ca_certificates.sh",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert!(
            rec.commands().iter().all(|c| c.argv != ["sh", "-s"]),
            "no read: all were cached"
        );
    }

    /// A bundle as `rehash_ca_certificates.sh` leaves it: another CA, then the operator's (its
    /// lines wrapped differently: compared without line breaks).
    const OTHER: &str = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0B\n-----END CERTIFICATE-----\n";

    fn bundle_with(pem: &str) -> String {
        format!("{OTHER}{}", pem.replace("MIIBszCCAVmg", "MIIBszCC\nAVmg"))
    }

    #[test]
    fn photon_no_change() {
        let pem = normalized_pem("x", PEM).unwrap();
        let (mut cx, rec) = Fixture::photon()
            .packages(&[("openssl-c_rehash", "3.0.16-2.ph5")])
            .file("/etc/ssl/certs/corp-root.pem", &pem, 0o644)
            .file("/etc/ssl/certs/corp-issuing.pem", &pem, 0o644)
            .file(PKI_BUNDLE, &bundle_with(&pem), 0o644)
            .ctx(Mode::Apply);
        assert_eq!(
            ca_certificates(&mut cx, &certs()).unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty());
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn only_mode_fixed_still_rehashes() {
        // Photon's umask left a 0640 file: unreadable for non-root TLS clients.
        let pem = normalized_pem("x", PEM).unwrap();
        let (mut cx, _rec) = Fixture::photon()
            .packages(&[("openssl-c_rehash", "3.0.16-2.ph5")])
            .file("/etc/ssl/certs/corp-root.pem", &pem, 0o640)
            .file(PKI_BUNDLE, &bundle_with(&pem), 0o644)
            .ctx(Mode::Apply);
        assert_eq!(
            ca_certificates(&mut cx, &certs()[..1]).unwrap(),
            Change::Changed
        );
        assert_eq!(
            strings(&cx),
            [
                "run chmod 0644 /etc/ssl/certs/corp-root.pem",
                "run rehash_ca_certificates.sh"
            ]
        );
    }

    #[test]
    fn debian_check_mode_reads_once() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("ca-certificates", "20230311")])
            .ctx(Mode::Check);
        let reply = "\n@@np:none /usr/local/share/ca-certificates/corp-root.crt\n\n@@np:none /usr/local/share/ca-certificates/corp-issuing.crt\n\n@@np:none /etc/ssl/certs/ca-certificates.crt\n\n@@np:end -\n";
        rec.reply(
            "sh -s",
            Output {
                status: Some(0),
                stdout: reply.as_bytes().to_vec(),
                stderr: Vec::new(),
            },
        );
        assert_eq!(ca_certificates(&mut cx, &certs()).unwrap(), Change::Changed);
        expect![[r#"
            [
                "write /usr/local/share/ca-certificates/corp-root.crt 0644 root:root",
                "write /usr/local/share/ca-certificates/corp-issuing.crt 0644 root:root",
                "run update-ca-certificates",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        // One read for both files, and nothing else sent.
        let sent = rec.commands();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].argv, ["sh", "-s"]);
    }

    #[test]
    fn rhel_plan() {
        let (mut cx, _rec) = Fixture::rhel()
            .packages(&[("ca-certificates", "2024.2.69_v8.0.303-91.4.el9_4")])
            .absent("/etc/pki/ca-trust/source/anchors/corp-root.pem")
            .absent(PKI_BUNDLE)
            .ctx(Mode::Apply);
        assert_eq!(
            ca_certificates(&mut cx, &certs()[..1]).unwrap(),
            Change::Changed
        );
        assert_eq!(
            strings(&cx),
            [
                "write /etc/pki/ca-trust/source/anchors/corp-root.pem 0644 root:root",
                "run update-ca-trust extract"
            ]
        );
    }

    #[test]
    fn bad_input_changes_nothing() {
        let (mut cx, _rec) = Fixture::photon().ctx(Mode::Apply);
        let bad = vec![
            ("ok.crt".to_string(), PEM.to_string()),
            ("../evil".to_string(), PEM.to_string()),
        ];
        assert!(ca_certificates(&mut cx, &bad).is_err());
        assert!(
            cx.actions().is_empty(),
            "validated before the package install"
        );
    }

    #[test]
    fn pem_blocks_compared_without_line_breaks() {
        let pem = normalized_pem("x", PEM).unwrap();
        let certs = certs();
        assert!(missing_from_bundle(&bundle_with(&pem), &certs).is_empty());
        assert_eq!(
            missing_from_bundle(OTHER, &certs),
            ["corp-root.crt", "corp-issuing"]
        );
        assert_eq!(missing_from_bundle("", &certs[..1]), ["corp-root.crt"]);
        assert_eq!(pem_blocks(&format!("{OTHER}\r\n{PEM}")).len(), 2);
    }

    /// A bundle rebuilt without the operator's CA (its file still there): rebuilt the
    /// distribution's way, on each family.
    #[test]
    fn bundle_without_the_ca_rebuilt() {
        let pem = normalized_pem("x", PEM).unwrap();
        let one = &certs()[..1];
        for (fixture, file, want) in [
            (
                Fixture::photon().packages(&[("openssl-c_rehash", "3.0.16-2.ph5")]),
                "/etc/ssl/certs/corp-root.pem",
                "run rehash_ca_certificates.sh",
            ),
            (
                Fixture::debian().packages(&[("ca-certificates", "20230311")]),
                "/usr/local/share/ca-certificates/corp-root.crt",
                "run update-ca-certificates",
            ),
            (
                Fixture::rhel().packages(&[("ca-certificates", "2024.2.69_v8.0.303-91.4.el9_4")]),
                "/etc/pki/ca-trust/source/anchors/corp-root.pem",
                "run update-ca-trust extract",
            ),
        ] {
            let os = file;
            let bundle = match file {
                f if f.starts_with("/usr/local") => DEBIAN_BUNDLE,
                _ => PKI_BUNDLE,
            };
            let (mut cx, _rec) = fixture
                .file(file, &pem, 0o644)
                .file(bundle, OTHER, 0o644)
                .ctx(Mode::Apply);
            assert_eq!(layout(cx.facts().os).bundle, bundle, "{os:?}");
            assert_eq!(ca_certificates(&mut cx, one).unwrap(), Change::Changed);
            assert_eq!(strings(&cx), [want], "{os:?}");
        }
    }
}
