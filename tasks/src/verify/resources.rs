//! Enough CPUs and memory for what the host runs: the least is the caller's to say (kubeadm's
//! for a control-plane node: [`MIN_CPUS`], [`MIN_MEMORY_MIB`]).

use crate::ctx::Ctx;
use crate::error::Result;

use super::Check;

pub const MEMINFO: &str = "/proc/meminfo";
/// kubeadm's minimums for a control-plane node.
pub const MIN_CPUS: u32 = 2;
pub const MIN_MEMORY_MIB: u64 = 1700;

/// Check names.
pub(super) mod name {
    pub const CPUS: &str = "cpus";
    pub const MEMORY: &str = "memory";
}

// ---- parsers --------------------------------------------------------------------------------

/// MemTotal of /proc/meminfo, in MiB.
pub fn mem_total_mib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

// ---- checks ---------------------------------------------------------------------------------

/// At least `min` CPUs.
pub fn cpus(cx: &mut Ctx, min: u32) -> Result<Check> {
    const NAME: &str = name::CPUS;
    let known = cx.state().facts.nproc;
    let n = match known {
        Some(n) => n,
        None => match cx.query(&["nproc"])?.stdout_str().trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => return Ok(Check::skip(NAME, "`nproc` gave no number")),
        },
    };
    if n >= min {
        Ok(Check::pass(NAME))
    } else {
        Ok(Check::fail(
            NAME,
            format!("{n} CPU, a control-plane node needs at least {min}"),
            format!("give the VM {min} vCPUs or more (kubeadm init refuses fewer)"),
        ))
    }
}

/// At least `min_mib` MiB of memory.
pub fn memory(cx: &mut Ctx, min_mib: u64) -> Result<Check> {
    const NAME: &str = name::MEMORY;
    let Some(mib) = cx.file(MEMINFO)?.and_then(|f| mem_total_mib(&f.text())) else {
        return Ok(Check::skip(NAME, "no MemTotal in /proc/meminfo"));
    };
    if mib >= min_mib {
        Ok(Check::pass(NAME))
    } else {
        Ok(Check::fail(
            NAME,
            format!("{mib} MB, a control-plane node needs at least {min_mib} MB"),
            format!("give the VM {min_mib} MB of memory or more (kubeadm init refuses less)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::verify::fixtures::{ok, ready_ctx, ready_photon, reason};

    #[test]
    fn resources() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(cpus(&mut cx, MIN_CPUS).unwrap().passed());
        assert!(memory(&mut cx, MIN_MEMORY_MIB).unwrap().passed());
        let mut f = ready_photon().file(MEMINFO, "MemTotal:        1015808 kB\n", 0o444);
        f.state.facts.nproc = Some(1);
        let (mut cx, _) = f.ctx(Mode::Check);
        assert_eq!(
            reason(&cpus(&mut cx, MIN_CPUS).unwrap()),
            "1 CPU, a control-plane node needs at least 2"
        );
        assert_eq!(
            reason(&memory(&mut cx, MIN_MEMORY_MIB).unwrap()),
            "992 MB, a control-plane node needs at least 1700 MB"
        );
        // nproc not in the probe: asked.
        let (mut cx, rec) = ready_photon().ctx(Mode::Check);
        rec.reply("nproc", ok("8\n"));
        assert!(cpus(&mut cx, MIN_CPUS).unwrap().passed());
    }
}
