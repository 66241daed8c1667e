//! Lab containers: one systemd + sshd container per inventory host on a private docker network,
//! reachable over ssh on a loopback port, with a throwaway key pair and known_hosts file (a
//! [`Testbed`]). Used by `cargo xtask demo`, the benchmark and the integration tests. Everything
//! is removed on drop unless [`Lab::keep`] was called.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;
use xshell::{Shell, cmd};

use super::testbed::{Host, Testbed, keygen, known_hosts_line, ssh_command};

/// How long a container may take from `docker run` to answering ssh.
pub(super) const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Containers started at once (see [`Lab::start`]).
const START_BATCH: usize = 8;

/// systemd takes about six inotify instances per container, and every root container counts
/// against root's limit: at the kernel's default of 128 the 22nd container's systemd exits.
const INOTIFY_INSTANCES: u64 = 8192;
const INOTIFY_LIMIT: &str = "/proc/sys/fs/inotify/max_user_instances";

/// Flags that let systemd boot in a container on this kind of host, without `--privileged`.
pub(super) const RUN_FLAGS: &[&str] = &[
    "--cap-add=SYS_ADMIN",
    "--cap-add=NET_ADMIN",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--cgroupns=host",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--env=container=docker",
    "--stop-signal=SIGRTMIN+3",
    // Never reach for a registry: the image is local (built here or given by name).
    "--pull=never",
];

/// What a container's sshd does with root's key once it is up: how the lab knows it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootLogin {
    /// Root logs in by key (the plain images): up once a login succeeds.
    Key,
    /// Root is refused (`PermitRootLogin no`: the hardened image): up once sshd shows the
    /// pinned host key and turns root's key away; a root login that succeeds is an error.
    Refused,
}

/// Running lab containers, one per host, and the ssh material to reach them.
pub struct Lab {
    network: String,
    /// One per host, in the same order; every container name ever asked of docker, so drop
    /// removes half-started ones too.
    containers: Vec<String>,
    hosts: Vec<Host>,
    /// Each host's address on the lab's private network, in the order of `hosts`.
    ips: Vec<String>,
    dir: TempDir,
    identity_file: std::path::PathBuf,
    keep: bool,
    /// The apt cache joined to the lab's network (`super::apt_cache::APT_CACHE_ENV`), and its
    /// address there.
    apt_cache: Option<(String, String)>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("network", &self.network)
            .field("hosts", &self.hosts)
            .field("containers", &self.containers)
            .field("ips", &self.ips)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Lab {
    /// Starts one container of `image` per `(name, role)` in `hosts`, `START_BATCH` at a
    /// time in parallel, and waits until each answers ssh as root. Names are
    /// `<prefix>-<name>-<unique suffix>`.
    pub fn start(sh: &Shell, image: &str, prefix: &str, hosts: &[(&str, &str)]) -> Result<Lab> {
        Lab::start_with(sh, image, prefix, hosts, RootLogin::Key)
    }

    /// As [`Lab::start`], for an image whose sshd treats root's key as `root` says.
    pub fn start_with(
        sh: &Shell,
        image: &str,
        prefix: &str,
        hosts: &[(&str, &str)],
        root: RootLogin,
    ) -> Result<Lab> {
        ensure_inotify_instances();
        let suffix = unique_suffix();
        let dir = tempfile::Builder::new().prefix("nodeprep-lab-").tempdir()?;
        let identity_file = dir.path().join("id_ed25519");
        let pubkey = std::fs::read_to_string(keygen(sh, &identity_file, "nodeprep-lab")?)?;

        let network = format!("{prefix}-net-{suffix}");
        let mut lab = Lab {
            network: network.clone(),
            containers: hosts
                .iter()
                .map(|(name, _)| format!("{prefix}-{name}-{suffix}"))
                .collect(),
            hosts: Vec::new(),
            ips: Vec::new(),
            dir,
            identity_file,
            keep: false,
            apt_cache: None,
        };
        cmd!(
            sh,
            "docker network create --label nodeprep-lab={prefix} {network}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("docker network create failed")?;
        lab.apt_cache = super::apt_cache::join_apt_cache(sh, &network)?;
        let apt_cache = lab.apt_cache.as_ref().map(|(_, ip)| ip.as_str());

        // Systemd containers boot in batches: 32 booting at once on two cores would each take
        // longer than BOOT_TIMEOUT. A batch waits for the one before it to answer ssh.
        let key = lab.identity_file.clone();
        let mut results: Vec<Result<Started>> = Vec::new();
        let specs: Vec<_> = hosts.iter().zip(&lab.containers).collect();
        for batch in specs.chunks(START_BATCH) {
            let started: Vec<Result<Started>> = thread::scope(|s| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|&(&(name, role), container)| {
                        let spec = NodeSpec {
                            name,
                            role,
                            container,
                            image,
                            prefix,
                            network: &network,
                            root,
                            apt_cache,
                        };
                        let (key, pubkey) = (&key, &pubkey);
                        s.spawn(move || start_node(&spec, key, pubkey))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow!("node start thread panicked")))
                    })
                    .collect()
            });
            let failed = started.iter().any(Result::is_err);
            results.extend(started);
            if failed {
                break;
            }
        }

        let mut known_hosts = String::new();
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(started) => {
                    known_hosts.push_str(&started.known_hosts_line);
                    lab.hosts.push(started.host);
                    lab.ips.push(started.ip);
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() {
            bail!("lab failed to start:\n{}", errors.join("\n"));
        }
        std::fs::write(lab.known_hosts(), known_hosts)?;
        Ok(lab)
    }

    fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host named {name:?}"))
    }

    /// Docker container name of host `name`.
    pub fn container(&self, name: &str) -> &str {
        &self.containers[self.index(name)]
    }

    /// Address of host `name` on the lab's private network (how hosts reach each other).
    pub fn ip(&self, name: &str) -> &str {
        &self.ips[self.index(name)]
    }

    /// Kills host `name`'s container (it stays in the lab and is removed on drop).
    pub fn stop_node(&self, name: &str) -> Result<()> {
        let sh = Shell::new()?;
        let container = self.container(name);
        cmd!(sh, "docker kill {container}")
            .quiet()
            .ignore_stdout()
            .run()?;
        Ok(())
    }

    /// Leaves containers, network and directory in place when the lab is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
        self.dir.disable_cleanup(true);
    }
}

