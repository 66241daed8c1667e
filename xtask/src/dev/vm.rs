//! The VM test tier: a Debian bookworm disk image with Debian's kernel, systemd,
//! systemd-networkd and sshd, booted under QEMU (with KVM where `/dev/kvm` is usable, else
//! software emulation, TCG), so the kernel steps (swapoff, modprobe, sysctl, a networkd address)
//! and their persistence across a reboot run on a real kernel.
//!
//! The image is built like the container image ([`super::image`]): an `mmdebstrap` rootfs, then
//! `mkfs.ext4 -d` into a raw disk without a partition table (`root=/dev/vda`), with the kernel
//! and initrd beside it for direct kernel boot. It lives in `<cache>/<recipe hash>/` and is
//! reused while the recipe below is unchanged. Each [`Vm`] boots a copy-on-write qcow2 overlay
//! of it, so the base stays clean, with user-mode networking (`restrict=on`: the guest reaches
//! nothing outside) and its ssh port forwarded on a loopback port: a [`Testbed`] of one host.

use crate::runner::fanout::is_root;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;
use xshell::{Shell, cmd};

use super::testbed::{Host, Testbed, keygen, known_hosts_line};

/// Bumped whenever the build steps change in a way the recipe text below does not show.
const FORMAT_VERSION: &str = "1";

/// Debian suite the image is built from.
const SUITE: &str = "bookworm";

/// Packages on top of `--variant=minbase`. The cloud kernel is a quarter of the size of the
/// generic one and has what the tests need: virtio (as modules, loaded from the initrd), overlay
/// and br_netfilter (modules). `udev` loads the virtio modules; `dbus` carries `networkctl`.
const PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "sudo",
    "kmod",
    "procps",
    "iproute2",
    "util-linux",
];

/// dpkg options: no docs, man pages or translations.
const DPKG_OPTS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// Size of the raw disk (a sparse file; the rootfs takes about 350 MiB of it).
const DISK_SIZE: &str = "1G";

/// Run by mmdebstrap as a customize hook, with the rootfs directory as `$1` and the public key
/// root logs in with as `$2`.
const CUSTOMIZE: &str = r#"set -eu
root="$1"
pubkey="$2"

# sshd: root by key only; enabled at boot. Host keys are the ones openssh-server's postinst made
# (read back by the build for known_hosts).
mkdir -p "$root/etc/ssh/sshd_config.d"
cat > "$root/etc/ssh/sshd_config.d/10-nodeprep-vm.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
install -d -m 700 "$root/root/.ssh"
install -m 600 "$pubkey" "$root/root/.ssh/authorized_keys"

echo nodeprep-vm > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tnodeprep-vm\n' > "$root/etc/hosts"

# The root file system is the whole virtio disk; a swap file is active at boot, as on a fresh
# install.
cat > "$root/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,errors=remount-ro 0 1
/swapfile none swap sw 0 0
EOF
# Not zeros: mkfs.ext4 -d stores zero blocks as holes, and swapon refuses a file with holes.
head -c 64M /dev/zero | tr '\000' '\377' > "$root/swapfile"
chmod 600 "$root/swapfile"
chroot "$root" mkswap /swapfile >/dev/null

# DHCP on the NIC (QEMU user-mode networking hands out 10.0.2.15/24 via 10.0.2.2). nodeprep's
# 10-static-en.network sorts first and takes the interface over once written.
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/20-dhcp.network" <<'EOF'
[Match]
Name=e*

[Network]
DHCP=ipv4
EOF
chroot "$root" systemctl enable systemd-networkd.service ssh.service

# Units of no use in a throwaway VM: masked so boot is quick.
for unit in \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer systemd-firstboot.service getty@tty1.service
do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
"#;

/// Kernel command line: the whole disk is the root file system; the console is the serial port
/// (logged to a file); `net.ifnames=0` names the NIC eth0.
const APPEND: &str = "root=/dev/vda rw console=ttyS0 net.ifnames=0";

/// How long a VM may take from start (or reboot) to answering ssh. Under TCG a boot takes
/// 20 to 60 s, more when the machine is busy.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long one command ([`Testbed::exec`]) may run.
const SSH_TIMEOUT: Duration = Duration::from_secs(120);

