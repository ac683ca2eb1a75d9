//! The daemon in a fake Postfix world: fake master, trivial-rewrite, agents and bounce on unix
//! sockets in a temporary queue directory. What an administrator would see: files moved, mail
//! handed to agents, log lines.

mod common;

use std::time::Duration;

use common::agent::Behaviour;
use common::world::World;

const T: Duration = Duration::from_secs(10);

#[test]
fn delivers_a_message_and_removes_it() {
    let mut w = World::new();
    w.add_agent("smtp", Behaviour::Ok);
    let id = w.drop_message("sender@src.lab", &["a@d1.lab", "b@d1.lab", "c@d2.lab"]);
    w.start();
    w.expect_log(&format!("{id}: from=<sender@src.lab>, size="), T);
    w.expect_log(&format!("{id}: removed"), T);
    let requests = w.agent("smtp").requests();
    let mut per_hop: Vec<(String, usize)> = requests
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.nexthop).into_owned(),
                r.recipients.len(),
            )
        })
        .collect();
    per_hop.sort();
    assert_eq!(
        per_hop,
        vec![("d1.lab".to_string(), 2), ("d2.lab".to_string(), 1)]
    );
    assert!(w.dir.list("active").is_empty(), "{}", w.diagnostics());
    assert!(w.dir.list("incoming").is_empty());
    assert!(w.dir.list("deferred").is_empty());
}
