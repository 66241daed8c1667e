//! The kernel of a Kubernetes node: swap off, modules loaded, sysctls set. Inside a container
//! the kernel is the container's host's: the checks report what they read, and say so.

use crate::ctx::Ctx;
use crate::error::Result;
use crate::kernel;

use super::Check;

/// Check names.
pub(super) mod name {
    pub const SWAP_OFF: &str = "swap off";

    pub fn module(module: &str) -> String {
        format!("module {module}")
    }

    pub fn sysctl(key: &str) -> String {
        format!("sysctl {key}")
    }
}

// ---- parsers --------------------------------------------------------------------------------

/// The swap areas /etc/fstab turns on at boot (its active swap lines, first field).
pub fn swap_at_boot(fstab: &str) -> Vec<&str> {
    fstab
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && kernel::is_swap_entry(l))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// `module` is listed in /proc/modules.
pub fn module_listed(proc_modules: &str, module: &str) -> bool {
    proc_modules
        .lines()
        .any(|l| l.split(' ').next() == Some(module))
}

/// `module` is listed in the kernel's modules.builtin.
pub fn module_builtin(modules_builtin: &str, module: &str) -> bool {
    let file = format!("{module}.ko");
    modules_builtin
        .lines()
        .any(|l| l.rsplit('/').next() == Some(file.as_str()))
}

// ---- checks ---------------------------------------------------------------------------------

fn container_note(cx: &Ctx) -> String {
    match &cx.facts().container {
        Some(c) => format!(" (this host is a container ({c}): the kernel is its host's)"),
        None => String::new(),
    }
}

/// No swap is active, and /etc/fstab turns none on at boot (kubelet refuses to start with
/// swap on, unless configured for it).
pub fn swap_off(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = name::SWAP_OFF;
    let swaps = cx
        .file(kernel::SWAPS)?
        .map(|f| f.text())
        .unwrap_or_default();
    let active = kernel::active_swaps(&swaps);
    if !active.is_empty() {
        return Ok(Check::fail(
            NAME,
            format!("swap is on: {}{}", active.join(", "), container_note(cx)),
            "`swapoff -a`, and comment out the swap lines of /etc/fstab (the k8s roles' steps \
             \"swap off\" and \"swap disabled in fstab\" do both)",
        ));
    }
    let fstab = cx
        .file(kernel::FSTAB)?
        .map(|f| f.text())
        .unwrap_or_default();
    let at_boot = swap_at_boot(&fstab);
    if !at_boot.is_empty() {
        return Ok(Check::fail(
            NAME,
            format!(
                "no swap is active, but /etc/fstab turns on {} at the next boot",
                at_boot.join(", ")
            ),
            "comment out the swap lines of /etc/fstab (step \"swap disabled in fstab\")",
        ));
    }
    Ok(Check::pass(NAME))
}

/// `module` is loaded or built into the kernel.
pub fn module_loaded(cx: &mut Ctx, module: &str) -> Result<Check> {
    let name = name::module(module);
    if cx.file(&format!("/sys/module/{module}"))?.is_some() {
        return Ok(Check::pass(&name));
    }
    let listed = cx
        .file(kernel::MODULES)?
        .is_some_and(|f| module_listed(&f.text(), module));
    // br_netfilter's keys exist only once it is in the kernel, however it got there.
    let bridge_keys = module == "br_netfilter"
        && cx
            .file(&kernel::sysctl_path("net.bridge.bridge-nf-call-iptables"))?
            .is_some();
    if listed || bridge_keys {
        return Ok(Check::pass(&name));
    }
    let out = cx.query(&[
        "sh",
        "-c",
        "cat \"/lib/modules/$(uname -r)/modules.builtin\" 2>/dev/null",
    ])?;
    if module_builtin(&out.stdout_str(), module) {
        return Ok(Check::pass(&name));
    }
    Ok(Check::fail(
        &name,
        format!("{module} is not loaded{}", container_note(cx)),
        format!(
            "`modprobe {module}`, and list it in /etc/modules-load.d/containerd.conf for the next boot \
             (steps \"kernel modules loaded\" and \"kernel modules persisted\")"
        ),
    ))
}