/// The recipe's hash, 16 hex digits: the name of the image's directory in the cache.
pub fn recipe_hash() -> String {
    let recipe = format!(
        "format {FORMAT_VERSION}\nsuite {SUITE}\npackages {}\ndpkg {}\ndisk {DISK_SIZE}\ncustomize\n{CUSTOMIZE}",
        PACKAGES.join(","),
        DPKG_OPTS.join(","),
    );
    format!("{:016x}", tasks::hash::fnv1a64(recipe.as_bytes()))
}

/// Where images are cached: `NODEPREP_VM_CACHE` when set, else `<target dir>/nodeprep-vm`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NODEPREP_VM_CACHE").filter(|s| !s.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("xtask lives in the workspace")
                .join("target")
        });
    target.join("nodeprep-vm")
}

/// A built VM image: everything needed to boot it and log in.
#[derive(Debug, Clone)]
pub struct Image {
    /// `<cache>/<recipe hash>`.
    pub dir: PathBuf,
    /// The raw ext4 disk (never written to: VMs boot overlays of it).
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Private key whose public half is root's authorized_keys in the image.
    pub identity_file: PathBuf,
    /// The image's ed25519 host key (as in `ssh_host_ed25519_key.pub`), for known_hosts.
    pub host_key: String,
}

impl Image {
    fn at(dir: PathBuf) -> Result<Image> {
        let host_key = std::fs::read_to_string(dir.join("host_ed25519_key.pub"))
            .with_context(|| format!("reading the host key of {}", dir.display()))?;
        Ok(Image {
            disk: dir.join("disk.raw"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            identity_file: dir.join("id_ed25519"),
            host_key,
            dir,
        })
    }
}

/// The image of the current recipe in `cache`: reused when already built, otherwise built now
/// (about a minute; progress goes to stderr). A lock file in `cache` keeps parallel processes
/// from building it twice.
pub fn ensure(sh: &Shell, cache: &Path) -> Result<Image> {
    let hash = recipe_hash();
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let lock_path = cache.join("lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("opening {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let dir = cache.join(&hash);
    if dir.join("complete").is_file() {
        eprintln!("vm image {hash}: up to date");
        return Image::at(dir);
    }
    let started = Instant::now();
    eprintln!("vm image {hash}: building with mmdebstrap (about a minute)");
    let build_dir = tempfile::Builder::new()
        .prefix(&format!("{hash}.build-"))
        .tempdir_in(cache)?;
    build(sh, build_dir.path()).with_context(|| format!("building vm image {hash}"))?;
    std::fs::write(build_dir.path().join("complete"), "")?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(build_dir.path(), &dir)?;
    let _ = build_dir.keep();
    eprintln!("vm image {hash}: built in {:.0?}", started.elapsed());
    remove_stale(cache, &hash);
    Image::at(dir)
}

/// Images of older recipes (and builds that died half-way) are of no further use.
fn remove_stale(cache: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_image = name.len() >= 16 && name[..16].bytes().all(|b| b.is_ascii_hexdigit());
        if is_image && name != keep && entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Builds the image into `out`: key pair, rootfs, disk, kernel, initrd, host key.
fn build(sh: &Shell, out: &Path) -> Result<()> {
    if !is_root() {
        bail!(
            "building the VM image needs root (mmdebstrap in root mode, so that mkfs.ext4 -d records root-owned files)"
        );
    }
    let started = Instant::now();
    let pubkey = keygen(sh, &out.join("id_ed25519"), "nodeprep-vm")?;

    let work = tempfile::Builder::new().prefix("rootfs-").tempdir_in(out)?;
    let hook_path = work.path().join("customize.sh");
    std::fs::write(&hook_path, CUSTOMIZE)?;
    let rootfs = work.path().join("rootfs");
    let include = format!("--include={}", PACKAGES.join(","));
    let dpkg: Vec<String> = DPKG_OPTS.iter().map(|o| format!("--dpkgopt={o}")).collect();
    let hook = format!(
        "--customize-hook=sh {} \"$1\" {}",
        hook_path.display(),
        pubkey.display()
    );
    cmd!(
        sh,
        "mmdebstrap --mode=root --variant=minbase {include} {dpkg...} {hook} --quiet {SUITE} {rootfs}"
    )
    .run()
    .context("mmdebstrap failed (is it installed?)")?;
    eprintln!("vm image: rootfs ready after {:.0?}", started.elapsed());

    let boot = rootfs.join("boot");
    let find = |prefix: &str| -> Result<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect();
        found.sort();
        found
            .pop()
            .ok_or_else(|| anyhow!("no {prefix}* in {}", boot.display()))
    };
    std::fs::copy(find("vmlinuz-")?, out.join("vmlinuz"))?;
    std::fs::copy(find("initrd.img-")?, out.join("initrd.img"))?;
    std::fs::copy(
        rootfs.join("etc/ssh/ssh_host_ed25519_key.pub"),
        out.join("host_ed25519_key.pub"),
    )
    .context("the image has no ed25519 host key")?;

    let disk = out.join("disk.raw");
    cmd!(
        sh,
        "mkfs.ext4 -q -F -L nodeprep-root -d {rootfs} {disk} {DISK_SIZE}"
    )
    .quiet()
    .run()
    .context("mkfs.ext4 -d failed (e2fsprogs 1.43 or later is needed)")?;
    // The rootfs (owned by root, device nodes included) goes with `work`.
    drop(work);
    Ok(())
}

/// A running VM booted from an overlay of an [`Image`], its one [`Host`] reachable over ssh as
/// root on a loopback port. Dropping it kills QEMU and removes the overlay; a watchdog does the
/// same if this process dies without unwinding.
pub struct Vm {
    host: Host,
    image: Image,
    qemu: duct::Handle,
    watchdog: Option<duct::Handle>,
    dir: TempDir,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("host", &self.host)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// `NODEPREP_VM_ACCEL` when set (`kvm`, `tcg`), else KVM where it opens ([`default_accel`])
/// and runs a guest ([`kvm_runs`], tried once per process with `image`'s kernel), else `tcg`.
fn accel(image: &Image) -> String {
    if let Some(given) = std::env::var("NODEPREP_VM_ACCEL")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return given;
    }
    static KVM_RUNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if default_accel(Path::new(KVM)) == "kvm" && *KVM_RUNS.get_or_init(|| kvm_runs(image)) {
        "kvm".into()
    } else {
        "tcg".into()
    }
}

/// KVM's device.
const KVM: &str = "/dev/kvm";

/// `kvm` where `dev` (KVM's device) opens for reading and writing, as QEMU opens it (GitHub's
/// Linux runners have it, usable by root); else `tcg`, QEMU's software emulation.
fn default_accel(dev: &Path) -> &'static str {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .is_ok();
    if usable { "kvm" } else { "tcg" }
}

/// Whether a guest runs under KVM here: a device that opens is not enough (under some nested
/// hypervisors a KVM guest stalls in the kernel's real-mode setup, before it prints anything).
/// `image`'s kernel is booted with no root file system: under a working KVM it prints its
/// banner within a second or two, then panics and QEMU exits (`-no-reboot`).
fn kvm_runs(image: &Image) -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let console = dir.path().join("console.log");
    let serial = format!("file:{}", console.display());
    let args: Vec<std::ffi::OsString> = vec![
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        "kvm".into(),
        "-m".into(),
        "256".into(),
        "-nographic".into(),
        "-monitor".into(),
        "none".into(),
        "-no-reboot".into(),
        "-serial".into(),
        serial.into(),
        "-kernel".into(),
        image.kernel.clone().into(),
        "-append".into(),
        "console=ttyS0 panic=-1".into(),
    ];
    let Ok(qemu) = duct::cmd("qemu-system-x86_64", args)
        .stdin_null()
        .stdout_null()
        .stderr_null()
        .unchecked()
        .start()
    else {
        return false;
    };
    let started = Instant::now();
    let mut runs = false;
    while started.elapsed() < Duration::from_secs(20) {
        if std::fs::read_to_string(&console).is_ok_and(|t| t.contains("Linux version")) {
            runs = true;
            break;
        }
        if qemu.try_wait().ok().flatten().is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let _ = qemu.kill();
    if !runs {
        eprintln!(
            "vm: {KVM} opens but a guest does not run under KVM here (no kernel banner in 20 s): software emulation (tcg)"
        );
    }
    runs
}

impl Vm {
    /// Boots `image` (as inventory host `name` of `role`) and waits until it answers ssh.
    pub fn start(image: &Image, name: &str, role: &str) -> Result<Vm> {
        let sh = Shell::new()?;
        let dir = tempfile::Builder::new().prefix("nodeprep-vm-").tempdir()?;
        let overlay = dir.path().join("overlay.qcow2");
        let disk = &image.disk;
        cmd!(sh, "qemu-img create -q -f qcow2 -b {disk} -F raw {overlay}")
            .quiet()
            .run()
            .context("qemu-img create failed (is qemu-utils installed?)")?;

        // A free loopback port, found by binding it; QEMU may lose a race for it, hence the
        // retries.
        let mut attempt = 0;
        let (port, qemu) = loop {
            attempt += 1;
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let qemu = spawn_qemu(image, &overlay, dir.path(), port)?;
            thread::sleep(Duration::from_millis(500));
            match qemu.try_wait() {
                Ok(None) => break (port, qemu),
                Ok(Some(_)) => {
                    let log = tail(&dir.path().join("qemu.log"), 20);
                    if attempt < 3 && log.contains("host forwarding") {
                        continue;
                    }
                    bail!("qemu-system-x86_64 exited at start:\n{log}");
                }
                Err(e) => bail!("qemu-system-x86_64: {e}"),
            }
        };
        let mut vm = Vm {
            host: Host {
                name: name.to_owned(),
                role: role.to_owned(),
                ssh_port: port,
            },
            image: image.clone(),
            qemu,
            watchdog: None,
            dir,
        };
        std::fs::write(vm.known_hosts(), known_hosts_line(port, &image.host_key))?;
        vm.watchdog = Some(vm.spawn_watchdog()?);
        let booted = vm.wait_for_ssh(BOOT_TIMEOUT)?;
        eprintln!("vm {name}: answers ssh on 127.0.0.1:{port} after {booted:.1?}");
        Ok(vm)
    }

    /// The serial console's log (kernel and systemd messages of every boot).
    pub fn console_log(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// The last `lines` lines of the serial console, without terminal escapes.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console_log(), lines)
    }

    fn qemu_log(&self) -> String {
        tail(&self.dir.path().join("qemu.log"), 20)
    }

    /// Runs `script` (a shell command line) as root in the VM; a non-zero exit is not an
    /// error. Killed after `timeout`.
    fn ssh_output(&self, script: &str, timeout: Duration) -> Result<Output> {
        self.ssh(&self.host.name, script, timeout)
    }

    fn qemu_exited(&self) -> Option<String> {
        match self.qemu.try_wait() {
            Ok(Some(out)) => Some(format!("qemu exited ({}): {}", out.status, self.qemu_log())),
            Ok(None) => None,
            Err(e) => Some(format!("qemu: {e}")),
        }
    }

    /// Polls until a login works (every second, each attempt with a 10 s connect timeout), or
    /// fails after `timeout`, or as soon as QEMU exits. Returns how long it took.
    pub fn wait_for_ssh(&self, timeout: Duration) -> Result<Duration> {
        self.wait_for_login(timeout, |_| true)
    }

    /// Polls until `cat boot_id` over ssh works and `accept` takes the boot id.
    fn wait_for_login(&self, timeout: Duration, accept: impl Fn(&str) -> bool) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if let Some(why) = self.qemu_exited() {
                return Err(self.fail(&self.host.name, why));
            }
            let last = match self.ssh_output(
                "cat /proc/sys/kernel/random/boot_id",
                Duration::from_secs(20),
            ) {
                Ok(out) if out.status.success() => {
                    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    if accept(&id) {
                        return Ok(started.elapsed());
                    }
                    format!("still the previous boot ({id})")
                }
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > timeout {
                return Err(self.fail(
                    &self.host.name,
                    format!("no ssh login after {timeout:?}; last attempt: {last}"),
                ));
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    /// The kernel's boot id: changes on every boot.
    pub fn boot_id(&self) -> Result<String> {
        Ok(self
            .sh(&self.host.name, "cat /proc/sys/kernel/random/boot_id")?
            .trim()
            .to_owned())
    }

    /// Reboots the guest (`systemctl reboot`) and waits until ssh went away and answers again
    /// from a new boot. Returns how long that took.
    pub fn reboot(&self) -> Result<Duration> {
        let before = self.boot_id()?;
        let started = Instant::now();
        // The session may be cut before it returns: its status says nothing.
        let _ = self.ssh_output("systemctl reboot", Duration::from_secs(30));
        let took = self.wait_for_login(BOOT_TIMEOUT, |id| id != before)?;
        eprintln!("vm {}: rebooted in {took:.1?}", self.host.name);
        Ok(started.elapsed())
    }

    /// A shell loop that kills QEMU and removes the VM's directory when this process is gone
    /// (killed without unwinding); it ends by itself when QEMU does.
    fn spawn_watchdog(&self) -> Result<duct::Handle> {
        let qemu = self
            .qemu
            .pids()
            .first()
            .copied()
            .ok_or_else(|| anyhow!("qemu has no pid"))?;
        let script = r#"while kill -0 "$1" 2>/dev/null; do kill -0 "$2" 2>/dev/null || exit 0; sleep 2; done; kill -9 "$2" 2>/dev/null; rm -rf "$3""#;
        Ok(duct::cmd(
            "sh",
            [
                "-c".into(),
                script.into(),
                "nodeprep-vm-watchdog".into(),
                std::process::id().to_string().into(),
                qemu.to_string().into(),
                self.dir.path().as_os_str().to_owned(),
            ]
            .iter()
            .collect::<Vec<&std::ffi::OsString>>(),
        )
        .stdin_null()
        .stdout_null()
        .stderr_null()
        .unchecked()
        .start()?)
    }

    fn stop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait_timeout(Duration::from_secs(10));
        if let Some(w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait_timeout(Duration::from_secs(5));
        }
    }
}

impl Testbed for Vm {
    fn hosts(&self) -> &[Host] {
        std::slice::from_ref(&self.host)
    }

    /// Also holds the overlay and the console log.
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The image's: its public half is root's authorized_keys there.
    fn identity_file(&self) -> &Path {
        &self.image.identity_file
    }

    /// Over ssh, `argv` quoted for the remote shell; killed after `SSH_TIMEOUT`.
    fn exec(&self, host: &str, argv: &[&str]) -> Result<Output> {
        self.ssh(host, &tasks::shell::shell_join(argv), SSH_TIMEOUT)
    }

    /// With the tail of the VM's serial console.
    fn fail(&self, host: &str, what: String) -> anyhow::Error {
        anyhow!(
            "vm {host} (127.0.0.1:{}): {what}\n--- serial console, last 40 lines ---\n{}",
            self.host(host).ssh_port,
            self.console_tail(40)
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
        // `dir` (overlay, console log, known_hosts, inventory) is removed by TempDir's drop.
    }
}

fn spawn_qemu(image: &Image, overlay: &Path, dir: &Path, port: u16) -> Result<duct::Handle> {
    let console = dir.join("console.log");
    let drive = format!("file={},if=virtio,format=qcow2", overlay.display());
    let netdev = format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22");
    let serial = format!("file:{}", console.display());
    let accel = accel(image);
    let args: Vec<std::ffi::OsString> = vec![
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        accel.into(),
        "-m".into(),
        "1024".into(),
        "-smp".into(),
        "2".into(),
        "-nographic".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        serial.into(),
        "-kernel".into(),
        image.kernel.clone().into(),
        "-initrd".into(),
        image.initrd.clone().into(),
        "-append".into(),
        APPEND.into(),
        "-drive".into(),
        drive.into(),
        "-netdev".into(),
        netdev.into(),
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ];
    duct::cmd("qemu-system-x86_64", args)
        .stdin_null()
        .stdout_path(dir.join("qemu.log"))
        .stderr_to_stdout()
        .unchecked()
        .start()
        .context("starting qemu-system-x86_64 (is qemu-system-x86 installed?)")
}

/// The last `lines` lines of the file at `path`, terminal escapes removed ("" if unreadable).
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = strip_escapes(&String::from_utf8_lossy(&bytes));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes ANSI escape sequences (`ESC [ ... letter`) and carriage returns.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_shape() {
        let h = recipe_hash();
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(h, recipe_hash());
    }

    #[test]
    fn kvm_where_its_device_opens() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(default_accel(&dir.path().join("kvm")), "tcg");
        // A device node that opens for reading and writing stands in for /dev/kvm.
        assert_eq!(default_accel(Path::new("/dev/null")), "kvm");
    }

    #[test]
    fn escapes_stripped() {
        assert_eq!(
            strip_escapes("[\x1b[0;32m  OK  \x1b[0m] Started x\r\n"),
            "[  OK  ] Started x\n"
        );
    }
}