impl Testbed for Lab {
    fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Also holds the key pair.
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn identity_file(&self) -> &Path {
        &self.identity_file
    }

    /// `docker exec` of `argv` in the host's container.
    fn exec(&self, host: &str, argv: &[&str]) -> Result<Output> {
        docker_exec(self.container(host), argv)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "lab kept: network {}, containers {}, files in {}",
                self.network,
                self.containers.join(" "),
                self.dir.path().display()
            );
            return;
        }
        let Ok(sh) = Shell::new() else {
            eprintln!(
                "lab cleanup: cannot make a shell; remove containers {:?}",
                self.containers
            );
            return;
        };
        let containers = &self.containers;
        let network = &self.network;
        if let Err(e) = cmd!(sh, "docker rm -f -v {containers...}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
        {
            eprintln!("lab cleanup: docker rm failed: {e}");
        }
        if let Some((cache, _)) = &self.apt_cache {
            super::apt_cache::leave_apt_cache(&sh, network, cache);
        }
        if let Err(e) = cmd!(sh, "docker network rm {network}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
        {
            eprintln!("lab cleanup: docker network rm failed: {e}");
        }
    }
}

struct NodeSpec<'a> {
    name: &'a str,
    role: &'a str,
    container: &'a str,
    image: &'a str,
    prefix: &'a str,
    network: &'a str,
    root: RootLogin,
    /// The apt cache's address on the lab's network, if any.
    apt_cache: Option<&'a str>,
}

/// A container that answers ssh.
struct Started {
    host: Host,
    ip: String,
    known_hosts_line: String,
}

