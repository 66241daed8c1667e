//! A simulated host: no machine and no process, a [`State`] that answers after a set round-trip
//! delay. The probe and file reads get that state in the probe's own format
//! ([`reply`]), a read-only command the state holds an answer to (`iptables -S
//! INPUT`) gets that answer, anything else an empty success. Given the state a playbook
//! converges a host to ([`converged`]), it stands for a host that playbook already prepared:
//! what the runner's own cost over a thousand hosts is measured against (`run
//! --simulate-rtt-ms`, `cargo xtask bench --simulated N`).
//!
//! Every host of a simulated fleet shares one state and gets the same script from the runner,
//! so a script is read back and answered once per state (an `Answer`, kept process-wide): each
//! host then gets that answer with its own name written in, which is what the simulated hosts
//! themselves cost, apart from the runner's work.

use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use base64::Engine as _;

use super::Fixture;
use super::reply::{self, Asked};
use crate::ctx::Mode;
use crate::error::{Error, Result};
use crate::host::{Cmd, Host, Output};
use crate::plan::{Plan, Selection};
use crate::state::{self, State};

/// The file the host name is persisted in.
const HOSTNAME_FILE: &str = crate::hostname::HOSTNAME_FILE;

/// Programs the lab puts on PATH of its Kubernetes hosts (stand-ins for kubelet and kubeadm,
/// `kubernetes.source = "present"`): a simulated converged host has them too, so it answers
/// the probe as the lab's converged host does.
pub const PROGRAMS_ON_PATH: [&str; 2] = ["kubelet", "kubeadm"];

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
        entry(&self.state, script)
            .answer
            .get_or_init(|| Answer::new(&self.state, script, &self.name))
            .as_ref()
            .map(|a| a.for_host(&self.state, &self.name))
    }
}

/// The state `state` is as host `name`: its host name fact and /etc/hostname say `name`.
fn named(state: &State, name: &str) -> State {
    let mut mine = state.clone();
    mine.facts.hostname = Some(name.to_string());
    if let Some(Some(f)) = mine.files.get_mut(HOSTNAME_FILE) {
        f.content = format!("{name}\n").into_bytes();
    }
    mine
}

/// A script answered for one fleet state, under the state's address: the state is held weakly,
/// so no other state can take that address while the entry lives.
struct Entry {
    state: Weak<State>,
    script: String,
    answer: OnceLock<Option<Answer>>,
}

/// The answers of this process, one per fleet state and script (a handful: the bench and
/// the tests run a few fleets; entries of states gone are dropped).
static ANSWERS: LazyLock<Mutex<Vec<Arc<Entry>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// The entry for `script` on `state`, new if there is none (its answer is computed by the first
/// host that asks, the others wait for it).
fn entry(state: &Arc<State>, script: &str) -> Arc<Entry> {
    let mut all = ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
    let weak = Arc::downgrade(state);
    if let Some(e) = all
        .iter()
        .find(|e| Weak::ptr_eq(&e.state, &weak) && e.script == script)
    {
        return e.clone();
    }
    all.retain(|e| e.state.strong_count() > 0);
    let e = Arc::new(Entry {
        state: weak,
        script: script.to_string(),
        answer: OnceLock::new(),
    });
    all.push(e.clone());
    e
}

/// A probe script read back once, and answered: under the state's own name, and as a template
/// any other name of the same length is written into.
struct Answer {
    asked: Asked,
    /// The reply under the state's own host name (the state as it is).
    own: Option<String>,
    template: Option<Template>,
}

/// A reply for host `name`, with where the name is in it: the host name fact (plain text) and
/// the content of /etc/hostname in the base64 stream of file contents.
struct Template {
    name: String,
    text: String,
    /// Where the name starts in `text` (the host name fact).
    fact: Option<usize>,
    /// The file contents (`data`): where its base64 starts in `text`, its bytes, and where the content
    /// of /etc/hostname starts in them.
    data: Option<(usize, Vec<u8>, usize)>,
}

