//! The built-in roles. Each is a plain function calling tasks in order; differences between
//! operating systems live inside the tasks, never here.

use tasks::kernel;
use tasks::{Ctx, Result};

use crate::inventory::Target;
use crate::registry::Playbook;

pub static BUILTIN: &[Playbook] = &[Playbook {
    name: "k8s-worker",
    about: "prepare a Kubernetes worker node",
    role: Some("k8s-worker"),
    steps: KERNEL_STEPS,
    files: &[SYSCTL_FILE, MODULES_FILE],
    run: k8s_worker,
}];

/// The kernel preparation shared by masters and workers.
const KERNEL_STEPS: &[&str] = &[
    "swap off",
    "swap disabled in fstab",
    "kernel modules persisted",
    "kernel modules loaded",
    "sysctl persisted",
    "sysctl applied",
];

pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-kubernetes-cri.conf";
pub const SYSCTL: &[(&str, &str)] = &[
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];
pub const MODULES_FILE: &str = "/etc/modules-load.d/containerd.conf";
pub const MODULES: &[&str] = &["overlay", "br_netfilter"];

fn k8s_worker(cx: &mut Ctx, _t: &Target) -> Result<()> {
    kernel_prep(cx)
}

/// Swap off now and for good; overlay and br_netfilter loaded now and at boot; the three
/// sysctls persisted and live (after the modules: the bridge keys exist only once
/// br_netfilter is loaded).
pub fn kernel_prep(cx: &mut Ctx) -> Result<()> {
    let _ = cx.step("swap off", kernel::swap_off)?;
    let _ = cx.step("swap disabled in fstab", kernel::fstab_swap_disabled)?;
    let _ = cx.step("kernel modules persisted", |cx| kernel::modules_file(cx, MODULES_FILE, MODULES))?;
    let _ = cx.step("kernel modules loaded", |cx| kernel::modules_loaded(cx, MODULES))?;
    let persisted = cx.step("sysctl persisted", |cx| kernel::sysctl_file(cx, SYSCTL_FILE, SYSCTL))?;
    let _ = cx.step("sysctl applied", |cx| kernel::sysctl_applied(cx, SYSCTL, persisted.changed()))?;
    Ok(())
}
