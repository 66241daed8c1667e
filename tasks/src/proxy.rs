//! An HTTP proxy for the package manager and the container runtimes, and nothing else: no
//! global environment file, no shell profile.
//!
//! - tdnf: `proxy=` in `/etc/tdnf/tdnf.conf`; dnf: `proxy=` in `/etc/dnf/dnf.conf`; apt:
//!   `/etc/apt/apt.conf.d/90nodeprep-proxy` (`Acquire::http::Proxy`, `Acquire::https::Proxy`).
//! - containerd and docker: a systemd drop-in, `http-proxy.conf`, with `HTTP_PROXY`,
//!   `HTTPS_PROXY` and `NO_PROXY`; systemd reloaded when it changed, the runtime restarted by
//!   its running step only then.
//!
//! A proxy URL may carry credentials: a file holding one is written 0600 and its diff shows
//! the URL without them (`http://<redacted>@proxy:3128`); the commands sent never hold it (the
//! content goes on stdin).

use crate::ctx::{Change, Ctx};
use crate::error::{Error, Result};
use crate::facts::OsFamily;
use crate::file::{self, Perm};
use crate::reads::Reads;
use crate::secret::Secret;
use crate::systemd;

pub const TDNF_CONF: &str = "/etc/tdnf/tdnf.conf";
pub const DNF_CONF: &str = "/etc/dnf/dnf.conf";
pub const APT_PROXY: &str = "/etc/apt/apt.conf.d/90nodeprep-proxy";
pub const CONTAINERD_DROP_IN: &str = "/etc/systemd/system/containerd.service.d/http-proxy.conf";
pub const DOCKER_DROP_IN: &str = "/etc/systemd/system/docker.service.d/http-proxy.conf";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[
    TDNF_CONF,
    DNF_CONF,
    APT_PROXY,
    CONTAINERD_DROP_IN,
    DOCKER_DROP_IN,
]);

/// A host's proxy: the URLs (secrets: they may hold credentials) and the whole `NO_PROXY` of
/// the container runtimes, as the inventory computes it.
#[derive(Debug, Clone, Copy)]
pub struct Proxy<'a> {
    pub http: Option<&'a Secret>,
    pub https: Option<&'a Secret>,
    pub no_proxy: &'a str,
}

impl Proxy<'_> {
    /// The one proxy of a package manager that takes one: `http`, else `https`.
    fn one(&self) -> Option<&Secret> {
        self.http.or(self.https)
    }

    fn has_credentials(&self) -> bool {
        [self.http, self.https]
            .into_iter()
            .flatten()
            .any(|s| has_credentials(s.expose()))
    }
}

fn has_credentials(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default().contains('@'))
        .unwrap_or(false)
}

/// `url` without its credentials (`http://<redacted>@proxy:3128`).
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://<redacted>@{host}{}", &rest[end..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// The mode of a file holding these URLs: 0600 when one has credentials.
fn perm(p: &Proxy) -> Perm {
    if p.has_credentials() {
        Perm::mode(0o600)
    } else {
        Perm::CONFIG
    }
}

/// Writes `content` to `path` with `perm`; the diff is of `shown` (the same text with the
/// credentials redacted), never of the content itself.
fn secret_content(
    cx: &mut Ctx,
    path: &str,
    content: &str,
    shown: &str,
    perm: Perm,
) -> Result<Change> {
    let current = cx.file(path)?;
    if let Some(c) = &current
        && c.content == content.as_bytes()
        && c.mode == perm.mode
        && c.owner == perm.owner
        && c.group == perm.group
    {
        return Ok(Change::Unchanged);
    }
    if cx.diff_wanted() {
        let old = current
            .as_ref()
            .map(|c| redact_all(&String::from_utf8_lossy(&c.content)));
        cx.record_diff(file::unified_diff(path, old.as_deref(), shown));
    }
    cx.write_file(path, content.as_bytes(), perm.mode, perm.owner, perm.group)?;
    Ok(Change::Changed)
}

