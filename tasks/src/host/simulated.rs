//! A simulated host: no machine and no process, a [`State`] that answers after a set round-trip
//! delay. The probe and file reads get that state in the probe's own format
//! ([`crate::state::reply`]), a read-only command the state holds an answer to (`iptables -S
//! INPUT`) gets that answer, anything else an empty success. Given the state a playbook
//! converges a host to ([`converged`]), it stands for a host that playbook already prepared:
//! what the runner's own cost over a thousand hosts is measured against (`run
//! --simulate-rtt-ms`, `cargo xtask bench --simulated N`).

use std::sync::Arc;
use std::time::Duration;

use super::{Cmd, Host, Output};
use crate::ctx::Mode;
use crate::error::{Error, Result};
use crate::plan::{Plan, Selection};
use crate::state::{self, State};
use crate::testing::Fixture;

/// The file the host name is persisted in.
const HOSTNAME_FILE: &str = crate::hostname::HOSTNAME_FILE;

pub struct Simulated {
    name: String,
    rtt: Duration,
    state: Arc<State>,
}

impl Simulated {
    /// A host called `name` in `state` (shared by a whole simulated fleet), answering every
    /// command after `rtt`. Its kernel's host name and /etc/hostname are its own `name`.
    pub fn new(name: impl Into<String>, rtt: Duration, state: Arc<State>) -> Simulated {
        Simulated {
            name: name.into(),
            rtt,
            state,
        }
    }

    fn probe_reply(&self, script: &str) -> Option<String> {
        let asked = state::asked(script)?;
        let own = self.state.facts.get("hostname") == Some(&self.name);
        if own {
            return Some(state::reply(&self.state, &asked));
        }
        let mut mine = (*self.state).clone();
        mine.facts.insert("hostname".into(), self.name.clone());
        if let Some(Some(f)) = mine.files.get_mut(HOSTNAME_FILE) {
            f.content = format!("{}\n", self.name).into_bytes();
        }
        Some(state::reply(&mine, &asked))
    }
}

impl Host for Simulated {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        std::thread::sleep(self.rtt);
        let stdout = match (cmd.argv.as_slice(), &cmd.stdin) {
            ([sh, s], Some(script)) if sh == "sh" && s == "-s" => {
                self.probe_reply(&String::from_utf8_lossy(script))
            }
            _ => None,
        }
        .or_else(|| self.state.answers.get(&cmd.argv).cloned())
        .unwrap_or_default();
        Ok(Output {
            status: Some(0),
            stdout: stdout.into_bytes(),
            stderr: Vec::new(),
        })
    }
}

