//! A lab without a way out: lab containers on a docker `--internal` network (no route off it),
//! and one network services container ([`super::image::netsvc`]) on that network and on an
//! ordinary one, so that it alone reaches the internet. It runs a real HTTP proxy (tinyproxy,
//! port [`PROXY_PORT`]) and a real caching mirror (apt-cacher-ng, port [`MIRROR_PORT`]) for
//! the hosts, and forwards their ssh: docker publishes no port of a container that is only on
//! an internal network, so each host's port 22 is reached through a `socat` in the services
//! container, on a port docker publishes on 127.0.0.1. The hosts are a [`Testbed`] like any
//! lab's: the runner logs into them over ssh on a loopback port.
//!
//! Everything is removed on drop.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;
use xshell::{Shell, cmd};

use super::apt_cache::{APT_CACHE, address_on};
use super::image::netsvc;
use super::lab::{
    BOOT_TIMEOUT, RUN_FLAGS, SSHD_ACTIVE, docker_exec, ensure_inotify_instances, logs,
    read_host_key, unique_suffix, wait_for_script, wait_until,
};
use super::testbed::{Host, Testbed, keygen, known_hosts_line, ssh_command};

pub use netsvc::{MIRROR_PORT, PROXY_LOG, PROXY_PORT};

/// apt-cacher-ng's log of what it served (Debian's acng.conf: `LogDir`).
pub const MIRROR_LOG: &str = "/var/log/apt-cacher-ng/apt-cacher.log";

/// Ports of the services container that forward to the hosts' port 22: the first host's is
/// this one, the next one's the one after.
const FORWARD_BASE: u16 = 2200;

/// Hosts on an internal network, the services container that serves and reaches them, and
/// the ssh material.
pub struct Offline {
    internal: String,
    outside: String,
    netsvc: String,
    netsvc_ip: String,
    /// One per host, in the order of `hosts`.
    containers: Vec<String>,
    hosts: Vec<Host>,
    ips: Vec<String>,
    dir: TempDir,
    identity_file: PathBuf,
}

impl std::fmt::Debug for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offline")
            .field("internal", &self.internal)
            .field("outside", &self.outside)
            .field("netsvc", &self.netsvc)
            .field("netsvc_ip", &self.netsvc_ip)
            .field("hosts", &self.hosts)
            .field("containers", &self.containers)
            .finish()
    }
}

