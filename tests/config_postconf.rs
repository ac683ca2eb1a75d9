//! Checks our main.cf reading, `$` expansion and typed conversion against the real Postfix 3.7
//! `postconf -c DIR -x -h [-o name=value] NAME...` for every parameter in the table and for the
//! per-transport parameters.
//!
//! Without `postconf` the test prints a skip message and passes, unless
//! `OQMGR_REQUIRE_POSTFIX=1` is set.

use std::path::Path;
use std::process::Command;

use oqmgr::config::value::{default_time_unit, parse_time};
use oqmgr::config::{
    Config, DefaultValue, Feedback, ParamType, ParamValue, Params, TransportParams, PARAM_TABLE,
};

/// postconf warns about a missing master.cf; per-transport parameters are only known to it for
/// services defined there.
const MASTER_CF: &str = "\
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
my-filter unix  -       -       n       -       -       lmtp
local     unix  -       n       n       -       -       local
";

/// Every expansion form, continuation lines, comments, a duplicate, and overrides of many
/// table parameters (bare numbers take the default's unit: `maximal_queue_lifetime = 3` is
/// three days).
const MAIN_CF: &str = r#"# Test configuration
compatibility_level = 3.6
mydomain = example.net
# a continued value with a comment line inside the continuation
queue_run_delay =
# interleaved comment
    240s
minimal_backoff_time = $queue_run_delay
maximal_backoff_time = 2h
maximal_queue_lifetime = 3
bounce_queue_lifetime = ${maximal_queue_lifetime}
qmgr_message_active_limit = 1000
qmgr_message_recipient_limit = $(qmgr_message_active_limit)0
default_destination_concurrency_limit = ${{$compatibility_level} >=level {3} ? {30} : {10}}
default_destination_recipient_limit = ${{100} > {99} ? {75} : {25}}
initial_destination_concurrency = ${{abc} < {abd} ? {3} : {4}}
defer_transports = ${mydomain?slow}, ${nosuch?never}${nosuch:fallback} $$literal
default_filter_nexthop = ${{$myhostname} == {x} ? {} : {[$myhostname]:10025}}
default_destination_concurrency_positive_feedback = 1/concurrency
default_destination_concurrency_negative_feedback = 1/8
default_destination_concurrency_failed_cohort_limit = ${{2} <level {3.6} ? {5} : {6}}
hash_queue_names = deferred, defer,
  bounce,	trace
recipient_delimiter = +
syslog_name = ${multi_instance_name?{$multi_instance_name}:{postfix-test}}
myorigin = $mydomain
relay_domains = $mydestination
fast_flush_domains = ${relay_domains?{$relay_domains}}
in_flow_delay = 2
qmgr_clog_warn_time = 0
transport_retry_time = 2m
soft_bounce = YES
confirm_delay_cleared = yes
disable_verp_bounces = ${{1} == {01} ? {yes} : {no}}
destination_concurrency_feedback_debug = ${{1} != {1}}no
qmgr_fudge_factor = 50
qmgr_fudge_factor = 60
address_verify_pending_request_limit = 250
delay_logging_resolution_limit = 3
ipc_idle = 10
ipc_ttl = 1w
daemon_timeout = 5h
hash_queue_depth = 2
helpful_warnings = No
enable_long_queue_ids = yes
smtp_destination_concurrency_limit = 7
smtp_initial_destination_concurrency = 9
relay_destination_rate_delay = 2
relay_destination_concurrency_limit = 4
my-filter_destination_recipient_limit = 1
my-filter_destination_concurrency_positive_feedback = 1/4
my-filter_destination_concurrency_negative_feedback = 2
my-filter_transport_rate_delay = 1m
local_destination_concurrency_limit = $smtp_destination_concurrency_limit
"#;

const OVERRIDES: &[&str] = &[
    "qmgr_daemon_timeout=2000s",
    "default_transport_rate_delay=3",
    "qmgr_ipc_timeout=$ipc_idle",
    "local_destination_recipient_limit = 2",
];

const TRANSPORTS: &[&str] = &["smtp", "relay", "my-filter", "local"];

fn postconf_available() -> bool {
    match Command::new("postconf")
        .arg("-d")
        .arg("mail_version")
        .output()
    {
        Ok(output) if output.status.success() => true,
        _ => {
            if std::env::var("OQMGR_REQUIRE_POSTFIX").as_deref() == Ok("1") {
                panic!("postconf is required (OQMGR_REQUIRE_POSTFIX=1) but cannot be run");
            }
            eprintln!("skipping: postconf(1) not found; install postfix to run this test");
            false
        }
    }
}