/// The live value of `key` is `want`, and so is the value that wins at boot: the last setting
/// of the key across every sysctl file, in the order they are applied (see
/// [`kernel::sysctl_files`]). A failure names the file that wins.
pub fn sysctl(cx: &mut Ctx, key: &str, want: &str) -> Result<Check> {
    let name = name::sysctl(key);
    let live = cx
        .file(&kernel::sysctl_path(key))?
        .map(|f| f.text().trim().to_string());
    let lines = kernel::sysctl_lines(cx)?;
    let winner = kernel::sysctl_winner(&lines, key);
    let at_boot = match winner {
        Some(w) => format!("at boot {} sets {} and wins", w.path, w.value),
        None => "at boot no sysctl file sets it".to_string(),
    };
    let hint = format!(
        "`{key} = {want}` in /etc/sysctl.d/99-kubernetes-cri.conf, with no file applied after it setting \
         another value, then `sysctl --system` (steps \"sysctl persisted\", which comments out such a \
         line, and \"sysctl applied\")"
    );
    let live_check = match live {
        Some(v) if v == want => None,
        Some(v) => Some(format!(
            "{key} is {v}, want {want}{} ({at_boot})",
            container_note(cx)
        )),
        None if key.starts_with("net.bridge.") => {
            return Ok(Check::fail(
                &name,
                format!(
                    "{key} does not exist: br_netfilter is not loaded{}",
                    container_note(cx)
                ),
                format!("`modprobe br_netfilter` first; then {hint}"),
            ));
        }
        None => Some(format!("{key} does not exist{}", container_note(cx))),
    };
    if let Some(reason) = live_check {
        return Ok(Check::fail(&name, reason, hint));
    }
    Ok(match winner {
        Some(w) if w.value.split_whitespace().eq(want.split_whitespace()) => Check::pass(&name),
        Some(w) => Check::fail(
            &name,
            format!(
                "{key} is {want} now, but {} sets {} and wins at the next boot (sysctl files apply in \
                 name order across /etc, /run, /usr/local/lib and /usr/lib sysctl.d, then /etc/sysctl.conf)",
                w.path, w.value
            ),
            hint,
        ),
        None => Check::fail(
            &name,
            format!(
                "{key} is {want} now, but no sysctl file sets it: the next boot leaves the kernel's default"
            ),
            hint,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::Fixture;
    use crate::verify::fixtures::{SYSCTLS, hint, ok, ready_ctx, ready_photon, reason};

    #[test]
    fn parsers() {
        let fstab = "/dev/sda2 / ext4 defaults 1 1\n/dev/sda3 none swap sw 0 0\n  # /swap.img none swap sw 0 0\n";
        assert_eq!(swap_at_boot(fstab), ["/dev/sda3"]);
        let modules = "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n";
        assert!(module_listed(modules, "overlay"));
        assert!(!module_listed(modules, "over"));
        let builtin = "kernel/fs/ext4/ext4.ko\nkernel/fs/overlayfs/overlay.ko\n";
        assert!(module_builtin(builtin, "overlay"));
        assert!(!module_builtin(builtin, "br_netfilter"));
    }

    #[test]
    fn swap() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(swap_off(&mut cx).unwrap().passed());
        let (mut cx, _) = ready_photon()
            .file(
                kernel::SWAPS,
                "Filename Type Size Used Priority\n/dev/sda3 partition 2097148 0 -2\n",
                0o444,
            )
            .ctx(Mode::Check);
        let c = swap_off(&mut cx).unwrap();
        assert_eq!(reason(&c), "swap is on: /dev/sda3");
        assert!(hint(&c).contains("swapoff -a"));
        let (mut cx, _) = ready_photon()
            .file(
                kernel::FSTAB,
                "/dev/sda2 / ext4 defaults 1 1\n/dev/sda3 none swap sw 0 0\n# /swap.img none swap sw 0 0\n",
                0o644,
            )
            .ctx(Mode::Check);
        let c = swap_off(&mut cx).unwrap();
        assert_eq!(
            reason(&c),
            "no swap is active, but /etc/fstab turns on /dev/sda3 at the next boot"
        );
    }

    #[test]
    fn modules() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(module_loaded(&mut cx, "overlay").unwrap().passed());
        assert!(module_loaded(&mut cx, "br_netfilter").unwrap().passed());
        // Not in /sys/module, but its keys exist: built in.
        let (mut cx, _) = ready_photon()
            .absent("/sys/module/br_netfilter")
            .ctx(Mode::Check);
        assert!(module_loaded(&mut cx, "br_netfilter").unwrap().passed());
        // Listed in modules.builtin.
        let (mut cx, rec) = ready_photon()
            .absent("/sys/module/overlay")
            .ctx(Mode::Check);
        rec.reply(
            "sh -c",
            ok("kernel/fs/ext4/ext4.ko\nkernel/fs/overlayfs/overlay.ko\n"),
        );
        assert!(module_loaded(&mut cx, "overlay").unwrap().passed());
        // Photon as installed: br_netfilter not loaded.
        let (mut cx, _) = Fixture::photon().complete().ctx(Mode::Check);
        let c = module_loaded(&mut cx, "br_netfilter").unwrap();
        assert_eq!(reason(&c), "br_netfilter is not loaded");
        assert!(hint(&c).starts_with("`modprobe br_netfilter`"));
        let (mut cx, _) = Fixture::photon().complete().in_container().ctx(Mode::Check);
        let c = module_loaded(&mut cx, "br_netfilter").unwrap();
        assert!(
            reason(&c).contains("container (docker): the kernel is its host's"),
            "{c:?}"
        );
    }

    #[test]
    fn sysctls() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        for (k, v) in SYSCTLS {
            assert!(sysctl(&mut cx, k, v).unwrap().passed(), "{k}");
        }
        // Photon as installed: ip_forward = 0 (50-security-hardening.conf), no bridge keys.
        let (mut cx, _) = Fixture::photon().complete().ctx(Mode::Check);
        let c = sysctl(&mut cx, "net.ipv4.ip_forward", "1").unwrap();
        assert_eq!(c.name, "sysctl net.ipv4.ip_forward");
        assert_eq!(
            reason(&c),
            "net.ipv4.ip_forward is 0, want 1 (at boot /etc/sysctl.d/50-security-hardening.conf sets 0 and wins)"
        );
        let c = sysctl(&mut cx, "net.bridge.bridge-nf-call-iptables", "1").unwrap();
        assert_eq!(
            reason(&c),
            "net.bridge.bridge-nf-call-iptables does not exist: br_netfilter is not loaded"
        );
    }

    /// Right now, wrong at the next boot: a file applied after nodeprep's wins, and is named.
    #[test]
    fn sysctl_judged_at_boot() {
        // Debian: /etc/sysctl.d/99-sysctl.conf is /etc/sysctl.conf, and sorts after
        // 99-kubernetes-cri.conf.
        let conf = "# /etc/sysctl.conf\nnet.ipv4.ip_forward=0\n";
        let (mut cx, _) = ready_photon()
            .file(kernel::SYSCTL_CONF, conf, 0o644)
            .symlink("/etc/sysctl.d/99-sysctl.conf", kernel::SYSCTL_CONF)
            .ctx(Mode::Check);
        let c = sysctl(&mut cx, "net.ipv4.ip_forward", "1").unwrap();
        assert_eq!(
            reason(&c),
            "net.ipv4.ip_forward is 1 now, but /etc/sysctl.conf sets 0 and wins at the next boot (sysctl \
             files apply in name order across /etc, /run, /usr/local/lib and /usr/lib sysctl.d, then /etc/sysctl.conf)"
        );
        assert!(hint(&c).contains("\"sysctl persisted\""), "{c:?}");
        assert!(
            sysctl(&mut cx, "net.bridge.bridge-nf-call-iptables", "1")
                .unwrap()
                .passed()
        );
        // A package's file sorting after it.
        let (mut cx, _) = ready_photon()
            .file(
                "/usr/lib/sysctl.d/99-zz-vendor.conf",
                "net/ipv4/ip_forward = 0\n",
                0o644,
            )
            .ctx(Mode::Check);
        let c = sysctl(&mut cx, "net.ipv4.ip_forward", "1").unwrap();
        assert!(
            reason(&c).starts_with(
                "net.ipv4.ip_forward is 1 now, but /usr/lib/sysctl.d/99-zz-vendor.conf sets 0"
            ),
            "{c:?}"
        );
        // Masked by a file of the same name in /etc: no longer applied.
        let (mut cx, _) = ready_photon()
            .file(
                "/usr/lib/sysctl.d/99-zz-vendor.conf",
                "net.ipv4.ip_forward = 0\n",
                0o644,
            )
            .file("/etc/sysctl.d/99-zz-vendor.conf", "# masked\n", 0o644)
            .ctx(Mode::Check);
        assert!(
            sysctl(&mut cx, "net.ipv4.ip_forward", "1")
                .unwrap()
                .passed()
        );
        // No file sets it at all.
        let (mut cx, _) = ready_photon()
            .absent("/etc/sysctl.d/99-kubernetes-cri.conf")
            .absent("/etc/sysctl.d/50-security-hardening.conf")
            .ctx(Mode::Check);
        let c = sysctl(&mut cx, "net.ipv4.ip_forward", "1").unwrap();
        assert_eq!(
            reason(&c),
            "net.ipv4.ip_forward is 1 now, but no sysctl file sets it: the next boot leaves the kernel's default"
        );
    }
}
