//! What the lab needs on this machine: a running docker engine, mmdebstrap and (for the VM
//! test) QEMU. On a Debian or Ubuntu machine where nodeprep runs as root, missing pieces are
//! installed with apt-get and dockerd is started; elsewhere the error says what to install.

use crate::runner::fanout::is_root;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

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

/// Makes sure docker (engine running), mmdebstrap and QEMU are there.
pub fn ensure(sh: &Shell) -> Result<()> {
    let mut missing = Vec::new();
    if !have(sh, "dockerd") && !engine_up(sh) {
        missing.push("docker.io");
    }
    if !have(sh, "mmdebstrap") {
        missing.push("mmdebstrap");
    }
    let mut qemu_utils = None;
    if !have(sh, "qemu-system-x86_64") {
        missing.push("qemu-system-x86");
        // qemu-system-x86 needs qemu-utils of its own version: a machine with a newer
        // qemu-utils (from backports) gets the matching one, or apt refuses the install.
        qemu_utils = Some(());
    } else if !have(sh, "qemu-img") {
        missing.push("qemu-utils");
    }
    if !missing.is_empty() {
        if !(is_root() && have(sh, "apt-get")) {
            bail!(
                "missing: {} (install them, e.g. `sudo apt-get install -y {}`)",
                missing.join(", "),
                missing.join(" ")
            );
        }
        eprintln!("nodeprep: installing {}", missing.join(" "));
        cmd!(sh, "apt-get update -q")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()?;
        let mut names: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
        if qemu_utils.is_some() {
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