impl Answer {
    /// `script` read back and answered on `state`; `None` for a script that is not a probe or
    /// a file read. `first` is the name of the host that asks first.
    fn new(state: &State, script: &str, first: &str) -> Option<Answer> {
        let asked = reply::asked(script)?;
        let own_name = state.facts.hostname.as_ref();
        let own = own_name.map(|_| reply::reply(state, &asked));
        let name = own_name.map_or(first, |n| n.as_str());
        let template = Template::new(state, &asked, name);
        Some(Answer {
            asked,
            own,
            template,
        })
    }

    /// What host `name` of `state` answers.
    fn for_host(&self, state: &State, name: &str) -> String {
        if state.facts.hostname.as_deref() == Some(name)
            && let Some(own) = &self.own
        {
            return own.clone();
        }
        match self.template.as_ref().and_then(|t| t.with_name(name)) {
            Some(text) => text,
            None => reply::reply(&named(state, name), &self.asked),
        }
    }
}

impl Template {
    /// The reply for `name`, with where the name is in it; `None` when it cannot be found
    /// there, or when a reply written from the template for another name is not the reply
    /// for that name (a change of the reply's format): then every host's reply is written
    /// whole.
    fn new(state: &State, asked: &Asked, name: &str) -> Option<Template> {
        let text = reply::reply(&named(state, name), asked);
        let fact = if asked.facts && !name.is_empty() {
            let at = text.find(&format!("fact hostname\n{name}\n"))?;
            Some(at + "fact hostname\n".len())
        } else {
            None
        };
        let data = match state.files.get(HOSTNAME_FILE) {
            Some(Some(f)) if !f.is_dir && asked.probe.files.contains(HOSTNAME_FILE) => {
                Some(data_content(&text, HOSTNAME_FILE, &format!("{name}\n"))?)
            }
            _ => None,
        };
        let t = Template {
            name: name.to_string(),
            text,
            fact,
            data,
        };
        // Checked once against the reply written whole, for a name that differs in every
        // character.
        let other: String = name
            .chars()
            .map(|c| if c == 'x' { 'y' } else { 'x' })
            .collect();
        (t.with_name(&other)? == reply::reply(&named(state, &other), asked)).then_some(t)
    }

    /// The reply for `name` (as long as the template's), `None` for a name of another length.
    fn with_name(&self, name: &str) -> Option<String> {
        if name.len() != self.name.len() {
            return None;
        }
        let mut text = self.text.clone();
        if let Some(at) = self.fact {
            text.replace_range(at..at + name.len(), name);
        }
        if let Some((b64, bytes, at)) = &self.data {
            // The 3-byte groups holding the name, encoded again in place (4 characters each).
            let start = at / 3 * 3;
            let end = (at + name.len()).div_ceil(3) * 3;
            let end = end.min(bytes.len());
            let mut group = bytes[start..end].to_vec();
            group[at - start..at - start + name.len()].copy_from_slice(name.as_bytes());
            let encoded = base64::engine::general_purpose::STANDARD.encode(&group);
            let from = b64 + start / 3 * 4;
            text.replace_range(from..from + encoded.len(), &encoded);
        }
        Some(text)
    }
}

/// The file contents of `reply` (its `data` section): where its base64 starts, its bytes, and
/// where the content of `path` starts in them (that content must be `content`), found from the
/// sizes its `stat` section gives the files before it.
fn data_content(reply: &str, path: &str, content: &str) -> Option<(usize, Vec<u8>, usize)> {
    // The sections' marker, as `reply` writes it (the end section of an empty reply).
    let empty = reply::reply(&State::default(), &Asked::default());
    let marker = empty.trim().strip_suffix("end -")?;
    let section = |kind: &str| -> Option<usize> {
        let open = format!("\n{marker}{kind} -\n");
        Some(reply.find(&open)? + open.len())
    };
    let stats = section("stat")?;
    let mut at = 0usize;
    let mut found = None;
    for line in reply[stats..].lines() {
        if line.is_empty() || line.starts_with(marker) {
            break;
        }
        let (st, name) = state::parse_stat_line(line).ok()?;
        if name == path {
            found = Some(at);
            break;
        }
        if st.kind == state::Kind::File
            && !state::is_kernel_path(name)
            && st.size as u64 <= state::FILE_CAP
        {
            at += st.size;
        }
    }
    let at = found?;
    let b64 = section("data")?;
    let len = reply[b64..].find('\n')?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&reply[b64..b64 + len])
        .ok()?;
    (bytes.get(at..at + content.len())? == content.as_bytes()).then_some((b64, bytes, at))
}

