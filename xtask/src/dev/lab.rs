//! Lab containers: one systemd + sshd container per inventory host on a private docker network,
//! reachable over ssh on a loopback port, with a throwaway key pair and known_hosts file.
//! Used by `cargo xtask demo`, the benchmark and the integration tests. Everything is removed on
//! drop unless [`Lab::keep`] was called.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;
use xshell::{Shell, cmd};

/// How long a container may take from `docker run` to answering ssh.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags that let systemd boot in a container on this kind of host, without `--privileged`.
const RUN_FLAGS: &[&str] = &[
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

/// Running lab containers and the ssh material to reach them.
pub struct Lab {
    network: String,
    /// Every container name ever asked of docker, so drop removes half-started ones too.
    containers: Vec<String>,
    nodes: Vec<Node>,
    dir: TempDir,
    keep: bool,
}

/// One lab container, standing for one inventory host.
#[derive(Debug, Clone)]
pub struct Node {
    /// Inventory host name; also the container's hostname.
    pub name: String,
    pub role: String,
    /// Docker container name.
    pub container: String,
    /// Loopback port published for the container's port 22.
    pub ssh_port: u16,
    /// Address on the lab's private network (how nodes reach each other).
    pub ip: String,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("network", &self.network)
            .field("nodes", &self.nodes)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Lab {
    /// Starts one container of `image` per `(name, role)` in `hosts`, in parallel, and waits
    /// until each answers ssh. Names are `<prefix>-<name>-<unique suffix>`.
    pub fn start(sh: &Shell, image: &str, prefix: &str, hosts: &[(&str, &str)]) -> Result<Lab> {
        let suffix = unique_suffix();
        let dir = tempfile::Builder::new().prefix("nodeprep-lab-").tempdir()?;
        let key = dir.path().join("id_ed25519");
        cmd!(
            sh,
            "ssh-keygen -t ed25519 -N '' -q -C nodeprep-lab -f {key}"
        )
        .quiet()
        .run()
        .context("ssh-keygen failed (is openssh-client installed?)")?;
        let pubkey = std::fs::read_to_string(dir.path().join("id_ed25519.pub"))?;

        let network = format!("{prefix}-net-{suffix}");
        let mut lab = Lab {
            network: network.clone(),
            containers: hosts
                .iter()
                .map(|(name, _)| format!("{prefix}-{name}-{suffix}"))
                .collect(),
            nodes: Vec::new(),
            dir,
            keep: false,
        };
        cmd!(
            sh,
            "docker network create --label nodeprep-lab={prefix} {network}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("docker network create failed")?;

        let key = lab.identity_file();
        let results: Vec<Result<(Node, String)>> = thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .zip(&lab.containers)
                .map(|(&(name, role), container)| {
                    let spec = NodeSpec {
                        name,
                        role,
                        container,
                        image,
                        prefix,
                        network: &network,
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

        let mut known_hosts = String::new();
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok((node, line)) => {
                    known_hosts.push_str(&line);
                    lab.nodes.push(node);
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

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node called `name`; panics if there is none (a bug in the caller).
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no lab node named {name:?}"))
    }

    /// Directory holding the key pair, known_hosts and inventory; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Writes `inventory.toml` in [`Lab::dir`]: the `[ssh]` table, one `[hosts.NAME]` table per
    /// node, then `extra` (more TOML) verbatim. Returns its path.
    pub fn write_inventory(&self, extra: &str) -> Result<PathBuf> {
        let mut text = String::new();
        writeln!(text, "[ssh]")?;
        writeln!(text, "user = \"root\"")?;
        writeln!(text, "identity_file = {}", toml_str(&self.identity_file()))?;
        writeln!(text, "known_hosts = {}", toml_str(&self.known_hosts()))?;
        for node in &self.nodes {
            writeln!(text, "\n[hosts.{}]", node.name)?;
            writeln!(text, "role = \"{}\"", node.role)?;
            writeln!(text, "address = \"127.0.0.1\"")?;
            writeln!(text, "port = {}", node.ssh_port)?;
        }
        if !extra.is_empty() {
            text.push('\n');
            text.push_str(extra);
            if !extra.ends_with('\n') {
                text.push('\n');
            }
        }
        let path = self.dir.path().join("inventory.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// `docker exec` of `argv` in node `name`; a non-zero exit is not an error.
    pub fn exec(&self, name: &str, argv: &[&str]) -> Result<Output> {
        let sh = Shell::new()?;
        let container = &self.node(name).container;
        Ok(cmd!(sh, "docker exec {container} {argv...}")
            .quiet()
            .ignore_status()
            .output()?)
    }

    /// Runs `script` with `sh -c` in node `name`; fails (with its stderr) on a non-zero exit.
    /// Returns stdout.
    pub fn sh(&self, name: &str, script: &str) -> Result<String> {
        let out = self.exec(name, &["sh", "-c", script])?;
        if !out.status.success() {
            bail!(
                "on {name}: `sh -c {script:?}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Contents of `path` in node `name`, or `None` if it can't be read.
    pub fn read_file(&self, name: &str, path: &str) -> Option<String> {
        let out = self.exec(name, &["cat", "--", path]).ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills node `name`'s container (it stays in the lab and is removed on drop).
    pub fn stop_node(&self, name: &str) -> Result<()> {
        let sh = Shell::new()?;
        let container = &self.node(name).container;
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
}

/// Runs one container, installs the key, waits for ssh. Returns the node and its known_hosts
/// line.
fn start_node(spec: &NodeSpec<'_>, key: &Path, pubkey: &str) -> Result<(Node, String)> {
    let sh = Shell::new()?;
    let started = Instant::now();
    let NodeSpec {
        name,
        role,
        container,
        image,
        prefix,
        network,
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
        let logs = cmd!(sh, "docker logs --tail 30 {container}")
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
        anyhow!(
            "node {name} ({container}): {what}\n--- docker logs --tail 30 {container} ---\n{logs}"
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

    // sshd up (Debian calls the unit ssh, Photon and others sshd)...
    let active = "systemctl is-active -q ssh.service || systemctl is-active -q sshd.service";
    wait_until(started, || {
        cmd!(sh, "docker exec {container} sh -c {active}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    })
    .map_err(|()| fail(format!("sshd not active after {BOOT_TIMEOUT:?}")))?;

    // ...then its host key pinned and a real login through the published port.
    let host_key = cmd!(
        sh,
        "docker exec {container} cat /etc/ssh/ssh_host_ed25519_key.pub"
    )
    .quiet()
    .read()
    .map_err(|e| fail(format!("reading the ed25519 host key: {e}")))?;
    let known_line = format!("[127.0.0.1]:{ssh_port} {}\n", host_key.trim());
    let node_known = key.with_file_name(format!("known_hosts.{name}"));
    std::fs::write(&node_known, &known_line)?;
    let port = ssh_port.to_string();
    let mut last_err = String::new();
    wait_until(started, || {
        let out = cmd!(
            sh,
            "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5
                -o StrictHostKeyChecking=yes -o UserKnownHostsFile={node_known}
                -i {key} -p {port} root@127.0.0.1 true"
        )
        .quiet()
        .ignore_status()
        .output();
        match out {
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
        fail(format!(
            "no ssh login on 127.0.0.1:{ssh_port} after {BOOT_TIMEOUT:?}: {last_err}"
        ))
    })?;
    let _ = std::fs::remove_file(&node_known);

    eprintln!(
        "lab: {name} answers ssh on 127.0.0.1:{ssh_port} after {:.1?}",
        started.elapsed()
    );
    let node = Node {
        name: name.to_owned(),
        role: role.to_owned(),
        container: container.to_owned(),
        ssh_port,
        ip: ip.trim().to_owned(),
    };
    Ok((node, known_line))
}

/// Polls `ready` every 250ms until it holds or [`BOOT_TIMEOUT`] since `started` has passed.
fn wait_until(started: Instant, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
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
fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{n}{:05x}", std::process::id(), nanos >> 12)
}

/// A TOML basic string for a path.
fn toml_str(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
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
