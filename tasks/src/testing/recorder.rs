//! A host that runs nothing: it records every command and answers from a script of canned
//! replies. Facts-in/commands-out tests drive tasks with it.

use std::sync::Mutex;

use crate::error::Result;
use crate::host::{Cmd, Host, Output};

pub struct Recorder {
    name: String,
    log: Mutex<Vec<Cmd>>,
    replies: Mutex<Vec<(String, Output)>>,
}

impl Recorder {
    pub fn new(name: impl Into<String>) -> Recorder {
        Recorder {
            name: name.into(),
            log: Mutex::new(Vec::new()),
            replies: Mutex::new(Vec::new()),
        }
    }

    /// Commands whose display starts with `prefix` get `out` (first match wins); others
    /// succeed with empty output.
    pub fn reply(&self, prefix: &str, out: Output) {
        self.replies.lock().unwrap().push((prefix.to_string(), out));
    }

    pub fn commands(&self) -> Vec<Cmd> {
        self.log.lock().unwrap().clone()
    }
}

impl Host for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    fn live(&self) -> bool {
        false
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        self.log.lock().unwrap().push(cmd.clone());
        let shown = cmd.display();
        let replies = self.replies.lock().unwrap();
        let canned = replies
            .iter()
            .find(|(prefix, _)| shown.starts_with(prefix.as_str()));
        Ok(canned.map(|(_, out)| out.clone()).unwrap_or(Output {
            status: Some(0),
            ..Output::default()
        }))
    }
}