impl Host for Simulated {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        std::thread::sleep(self.rtt);
        let stdout = match (cmd.argv.as_slice(), &cmd.stdin) {
            ([sh, s], Some(script)) if sh == "sh" && s == "-s" => match std::str::from_utf8(script)
            {
                Ok(script) => self.probe_reply(script),
                Err(_) => self.probe_reply(&String::from_utf8_lossy(script)),
            },
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
/// over the whole recorded host (as `playbooks::testing::converge` does), with the programs
/// the lab puts on PATH ([`PROGRAMS_ON_PATH`]), the facts it saw written where the probe
/// reports them. Fails when a step fails.
pub fn converged(plan: Plan<'_>, fixture: Fixture) -> Result<State> {
    let (mut cx, _rec) = fixture
        .programs(&PROGRAMS_ON_PATH)
        .complete()
        .ctx(Mode::Check);
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
    s.facts.hostname = Some(facts.hostname.clone());
    s.facts.systemd = facts.systemd;
    s.facts.container = facts.container;
    s.facts.uid = Some(0);
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
            lock: Some(crate::ctx::LockHolder::this_run()),
            ..Options::default()
        };
        Ctx::connect(Box::new(host), opts).unwrap()
    }

    /// The converged state answers the real probe: the same plan changes nothing on it,
    /// reads nothing outside its probe, and the host has its own name.
    #[test]
    fn a_simulated_host_is_converged() {
        let state = Arc::new(converged(plan(), Fixture::debian()).unwrap());
        assert_eq!(state.facts.hostname.as_deref(), Some("wok01"));
        for program in PROGRAMS_ON_PATH {
            assert_eq!(state.programs.get(program), Some(&true), "{program}");
        }
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

    /// A script is answered once per state: every other host gets that answer with its own
    /// name written in, the very reply written whole for it; a name of another length, and a
    /// state of another fleet, are answered on their own.
    #[test]
    fn the_answer_of_a_script_is_written_once_and_named_for_each_host() {
        let state = Arc::new(converged(plan(), Fixture::debian()).unwrap());
        let mut probe = plan().probe(&Selection::default());
        probe.lock = Some("bench".into());
        let script = state::probe_script(&probe);
        let asked = reply::asked(&script).unwrap();
        let answer = Answer::new(&state, &script, "wok01").unwrap();
        let template = answer.template.as_ref().expect("a template");
        assert!(template.fact.is_some() && template.data.is_some());
        for name in ["wok01", "wok02", "x9z-q", "w", "wok0001", ""] {
            let host = Simulated::new(name, Duration::ZERO, state.clone());
            let got = host.probe_reply(&script).unwrap();
            let whole = if name == "wok01" {
                reply::reply(&state, &asked)
            } else {
                reply::reply(&named(&state, name), &asked)
            };
            assert_eq!(got, whole, "{name}");
            let back = state::parse_probe(&got, &probe).unwrap();
            assert_eq!(back.facts.hostname.as_deref().unwrap_or(""), name);
            let file = back.files[HOSTNAME_FILE].as_ref().unwrap();
            assert_eq!(file.text(), format!("{name}\n"));
        }
        // Another fleet's state, at another address: its own answer.
        let mut other = (*state).clone();
        other.facts.nproc = Some(64);
        let other = Arc::new(other);
        let got = Simulated::new("wok02", Duration::ZERO, other.clone())
            .probe_reply(&script)
            .unwrap();
        assert_eq!(got, reply::reply(&named(&other, "wok02"), &asked));
        // A command that is not a probe has no answer.
        assert!(
            Simulated::new("wok02", Duration::ZERO, state)
                .probe_reply("true")
                .is_none()
        );
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