/// Runs one container, installs the key, waits for ssh.
fn start_node(spec: &NodeSpec<'_>, key: &Path, pubkey: &str) -> Result<Started> {
    let sh = Shell::new()?;
    let started = Instant::now();
    let NodeSpec {
        name,
        role,
        container,
        image,
        prefix,
        network,
        root,
        apt_cache,
    } = *spec;
    cmd!(
        sh,
        "docker run -d --name {container} --hostname {name} --network {network}
            --label nodeprep-lab={prefix} --publish 127.0.0.1::22 {RUN_FLAGS...} {image} /sbin/init"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .with_context(|| format!("docker run of {container} failed"))?;

    let fail = |what: String| -> anyhow::Error {
        anyhow!(
            "node {name} ({container}): {what}\n{}",
            logs(&sh, container)
        )
    };

    let port_line = cmd!(sh, "docker port {container} 22/tcp").quiet().read()?;
    let ssh_port: u16 = port_line
        .lines()
        .find_map(|l| l.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| fail(format!("unexpected `docker port` output {port_line:?}")))?;
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let ip = cmd!(sh, "docker inspect --format {format} {container}")
        .quiet()
        .read()?;

    cmd!(
        sh,
        "docker exec -i {container} sh -c 'umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys'"
    )
    .quiet()
    .stdin(pubkey)
    .run()
    .map_err(|e| fail(format!("installing authorized_keys: {e}")))?;
    if let Some(ip) = apt_cache {
        let script = super::apt_cache::apt_cache_script(ip);
        cmd!(sh, "docker exec {container} sh -c {script}")
            .quiet()
            .run()
            .map_err(|e| fail(format!("pointing apt at the cache: {e}")))?;
    }

    // sshd up (Debian calls the unit ssh, Photon and others sshd)...
    wait_for_script(&sh, started, container, SSHD_ACTIVE)
        .map_err(|()| fail(format!("sshd not active after {BOOT_TIMEOUT:?}")))?;

    // ...then its host key pinned and a real login through the published port (or, where root
    // is refused, the refusal: it comes after the host key was checked).
    let host_key = read_host_key(&sh, container)
        .map_err(|e| fail(format!("reading the ed25519 host key: {e}")))?;
    let known_line = known_hosts_line(ssh_port, &host_key);
    let node_known = key.with_file_name(format!("known_hosts.{name}"));
    std::fs::write(&node_known, &known_line)?;
    let mut last_err = String::new();
    let mut root_in = false;
    wait_until(started, || {
        match ssh_command(key, &node_known, ssh_port, 5, "true").run() {
            Ok(o) if o.status.success() => {
                root_in = true;
                true
            }
            Ok(o) => {
                last_err = String::from_utf8_lossy(&o.stderr).trim().to_owned();
                root == RootLogin::Refused && last_err.contains("Permission denied")
            }
            Err(e) => {
                last_err = e.to_string();
                false
            }
        }
    })
    .map_err(|()| {
        fail(format!(
            "no ssh login on 127.0.0.1:{ssh_port} after {BOOT_TIMEOUT:?}: {last_err}"
        ))
    })?;
    if root == RootLogin::Refused && root_in {
        return Err(fail(
            "root logged in by key, but this image should refuse root".into(),
        ));
    }
    let _ = std::fs::remove_file(&node_known);

    eprintln!(
        "lab: {name} answers ssh on 127.0.0.1:{ssh_port} after {:.1?}",
        started.elapsed()
    );
    Ok(Started {
        host: Host {
            name: name.to_owned(),
            role: role.to_owned(),
            ssh_port,
        },
        ip: ip.trim().to_owned(),
        known_hosts_line: known_line,
    })
}

/// Raises the per-user limit of inotify instances to [`INOTIFY_INSTANCES`] where it is lower
/// and this process may (root); says so, or what to run.
pub(super) fn ensure_inotify_instances() {
    let Some(current) = std::fs::read_to_string(INOTIFY_LIMIT)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return;
    };
    if current >= INOTIFY_INSTANCES {
        return;
    }
    match std::fs::write(INOTIFY_LIMIT, INOTIFY_INSTANCES.to_string()) {
        Ok(()) => eprintln!(
            "lab: fs.inotify.max_user_instances raised from {current} to {INOTIFY_INSTANCES} (systemd takes about six per container)"
        ),
        Err(e) => eprintln!(
            "lab: fs.inotify.max_user_instances is {current}, about {} systemd containers at once, and cannot be raised ({e}): run `sysctl -w fs.inotify.max_user_instances={INOTIFY_INSTANCES}` as root for more",
            current / 6
        ),
    }
}