/// The state a host in `fixture` is left in once `plan` ran on it: the plan run in check mode
/// over the whole recorded host (as `playbooks::testing::converge` does), the facts it saw
/// written where the probe reports them. Fails when a step fails.
pub fn converged(plan: Plan<'_>, fixture: Fixture) -> Result<State> {
    let (mut cx, _rec) = fixture.complete().ctx(Mode::Check);
    let ran = plan.run(&mut cx, &Selection::default());
    if let Some(e) = ran.error {
        return Err(e);
    }
    if let Some(r) = cx.records().iter().find(|r| r.outcome.label() == "failed") {
        return Err(Error::other(format!(
            "step `{}` fails on the recorded host: {:?}",
            r.name, r.outcome
        )));
    }
    let facts = cx.facts().clone();
    let mut s = cx.state().clone();
    s.files_complete = false;
    s.facts.insert("hostname".into(), facts.hostname.clone());
    s.facts.insert(
        "systemd".into(),
        if facts.systemd { "yes" } else { "" }.into(),
    );
    s.facts
        .insert("container".into(), facts.container.unwrap_or_default());
    s.facts.insert("uid".into(), "0".into());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Change;
    use crate::ctx::{Ctx, Options};
    use crate::state::Probe;

    /// A small plan: a file, a unit, a listing read once; converged in check mode.
    fn plan<'a>() -> Plan<'a> {
        let mut p = Plan::new();
        p.step(
            "motd",
            crate::Reads::files(&["/etc/motd"]),
            |cx: &mut Ctx| {
                crate::file::content(cx, "/etc/motd", "hello\n", crate::file::Perm::CONFIG)
            },
        );
        p.step("hostname", crate::hostname::READS, |cx: &mut Ctx| {
            crate::hostname::hostname(cx, "wok01")
        });
        p.step("listing", crate::Reads::NONE, |cx: &mut Ctx| {
            let rules = cx.query_once(&["iptables", "-S", "INPUT"])?;
            if rules.contains("-A INPUT -j ACCEPT") {
                return Ok(Change::Unchanged);
            }
            cx.apply(&["iptables", "-A", "INPUT", "-j", "ACCEPT"])?;
            cx.answer_changed(
                &["iptables", "-S", "INPUT"],
                format!("{rules}-A INPUT -j ACCEPT\n"),
            );
            Ok(Change::Changed)
        });
        p
    }

    fn connect(host: Simulated, probe: Probe) -> Ctx {
        let opts = Options {
            probe,
            lock: Some("bench".into()),
            ..Options::default()
        };
        Ctx::connect(Box::new(host), opts).unwrap()
    }

    /// The converged state answers the real probe: the same plan changes nothing on it,
    /// reads nothing outside its probe, and the host has its own name.
    #[test]
    fn a_simulated_host_is_converged() {
        let state = Arc::new(converged(plan(), Fixture::debian()).unwrap());
        assert_eq!(state.facts["hostname"], "wok01");
        for name in ["wok01", "wok02"] {
            let p = plan();
            let probe = p.probe(&Selection::default());
            let host = Simulated::new(name, Duration::ZERO, state.clone());
            let mut cx = connect(host, probe);
            assert_eq!(cx.facts().hostname, name);
            assert!(cx.facts().systemd);
            assert_eq!(
                cx.file(HOSTNAME_FILE).unwrap().unwrap().text(),
                format!("{name}\n")
            );
            if name != "wok01" {
                // The plan names the host wok01: it would rename another one.
                continue;
            }
            let ran = p.run(&mut cx, &Selection::default());
            assert!(ran.error.is_none(), "{:?}", ran.error);
            let changed: Vec<_> = cx
                .records()
                .iter()
                .filter(|r| r.outcome.label() != "ok")
                .collect();
            assert!(changed.is_empty(), "{changed:#?}");
            assert!(cx.actions().is_empty(), "{:?}", cx.actions());
            assert!(cx.misses().is_empty(), "{:?}", cx.misses());
            // Probe, the listing: no change, so no lock taken and none released.
            cx.close();
            assert_eq!(cx.commands_sent(), 2);
        }
    }

    /// Every command waits the round trip; one the state has no answer to succeeds empty.
    #[test]
    fn commands_wait_the_round_trip() {
        let host = Simulated::new("h", Duration::from_millis(20), Arc::new(State::default()));
        let start = std::time::Instant::now();
        let out = host
            .exec(&Cmd::new(&["systemctl", "restart", "x"]))
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(out.success() && out.stdout.is_empty());
        let out = host
            .exec(&Cmd::new(&["sh", "-s"]).stdin(state::files_script(&["/etc/x"])))
            .unwrap();
        let back =
            state::parse_probe(&out.stdout_str(), &Probe::default().files(&["/etc/x"])).unwrap();
        assert_eq!(back.files["/etc/x"], None);
    }

    /// A plan that fails on the recorded host has no converged state.
    #[test]
    fn a_failing_plan_does_not_converge() {
        let mut p = Plan::new();
        p.step("bad", crate::Reads::NONE, |_cx: &mut Ctx| {
            Err(Error::other("no"))
        });
        assert!(converged(p, Fixture::debian()).is_err());
    }
}