impl Offline {
    /// Starts the services container of `netsvc_image`, then one container of `image` per
    /// `(name, role)` in `hosts` on the internal network, one after the other, each reachable
    /// over ssh as root through its forward; waits until the proxy and the mirror run.
    pub fn start(
        sh: &Shell,
        image: &str,
        netsvc_image: &str,
        prefix: &str,
        hosts: &[(&str, &str)],
    ) -> Result<Offline> {
        ensure_inotify_instances();
        let suffix = unique_suffix();
        let dir = tempfile::Builder::new()
            .prefix("nodeprep-offline-")
            .tempdir()?;
        let identity_file = dir.path().join("id_ed25519");
        let pubkey = std::fs::read_to_string(keygen(sh, &identity_file, "nodeprep-lab")?)?;
        let mut lab = Offline {
            internal: format!("{prefix}-internal-{suffix}"),
            outside: format!("{prefix}-outside-{suffix}"),
            netsvc: format!("{prefix}-netsvc-{suffix}"),
            netsvc_ip: String::new(),
            containers: Vec::new(),
            hosts: Vec::new(),
            ips: Vec::new(),
            dir,
            identity_file,
        };
        let label = format!("nodeprep-lab={prefix}");
        let (internal, outside, svc) = (&lab.internal, &lab.outside, &lab.netsvc);
        cmd!(
            sh,
            "docker network create --internal --label {label} {internal}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("docker network create --internal failed")?;
        cmd!(sh, "docker network create --label {label} {outside}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("docker network create failed")?;

        let publish: Vec<String> = (0..hosts.len())
            .map(|i| format!("--publish=127.0.0.1::{}", forward_port(i)))
            .collect();
        cmd!(
            sh,
            "docker run -d --name {svc} --hostname netsvc --network {outside}
                --label {label} {publish...} {RUN_FLAGS...} {netsvc_image} /sbin/init"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("docker run of {svc} failed"))?;
        cmd!(sh, "docker network connect {internal} {svc}")
            .quiet()
            .run()
            .with_context(|| format!("connecting {svc} to {internal}"))?;
        lab.netsvc_ip = address_on(sh, svc, internal)?;

        let mut known_hosts = String::new();
        for (i, &(name, role)) in hosts.iter().enumerate() {
            let container = format!("{prefix}-{name}-{suffix}");
            lab.containers.push(container.clone());
            let (host, ip, line) = lab
                .start_host(sh, i, name, role, &container, image, &label, &pubkey)
                .map_err(|e| anyhow!("{e:#}\n{}", logs(sh, &container)))?;
            known_hosts.push_str(&line);
            lab.hosts.push(host);
            lab.ips.push(ip);
        }
        std::fs::write(lab.known_hosts(), known_hosts)?;

        let started = Instant::now();
        let svc = &lab.netsvc;
        let services = "systemctl is-active -q tinyproxy.service apt-cacher-ng.service";
        wait_for_script(sh, started, svc, services).map_err(|()| {
            anyhow!(
                "{svc}: tinyproxy and apt-cacher-ng not active after {BOOT_TIMEOUT:?}\n{}",
                logs(sh, svc)
            )
        })?;
        Ok(lab)
    }

    /// Runs host `name`'s container on the internal network, installs root's key, forwards
    /// the `i`th published port of the services container to its sshd, and waits for a login.
    #[allow(clippy::too_many_arguments)]
    fn start_host(
        &self,
        sh: &Shell,
        i: usize,
        name: &str,
        role: &str,
        container: &str,
        image: &str,
        label: &str,
        pubkey: &str,
    ) -> Result<(Host, String, String)> {
        let started = Instant::now();
        let (internal, svc) = (&self.internal, &self.netsvc);
        cmd!(
            sh,
            "docker run -d --name {container} --hostname {name} --network {internal}
                --label {label} {RUN_FLAGS...} {image} /sbin/init"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("docker run of {container} failed"))?;
        let ip = address_on(sh, container, internal)?;
        cmd!(
            sh,
            "docker exec -i {container} sh -c 'umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys'"
        )
        .quiet()
        .stdin(pubkey)
        .run()
        .context("installing authorized_keys")?;
        wait_for_script(sh, started, container, SSHD_ACTIVE)
            .map_err(|()| anyhow!("{name}: sshd not active after {BOOT_TIMEOUT:?}"))?;

        let port = forward_port(i);
        let listen = format!("TCP-LISTEN:{port},fork,reuseaddr");
        let target = format!("TCP:{ip}:22");
        cmd!(sh, "docker exec -d {svc} socat {listen} {target}")
            .quiet()
            .run()
            .with_context(|| format!("forwarding {svc}:{port} to {name}'s sshd"))?;
        let spec = format!("{port}/tcp");
        let port_line = cmd!(sh, "docker port {svc} {spec}").quiet().read()?;
        let ssh_port: u16 = port_line
            .lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| anyhow!("unexpected `docker port` output {port_line:?}"))?;

        let host_key = read_host_key(sh, container).context("reading the ed25519 host key")?;
        let line = known_hosts_line(ssh_port, &host_key);
        let node_known = self.dir.path().join(format!("known_hosts.{name}"));
        std::fs::write(&node_known, &line)?;
        let mut last_err = String::new();
        wait_until(started, || {
            match ssh_command(&self.identity_file, &node_known, ssh_port, 5, "true").run() {
                Ok(o) if o.status.success() => true,
                Ok(o) => {
                    last_err = String::from_utf8_lossy(&o.stderr).trim().to_owned();
                    false
                }
                Err(e) => {
                    last_err = e.to_string();
                    false
                }
            }
        })
        .map_err(|()| {
            anyhow!("{name}: no ssh login through {svc}:{port} (127.0.0.1:{ssh_port}) after {BOOT_TIMEOUT:?}: {last_err}")
        })?;
        let _ = std::fs::remove_file(&node_known);
        eprintln!(
            "offline lab: {name} ({ip}, no route out) answers ssh on 127.0.0.1:{ssh_port} through {svc} after {:.1?}",
            started.elapsed()
        );
        let host = Host {
            name: name.to_owned(),
            role: role.to_owned(),
            ssh_port,
        };
        Ok((host, ip, line))
    }

    fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no offline lab host named {name:?}"))
    }

    /// The services container's address on the internal network: where the hosts find the
    /// proxy (`http://IP:8888`) and the mirror (`http://IP:3142`).
    pub fn netsvc_ip(&self) -> &str {
        &self.netsvc_ip
    }

    /// `http://IP:PROXY_PORT`: the proxy as the hosts reach it.
    pub fn proxy_url(&self) -> String {
        format!("http://{}:{PROXY_PORT}", self.netsvc_ip)
    }

    /// `http://IP:MIRROR_PORT`: the mirror as the hosts reach it; apt-cacher-ng takes the
    /// upstream host as the path's first part (`http://IP:3142/deb.debian.org/debian`).
    pub fn mirror_url(&self) -> String {
        format!("http://{}:{MIRROR_PORT}", self.netsvc_ip)
    }

    /// Address of host `name` on the internal network.
    pub fn ip(&self, name: &str) -> &str {
        &self.ips[self.index(name)]
    }

    /// Runs `script` with `sh -c` in the services container; fails on a non-zero exit.
    pub fn netsvc_sh(&self, script: &str) -> Result<String> {
        let sh = Shell::new()?;
        let svc = &self.netsvc;
        let out = cmd!(sh, "docker exec {svc} sh -c {script}")
            .quiet()
            .ignore_status()
            .output()?;
        if !out.status.success() {
            bail!(
                "`{script}` in {svc} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Testbed for Offline {
    fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn identity_file(&self) -> &Path {
        &self.identity_file
    }

    /// `docker exec` of `argv` in the host's container.
    fn exec(&self, host: &str, argv: &[&str]) -> Result<Output> {
        docker_exec(&self.containers[self.index(host)], argv)
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        let Ok(sh) = Shell::new() else {
            eprintln!("offline lab cleanup: cannot make a shell");
            return;
        };
        let mut containers = self.containers.clone();
        containers.push(self.netsvc.clone());
        let _ = cmd!(sh, "docker rm -f -v {containers...}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run();
        for network in [&self.internal, &self.outside] {
            if let Err(e) = cmd!(sh, "docker network rm {network}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
            {
                eprintln!("offline lab cleanup: docker network rm {network} failed: {e}");
            }
        }
    }
}

fn forward_port(i: usize) -> u16 {
    FORWARD_BASE + u16::try_from(i).expect("a handful of hosts")
}

/// The apt cache container of `netsvc_image` (apt-cacher-ng, on docker's default network,
/// its cache in the volume [`APT_CACHE`]): reused when it runs, else started. Repeated first
/// runs of the tests then fetch each package from Debian once. Returns its name.
pub fn ensure_apt_cache(sh: &Shell, netsvc_image: &str) -> Result<String> {
    let format = "{{.State.Running}}|{{.Config.Image}}";
    let running = cmd!(sh, "docker inspect --format {format} {APT_CACHE}")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    if running.trim() == format!("true|{netsvc_image}") {
        eprintln!("apt cache {APT_CACHE}: running");
        return Ok(APT_CACHE.to_string());
    }
    let _ = cmd!(sh, "docker rm -f {APT_CACHE}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    let volume = format!("--volume={APT_CACHE}:/var/cache/apt-cacher-ng");
    cmd!(
        sh,
        "docker run -d --name {APT_CACHE} --hostname apt-cache --label nodeprep-lab=apt-cache
            {volume} {RUN_FLAGS...} {netsvc_image} /sbin/init"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .with_context(|| format!("starting the apt cache {APT_CACHE}"))?;
    // The volume starts out root's: apt-cacher-ng writes as its own user.
    let started = Instant::now();
    let ready = "chown apt-cacher-ng:apt-cacher-ng /var/cache/apt-cacher-ng && systemctl is-active -q apt-cacher-ng.service";
    wait_for_script(sh, started, APT_CACHE, ready).map_err(|()| {
        anyhow!(
            "apt cache {APT_CACHE}: apt-cacher-ng not active after {BOOT_TIMEOUT:?}\n{}",
            logs(sh, APT_CACHE)
        )
    })?;
    eprintln!("apt cache {APT_CACHE}: started ({:.1?})", started.elapsed());
    Ok(APT_CACHE.to_string())
}
