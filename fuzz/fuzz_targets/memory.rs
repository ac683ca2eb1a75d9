//! The `oqmgr_remember_destinations` state file: decoded, taken up by a scheduler (whose
//! invariants must hold after each step), used by mail for the remembered destinations,
//! its deadlines run, and exported again (which must decode).
//!
//! Input: the file's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oqmgr::config::TransportParams;
use oqmgr::proto::msg_stats::Timeval;
use oqmgr::proto::recipient::Recipient;
use oqmgr::proto::rewrite::resolve_flags;
use oqmgr::queue::envelope::Envelope;
use oqmgr::sched::memory::{decode, encode, MemoryItem};
use oqmgr::sched::route::Route;
use oqmgr::sched::{SchedConfig, Scheduler};

const NOW: u64 = 1_700_000_000;

fn checked(s: &Scheduler, step: &str) {
    if let Err(broken) = s.check_invariants() {
        panic!("after {step}: {broken}");
    }
}

fuzz_target!(|data: &[u8]| {
    let memory = match decode(data) {
        Ok(memory) => memory,
        Err(_) => return,
    };
    let cfg = SchedConfig {
        recipient_limit: 50,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(
        cfg,
        Box::new(|name: &[u8]| TransportParams {
            name: String::from_utf8_lossy(name).into_owned(),
            dest_concurrency_limit: 20,
            ..TransportParams::default()
        }),
    );
    // Mail for the first remembered destinations, as a backlog after a restart would bring.
    let routes: Vec<(Recipient, Route)> = memory
        .items
        .iter()
        .filter_map(|item| match item {
            MemoryItem::DeadTransport { transport, .. } => Some((transport, &b"d.lab"[..])),
            MemoryItem::DeadDestination {
                transport, nexthop, ..
            }
            | MemoryItem::SuspendedDestination {
                transport, nexthop, ..
            }
            | MemoryItem::Window {
                transport, nexthop, ..
            } => Some((transport, &nexthop[..])),
        })
        .take(8)
        .map(|(transport, nexthop)| {
            let address = b"u@d.lab".to_vec();
            (
                Recipient::new(&address, &address, 0, b"", 0),
                Route {
                    transport: transport.clone(),
                    nexthop: nexthop.to_vec(),
                    address,
                    flags: resolve_flags::CLASS_DEFAULT,
                },
            )
        })
        .collect();
    s.import_memory(NOW, memory);
    checked(&s, "import");
    if !routes.is_empty() {
        let (m, _) = s.add_message(b"A1".to_vec(), Envelope::default(), Timeval::default(), 0);
        s.assign(NOW, m, routes);
        checked(&s, "assign");
    }
    s.drain();
    let _ = s.take_actions();
    checked(&s, "drain");
    let exported = s.export_memory(NOW);
    assert!(
        decode(&encode(&exported)).is_ok(),
        "own export does not decode"
    );
    // Every deadline (revivals, suspensions, forgotten window hints) in time order.
    let mut fired = 0;
    while let Some(at) = s.poll_timeout() {
        fired += 1;
        if fired > 64 {
            break;
        }
        s.handle_timeout(at.max(NOW));
        let _ = s.take_actions();
        checked(&s, "timeout");
    }
});