/// Succeeds in a container once its sshd runs (Debian calls the unit ssh, Photon and others
/// sshd).
pub(super) const SSHD_ACTIVE: &str =
    "systemctl is-active -q ssh.service || systemctl is-active -q sshd.service";

/// `docker exec` of `argv` in `container`; its exit status is the caller's to read.
pub(super) fn docker_exec(container: &str, argv: &[&str]) -> Result<Output> {
    let sh = Shell::new()?;
    Ok(cmd!(sh, "docker exec {container} {argv...}")
        .quiet()
        .ignore_status()
        .output()?)
}

/// Polls `script` (`sh -c` in `container`) with [`wait_until`] until it succeeds.
pub(super) fn wait_for_script(
    sh: &Shell,
    started: Instant,
    container: &str,
    script: &str,
) -> Result<(), ()> {
    wait_until(started, || {
        cmd!(sh, "docker exec {container} sh -c {script}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    })
}

/// The container's ed25519 ssh host key (public half).
pub(super) fn read_host_key(sh: &Shell, container: &str) -> xshell::Result<String> {
    cmd!(
        sh,
        "docker exec {container} cat /etc/ssh/ssh_host_ed25519_key.pub"
    )
    .quiet()
    .read()
}

/// The last lines of `container`'s log, for an error.
pub(super) fn logs(sh: &Shell, container: &str) -> String {
    let out = cmd!(sh, "docker logs --tail 30 {container}")
        .quiet()
        .ignore_status()
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    format!("--- docker logs --tail 30 {container} ---\n{out}")
}

/// Polls `ready` every 250ms until it holds or [`BOOT_TIMEOUT`] since `started` has passed.
pub(super) fn wait_until(started: Instant, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    loop {
        if ready() {
            return Ok(());
        }
        if started.elapsed() > BOOT_TIMEOUT {
            return Err(());
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Unique per process, per lab and over time, so parallel test processes never clash.
pub(super) fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{n}{:05x}", std::process::id(), nanos >> 12)
}

/// Stand-ins for kubelet and kubeadm in lab containers. No Kubernetes package repository is
/// reachable from the lab, so hosts are prepared with `kubernetes.source = "present"`: these
/// give that check something to find, and kubelet a unit file to enable.
pub const KUBE_STANDINS: &str = r#"set -e
for b in kubelet kubeadm; do
  printf '#!/bin/sh\necho "%s: lab stand-in, not Kubernetes" >&2\nexit 1\n' "$b" > /usr/local/bin/$b
  chmod 0755 /usr/local/bin/$b
done
cat > /etc/systemd/system/kubelet.service <<'UNIT'
[Unit]
Description=kubelet (lab stand-in)
[Service]
ExecStart=/usr/local/bin/kubelet
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
"#;

/// Installs [`KUBE_STANDINS`] on every `k8s-*` host of `bed`.
pub fn install_kube_standins(bed: &dyn Testbed) -> Result<()> {
    for host in bed.hosts().iter().filter(|h| h.role.starts_with("k8s-")) {
        bed.sh(&host.name, KUBE_STANDINS)?;
    }
    Ok(())
}

/// A representative inventory for lab hosts: an admin user (a throwaway demo hash), locale,
/// keymap, NTP, and Kubernetes binaries taken as present (see [`KUBE_STANDINS`]).
pub const LAB_SETTINGS: &str = r#"
[admin]
name = "kubeadmin"
password_hash = "$6$nodeprepdemo$wk44XuU7o9MhcvILKmVk55VnCYVIH.At4AbdPsvCzM6R6zZGO6xjQv0aPOQDJVwWGFwJ9hh32qddZeWox1cQx/"
ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOyiXo8ZDrrZ8ngq0ORx3MAF5HnbFe9Q/89EcrI9vvO0 ops@example.lan"]

[system]
locale = "fr_FR.UTF-8"
keymap = "fr"
ntp = ["ntp1.example.lan", "ntp2.example.lan"]

[kubernetes]
source = "present"
"#;

/// Settings lab inventories add: Kubernetes binaries taken as present (see [`KUBE_STANDINS`]).
pub const LAB_KUBERNETES: &str = "[kubernetes]\nsource = \"present\"\n";