/// `postconf -c DIR -x -h -o ... NAMES`, one value per name. postconf normalizes whitespace
/// between words when printing, so values are compared in that form.
fn postconf_values(dir: &Path, overrides: &[&str], names: &[String]) -> Vec<String> {
    let mut command = Command::new("postconf");
    command.arg("-c").arg(dir).arg("-x").arg("-h");
    for o in overrides {
        command.arg("-o").arg(o);
    }
    command.args(names);
    let output = command.output().expect("run postconf");
    assert!(
        output.status.success(),
        "postconf failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("postconf output is UTF-8");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(
        lines.len(),
        names.len(),
        "postconf printed {} lines for {} names; stderr: {}",
        lines.len(),
        names.len(),
        String::from_utf8_lossy(&output.stderr)
    );
    lines
}

fn normalize(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Converts postconf's expanded string the way our table says, for the typed comparison.
fn typed_from_postconf(name: &str, text: &str) -> ParamValue {
    let spec = PARAM_TABLE.iter().find(|s| s.name == name).unwrap();
    match spec.param_type {
        ParamType::Int => ParamValue::Int(text.parse().unwrap()),
        ParamType::Bool => ParamValue::Bool(text.eq_ignore_ascii_case("yes")),
        ParamType::Time => {
            let DefaultValue::Text(default) = spec.default else {
                panic!("time parameter {name} without a text default")
            };
            let unit = default_time_unit(default.as_bytes()).unwrap();
            ParamValue::Time(parse_time(text.as_bytes(), unit).unwrap())
        }
        ParamType::Str => ParamValue::Str(text.as_bytes().to_vec()),
    }
}

fn check_all_parameters(main_cf: &str, overrides: &[&str]) -> (Config, Params) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.cf"), main_cf).unwrap();
    std::fs::write(dir.path().join("master.cf"), MASTER_CF).unwrap();
    let config = Config::load(dir.path(), overrides).expect("load main.cf");
    let params = Params::from_config(&config).expect("typed parameters");

    // oqmgr_* parameters are our own: postconf does not know them.
    let ours_only = |name: &str| name.starts_with("oqmgr_");
    let names: Vec<String> = PARAM_TABLE
        .iter()
        .filter(|s| !ours_only(s.name))
        .map(|s| s.name.to_string())
        .collect();
    let expected = postconf_values(dir.path(), overrides, &names);
    let mut table = params.to_table();
    table.retain(|(name, _)| !ours_only(name));
    let mut mismatches = Vec::new();
    for ((name, want), (table_name, typed)) in names.iter().zip(&expected).zip(&table) {
        assert_eq!(name, table_name);
        let ours = config.get(name).unwrap().unwrap();
        if normalize(&ours) != *want {
            mismatches.push(format!(
                "{name}: ours {:?}, postconf {want:?}",
                normalize(&ours)
            ));
            continue;
        }
        // Strings compare in postconf's normalized form; everything else exactly.
        let theirs = typed_from_postconf(name, want);
        let same = match (typed, &theirs) {
            (ParamValue::Str(a), ParamValue::Str(_)) => normalize(a) == *want,
            _ => *typed == theirs,
        };
        if !same {
            mismatches.push(format!(
                "{name}: typed ours {typed:?}, from postconf {theirs:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );

    // Per-transport lookups against postconf's per-service parameters.
    let suffixes = [
        "_destination_concurrency_limit",
        "_destination_recipient_limit",
        "_initial_destination_concurrency",
        "_transport_rate_delay",
        "_destination_rate_delay",
        "_destination_concurrency_positive_feedback",
        "_destination_concurrency_negative_feedback",
        "_destination_concurrency_failed_cohort_limit",
    ];
    for transport in TRANSPORTS {
        let names: Vec<String> = suffixes.iter().map(|s| format!("{transport}{s}")).collect();
        let theirs = postconf_values(dir.path(), overrides, &names);
        let (ours, _warnings) = TransportParams::lookup(&config, &params, transport).unwrap();
        let int = |i: usize| theirs[i].parse::<i32>().unwrap();
        let secs = |i: usize| parse_time(theirs[i].as_bytes(), b's').unwrap();
        let rate_delay = secs(4);
        let mut limit = int(0);
        if rate_delay > 0 {
            limit = 1;
        }
        let mut initial = int(2);
        if limit != 0 && limit < initial {
            initial = limit;
        }
        assert_eq!(ours.dest_concurrency_limit, limit, "{transport}");
        assert_eq!(ours.recipient_limit, int(1), "{transport}");
        assert_eq!(ours.init_dest_concurrency, initial, "{transport}");
        assert_eq!(ours.transport_rate_delay, secs(3), "{transport}");
        assert_eq!(ours.destination_rate_delay, rate_delay, "{transport}");
        let feedback = |text: &str| {
            oqmgr::config::transport::parse_feedback(text.as_bytes())
                .unwrap_or(Feedback::Constant(1.0))
        };
        assert_eq!(ours.positive_feedback, feedback(&theirs[5]), "{transport}");
        assert_eq!(ours.negative_feedback, feedback(&theirs[6]), "{transport}");
        assert_eq!(ours.failed_cohort_limit, int(7), "{transport}");
    }
    (config, params)
}

#[test]
fn defaults_agree_with_postconf() {
    if !postconf_available() {
        return;
    }
    let (config, _params) = check_all_parameters("", &[]);
    assert!(config.warnings().is_empty());
}

#[test]
fn every_form_and_override_agrees_with_postconf() {
    if !postconf_available() {
        return;
    }
    let (config, mut params) = check_all_parameters(MAIN_CF, OVERRIDES);

    // Spot checks of what a user would see.
    // postconf logs the same warning (see postconf_warns_like_us).
    let warnings: Vec<String> = config.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [format!(
            "{}/main.cf, line 37: overriding earlier entry: qmgr_fudge_factor=50",
            config.config_dir()
        )]
    );
    assert_eq!(params.maximal_queue_lifetime, 3 * 86400);
    assert_eq!(params.queue_run_delay, 240);
    assert_eq!(params.qmgr_fudge_factor, 60);
    assert_eq!(params.qmgr_message_recipient_limit, 10000);
    assert_eq!(params.default_transport_rate_delay, 3);
    assert_eq!(params.qmgr_ipc_timeout, 10);
    assert_eq!(params.defer_transports, b"slow, fallback $literal");
    assert!(params.disable_verp_bounces);
    assert!(params.apply_post_init().is_empty());

    let (filter, warnings) = TransportParams::lookup(&config, &params, "my-filter").unwrap();
    assert_eq!(filter.positive_feedback, Feedback::Constant(0.25));
    assert_eq!(filter.negative_feedback, Feedback::Constant(1.0));
    assert_eq!(
        warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        ["my-filter_destination_concurrency_negative_feedback: ignoring malformed or unreasonable feedback: 2"]
    );
    let (relay, _) = TransportParams::lookup(&config, &params, "relay").unwrap();
    assert_eq!(
        (relay.dest_concurrency_limit, relay.init_dest_concurrency),
        (1, 1)
    );
    let (local, _) = TransportParams::lookup(&config, &params, "local").unwrap();
    assert_eq!(
        (local.dest_concurrency_limit, local.recipient_limit),
        (7, 2)
    );
}

#[test]
fn postconf_rejects_what_we_reject() {
    if !postconf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.cf"), MASTER_CF).unwrap();
    std::fs::write(dir.path().join("main.cf"), "a = 1\nbad line\n").unwrap();
    let ours = Config::load(dir.path(), &[] as &[&str])
        .unwrap_err()
        .to_string();
    let output = Command::new("postconf")
        .arg("-c")
        .arg(dir.path())
        .arg("-h")
        .arg("mail_version")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("postconf: fatal: {ours}")),
        "ours: {ours}\npostconf: {stderr}"
    );
}

#[test]
fn postconf_warns_like_us() {
    if !postconf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.cf"), MASTER_CF).unwrap();
    let main_cf =
        "  leading = skipped\na = 1\n  continued\n# c\na = 2\nconfig_directory = /elsewhere\n";
    std::fs::write(dir.path().join("main.cf"), main_cf).unwrap();
    let config = Config::load(dir.path(), &[] as &[&str]).unwrap();
    let output = Command::new("postconf")
        .arg("-c")
        .arg(dir.path())
        .arg("-h")
        .arg("mail_version")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(config.warnings().len(), 3);
    for warning in config.warnings() {
        let line = format!("postconf: warning: {warning}");
        assert!(stderr.contains(&line), "missing {line:?} in\n{stderr}");
    }
}