/// Every URL with credentials in `text` shown without them.
fn redact_all(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == '=')
        .map(|w| {
            let trimmed = w.trim_end_matches(|c: char| c.is_whitespace() || c == '"' || c == '=');
            if trimmed.contains("://") && has_credentials(trimmed) {
                format!("{}{}", redacted(trimmed), &w[trimmed.len()..])
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// The package manager goes through the proxy: tdnf's and dnf's `proxy=` in `[main]`, apt's
/// drop-in. Without a proxy: nodeprep's apt drop-in removed if it is there, otherwise nothing
/// (a `proxy=` in tdnf.conf or dnf.conf is the operator's).
pub fn package_proxy(cx: &mut Ctx, p: Option<&Proxy>) -> Result<Change> {
    let os = cx.facts().os;
    let Some(p) = p else {
        return match os {
            OsFamily::Debian if cx.file(APT_PROXY)?.is_some() => file::absent(cx, APT_PROXY),
            _ => Ok(Change::Skipped("no [proxy] for this host".into())),
        };
    };
    match os {
        OsFamily::Photon | OsFamily::Rhel => {
            let path = if os.uses_tdnf() { TDNF_CONF } else { DNF_CONF };
            let Some(url) = p.one() else {
                return Ok(Change::Skipped("no proxy URL".into()));
            };
            let old = cx
                .file(path)?
                .map(|f| String::from_utf8_lossy(&f.content).into_owned())
                .unwrap_or_default();
            let new = file::set_ini_key(&old, "main", "proxy", url.expose());
            let shown = file::set_ini_key(&old, "main", "proxy", &redacted(url.expose()));
            secret_content(cx, path, &new, &shown, perm(p))
        }
        OsFamily::Debian => {
            let (text, shown) = apt_conf(p);
            secret_content(cx, APT_PROXY, &text, &shown, perm(p))
        }
    }
}

/// apt's drop-in: the file and its shown form.
pub fn apt_conf(p: &Proxy) -> (String, String) {
    let mut text = String::from("// Written by nodeprep from the inventory's [proxy].\n");
    let mut shown = text.clone();
    for (scheme, url) in [("http", p.http.or(p.https)), ("https", p.https.or(p.http))] {
        if let Some(url) = url {
            text.push_str(&format!("Acquire::{scheme}::Proxy \"{}\";\n", url.expose()));
            shown.push_str(&format!(
                "Acquire::{scheme}::Proxy \"{}\";\n",
                redacted(url.expose())
            ));
        }
    }
    (text, shown)
}

/// The systemd drop-in of a container runtime: the file and its shown form.
pub fn drop_in(p: &Proxy) -> (String, String) {
    let head = "# Written by nodeprep from the inventory's [proxy] (README: \"Hosts without the internet\").\n[Service]\n";
    let (mut text, mut shown) = (head.to_string(), head.to_string());
    for (var, url) in [
        ("HTTP_PROXY", p.http.or(p.https)),
        ("HTTPS_PROXY", p.https.or(p.http)),
    ] {
        if let Some(url) = url {
            text.push_str(&format!("Environment=\"{var}={}\"\n", url.expose()));
            shown.push_str(&format!(
                "Environment=\"{var}={}\"\n",
                redacted(url.expose())
            ));
        }
    }
    let no = format!("Environment=\"NO_PROXY={}\"\n", p.no_proxy);
    text.push_str(&no);
    shown.push_str(&no);
    (text, shown)
}

/// The runtime's drop-in `path` holds the proxy (systemd reloaded when it changed: the
/// runtime's running step restarts it then). Without a proxy, nodeprep's drop-in is removed
/// if it is there.
pub fn runtime_proxy(cx: &mut Ctx, path: &str, p: Option<&Proxy>) -> Result<Change> {
    let change = match p {
        Some(p) => {
            let (text, shown) = drop_in(p);
            secret_content(cx, path, &text, &shown, perm(p))?
        }
        None if cx.file(path)?.is_some() => file::absent(cx, path)?,
        None => return Ok(Change::Skipped("no [proxy] for this host".into())),
    };
    if change.changed() {
        let _reloaded = systemd::daemon_reload(cx)?;
    }
    Ok(change)
}

/// The proxy the package manager is configured with (from the files [`package_proxy`]
/// writes, as the probe read them), without its credentials; `None` when there is none.
pub fn package_proxy_in_use(cx: &Ctx) -> Option<String> {
    let os = cx.facts().os;
    let path = match os {
        OsFamily::Photon => TDNF_CONF,
        OsFamily::Rhel => DNF_CONF,
        OsFamily::Debian => APT_PROXY,
    };
    // Only as the probe read it (or this run wrote it): never one more round trip for it.
    let known = cx.state().files.get(path)?.as_ref()?;
    let text = String::from_utf8_lossy(&known.content).into_owned();
    text.lines().find_map(|l| {
        let l = l.trim();
        let url = match os {
            OsFamily::Debian => l
                .strip_prefix("Acquire::http::Proxy")
                .or_else(|| l.strip_prefix("Acquire::https::Proxy"))?
                .trim()
                .trim_end_matches(';')
                .trim_matches('"'),
            OsFamily::Photon | OsFamily::Rhel => {
                let (k, v) = l.split_once('=')?;
                if k.trim() != "proxy" {
                    return None;
                }
                v.trim()
            }
        };
        Some(redacted(url))
    })
}

/// A package manager's failure on a host that goes through a proxy: said with the proxy (no
/// credentials) and the host, since an unreachable proxy is the likely cause.
pub fn through_proxy(cx: &mut Ctx, e: Error) -> Error {
    match package_proxy_in_use(cx) {
        Some(p) => Error::new(
            e.kind(),
            format!(
                "{}\n  host {} fetches its packages through the proxy {p} ([proxy] of the inventory): check that it runs and that this host reaches it",
                e.message(),
                cx.host_name()
            ),
        ),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::testing::Fixture;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn credentials_never_in_the_diff_and_the_file_is_0600() {
        let (http, https) = (
            secret("http://ops:s3cret@proxy.lan:3128"),
            secret("http://ops:s3cret@proxy.lan:3128"),
        );
        let p = Proxy {
            http: Some(&http),
            https: Some(&https),
            no_proxy: "localhost,.svc",
        };
        let (mut cx, _rec) = Fixture::debian().absent(APT_PROXY).ctx(Mode::Check);
        let changed = cx.step("proxy", |cx| package_proxy(cx, Some(&p))).unwrap();
        assert!(changed.changed());
        let r = cx.records().last().unwrap();
        let diff = r.diffs.join("");
        assert!(!diff.contains("s3cret"), "{diff}");
        assert!(diff.contains("http://<redacted>@proxy.lan:3128"), "{diff}");
        assert!(r.actions.iter().all(|a| !a.to_string().contains("s3cret")));
        assert!(
            r.actions
                .iter()
                .any(|a| a.to_string() == format!("write {APT_PROXY} 0600 root:root"))
        );
        assert_eq!(
            package_proxy_in_use(&cx).as_deref(),
            Some("http://<redacted>@proxy.lan:3128")
        );
        let e = through_proxy(&mut cx, Error::other("apt failed")).to_string();
        assert!(
            e.contains("proxy http://<redacted>@proxy.lan:3128") && !e.contains("s3cret"),
            "{e}"
        );
    }

    #[test]
    fn drop_in_and_idempotence() {
        let http = secret("http://proxy.lan:3128");
        let p = Proxy {
            http: Some(&http),
            https: None,
            no_proxy: "a,b",
        };
        let (text, shown) = drop_in(&p);
        assert_eq!(text, shown);
        assert!(text.contains("Environment=\"HTTPS_PROXY=http://proxy.lan:3128\"\n"));
        assert!(text.ends_with("Environment=\"NO_PROXY=a,b\"\n"));
        let (mut cx, _rec) = Fixture::debian()
            .absent(CONTAINERD_DROP_IN)
            .ctx(Mode::Apply);
        assert!(
            runtime_proxy(&mut cx, CONTAINERD_DROP_IN, Some(&p))
                .unwrap()
                .changed()
        );
        let sent = cx.actions().len();
        assert_eq!(
            runtime_proxy(&mut cx, CONTAINERD_DROP_IN, Some(&p)).unwrap(),
            Change::Unchanged
        );
        assert_eq!(cx.actions().len(), sent);
        // Taken away from the inventory: nodeprep's drop-in goes.
        assert!(
            runtime_proxy(&mut cx, CONTAINERD_DROP_IN, None)
                .unwrap()
                .changed()
        );
        assert!(matches!(
            runtime_proxy(&mut cx, CONTAINERD_DROP_IN, None).unwrap(),
            Change::Skipped(_)
        ));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_all("proxy=http://a:b@h:1\n"),
            "proxy=http://<redacted>@h:1\n"
        );
        assert_eq!(redact_all("x \"http://h:1\";"), "x \"http://h:1\";");
    }
}
