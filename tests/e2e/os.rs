//! The OS of a lab host, read from the host itself (its /etc/os-release, parsed as the runner
//! parses it): tests run on either lab base (`--base debian|photon`), and an assertion whose
//! answer depends on the OS asks this rather than assuming one.

use nodeprep_tests::{Lab, Testbed};
use tasks::OsFamily;

/// The OS family of lab host `host`.
pub fn family(lab: &Lab, host: &str) -> OsFamily {
    nodeprep_tests::os_family(lab, host)
}

/// Package `name` is installed on `host`, by its package database (dpkg on Debian, rpm on
/// Photon and RHEL).
pub fn installed(lab: &Lab, host: &str, name: &str) -> bool {
    match family(lab, host) {
        OsFamily::Debian => lab
            .exec(host, &["dpkg-query", "-W", "-f", "${Status}", name])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
            .unwrap_or(false),
        OsFamily::Photon | OsFamily::Rhel => lab
            .exec(host, &["rpm", "-q", name])
            .map(|o| o.status.success())
            .unwrap_or(false),
    }
}

/// A shell command listing every installed package with its version, sorted (for snapshots).
pub use nodeprep_tests::package_list;

/// The command that installs `packages`, quietly, with the host's package manager (for a test
/// putting a host in shape by hand).
pub fn install_command(os: OsFamily, packages: &[&str]) -> String {
    let names = packages.join(" ");
    match os {
        OsFamily::Debian => format!(
            "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {names} >/dev/null"
        ),
        OsFamily::Photon => format!("tdnf install -y -q {names} >/dev/null"),
        OsFamily::Rhel => format!("dnf install -y -q {names} >/dev/null"),
    }
}
