//! Configuration: main.cf text and the argv master passes (`-o name=value` among the
//! generic options), through the parser, `$name` expansion, every parameter oqmgr reads,
//! the post-init adjustments, per-transport lookups, the domain lists, and the typed value
//! parsers on every value.
//!
//! Input: main.cf text, then NUL-separated argv words (after argv[0]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oqmgr::config::domain_list::{parent_style, DomainList};
use oqmgr::config::expand::compatibility_level;
use oqmgr::config::maincf::split_name_value;
use oqmgr::config::transport::{parse_feedback, TransportParams};
use oqmgr::config::value::{default_time_unit, parse_time, to_bool, to_int, to_time};
use oqmgr::config::{Config, Params};
use oqmgr::master::options::DaemonOptions;

/// The typed parsers every value may meet.
fn typed(value: &[u8]) {
    let _ = to_int("p", value, 0, 0).map_err(|e| e.to_string());
    let _ = to_int("p", value, 1, 100).map_err(|e| e.to_string());
    let _ = to_bool("p", value).map_err(|e| e.to_string());
    let _ = parse_time(value, b's');
    let _ = parse_time(value, b'd');
    let _ = default_time_unit(value);
    let _ = to_time("p", value, b'h', 0, 0).map_err(|e| e.to_string());
    let _ = parse_feedback(value);
    let _ = compatibility_level(value);
}

/// A domain list, unless it names a file (the fuzzer must not read this machine's files).
fn domain_list(param: &str, value: &[u8], parent: bool) {
    if value.contains(&b'/') {
        return;
    }
    match DomainList::parse(param, value, parent) {
        Ok((list, _warnings)) => {
            let _ = list.tables().count();
            for name in [&b"example.com"[..], b"sub.localhost", b"", value] {
                let _ = list.lookup(name);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (main_cf, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let mut argv = vec!["qmgr".to_string()];
    if !rest.is_empty() {
        argv.extend(
            rest.split(|&b| b == 0)
                .take(32)
                .map(|w| String::from_utf8_lossy(w).into_owned()),
        );
    }
    let overrides = match DaemonOptions::parse(&argv) {
        Ok(mut options) => {
            let _ = options.check_service().map_err(|e| e.to_string());
            let _ = options.unexpected_argument();
            options.overrides
        }
        Err(e) => {
            let _ = e.to_string();
            // Still try the words as `-o` values, the part of argv this fuzzer is after.
            argv.split_off(1)
        }
    };
    for o in &overrides {
        if let Ok((_, value)) = split_name_value(o.as_bytes()) {
            typed(value);
        }
    }
    let config = match Config::from_main_cf("/etc/postfix", main_cf, &overrides, b"mx1") {
        Ok(config) => config,
        Err(e) => {
            let _ = e.preceding_warning();
            let _ = e.to_string();
            return;
        }
    };
    for w in config.warnings() {
        let _ = w.to_string();
    }
    // Every value set, expanded and through the typed parsers.
    let names: Vec<String> = main_cf
        .split(|&b| b == b'\n')
        .chain(overrides.iter().map(|o| o.as_bytes()))
        .filter_map(|line| split_name_value(line).ok())
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .take(16)
        .collect();
    for name in &names {
        if let Ok(Some(value)) = config.get(name) {
            typed(&value);
        }
    }
    let mut params = match Params::from_config(&config) {
        Ok(params) => params,
        Err(e) => {
            let _ = e.preceding_warning();
            let _ = e.to_string();
            return;
        }
    };
    for w in params.apply_post_init() {
        let _ = w.to_string();
    }
    // Per-transport parameters: the usual transports and any `<name>_...` set here.
    let mut transports = vec!["smtp".to_string(), "local".to_string()];
    transports.extend(
        names
            .iter()
            .filter_map(|n| n.split_once('_').map(|(t, _)| t.to_string()))
            .take(4),
    );
    for transport in &transports {
        match TransportParams::lookup(&config, &params, transport) {
            Ok((limits, notices)) => {
                let _ = limits
                    .positive_feedback
                    .value(limits.dest_concurrency_limit);
                let _ = limits.negative_feedback.value(1);
                for n in notices {
                    let _ = format!("{n:?}");
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    domain_list("mydestination", &params.mydestination, false);
    let parent = parent_style(
        &params.parent_domain_matches_subdomains,
        "fast_flush_domains",
    );
    domain_list("fast_flush_domains", &params.fast_flush_domains, parent);
});
