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

impl OsFamily {
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
