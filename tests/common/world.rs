//! Everything an integration test of the daemon needs, set up with one call: the instance on
//! disk, postlogd, trivial-rewrite, bounce/defer/trace, delivery agents, and master.

use std::collections::BTreeMap;
use std::time::Duration;

use super::agent::{Behaviour, FakeAgent};
use super::bounce::FakeBounce;
use super::master::{FakeMaster, MasterOptions};
use super::postlog::FakePostlog;
use super::queue_dir::FakeQueueDir;
use super::rewrite::FakeRewrite;

/// The fake Postfix world. Fields drop in order: the daemon first, the disk last.
pub struct World {
    /// The daemon, once [`World::start`] ran.
    pub master: Option<FakeMaster>,
    pub agents: BTreeMap<String, FakeAgent>,
    pub bounce: FakeBounce,
    pub defer: FakeBounce,
    pub trace: FakeBounce,
    pub rewrite: FakeRewrite,
    pub postlog: FakePostlog,
    pub dir: FakeQueueDir,
}

impl World {
    /// All fakes running, no daemon yet; agents: none (see [`World::add_agent`]).
    pub fn new() -> World {
        World::with_params(&[])
    }

    /// Like [`World::new`] with extra main.cf parameters.
    pub fn with_params(params: &[(&str, &str)]) -> World {
        let dir = FakeQueueDir::with_params(params);
        World {
            master: None,
            agents: BTreeMap::new(),
            bounce: FakeBounce::start(&dir, "bounce"),
            defer: FakeBounce::start(&dir, "defer"),
            trace: FakeBounce::start(&dir, "trace"),
            rewrite: FakeRewrite::start(&dir),
            postlog: FakePostlog::start(&dir),
            dir,
        }
    }

    /// Serves `private/<name>` with `behaviour` (replacing an agent of that name).
    pub fn add_agent(&mut self, name: &str, behaviour: Behaviour) -> &FakeAgent {
        self.agents.remove(name);
        let agent = FakeAgent::start(&self.dir, name, behaviour);
        self.agents.entry(name.to_string()).or_insert(agent)
    }

    /// The agent named `name` (panics when there is none: a test bug).
    pub fn agent(&self, name: &str) -> &FakeAgent {
        self.agents
            .get(name)
            .unwrap_or_else(|| panic!("no fake agent {name}"))
    }

    /// Starts the oqmgr binary as master would.
    pub fn start(&mut self) -> &FakeMaster {
        self.start_with(MasterOptions::default())
    }

    pub fn start_with(&mut self, opts: MasterOptions) -> &FakeMaster {
        self.master = None;
        self.master.insert(FakeMaster::start_with(&self.dir, opts))
    }

    /// The running daemon (panics before [`World::start`]).
    pub fn master(&self) -> &FakeMaster {
        self.master.as_ref().expect("World::start not called")
    }

    /// Drops a ready message into incoming/ and returns its queue id.
    pub fn drop_message(&self, sender: &str, recipients: &[&str]) -> String {
        let rcpts: Vec<&[u8]> = recipients.iter().map(|r| r.as_bytes()).collect();
        self.dir.drop_message(sender.as_bytes(), &rcpts)
    }

    /// Waits (10 s at most) until message `id` is in `queue` (`None`: gone), panicking with
    /// diagnostics if it never is.
    pub fn expect_in(&self, id: &str, queue: Option<&str>) {
        let found = super::wait_until(Duration::from_secs(10), || {
            self.dir.queue_of(id).as_deref() == queue
        });
        assert!(
            found,
            "{id} not in {queue:?} (in {:?})\n{}",
            self.dir.queue_of(id),
            self.diagnostics()
        );
    }

    /// What went to the log and to the child's stdout/stderr, for assertion messages.
    pub fn diagnostics(&self) -> String {
        let output = self.master.as_ref().map(|m| m.output()).unwrap_or_default();
        format!(
            "--- postlog ---\n{}\n--- maillog_file ---\n{}\n--- child output ---\n{}",
            self.postlog.dump(),
            self.dir.maillog_file_lines().join("\n"),
            output
        )
    }

    /// Waits until a log line contains `pattern`, panicking with diagnostics if none does.
    pub fn expect_log(&self, pattern: &str, timeout: Duration) -> String {
        match self.postlog.wait_for(pattern, timeout) {
            Some(line) => line,
            None => panic!("no log line matching {pattern:?}\n{}", self.diagnostics()),
        }
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
