//! Per-transport settings (oqmgr/qmgr_transport.c qmgr_transport_create() and
//! oqmgr/qmgr_feedback.c in Postfix 3.7): `<transport>_destination_concurrency_limit` and
//! friends, falling back to the `default_...` parameters in [`Params`].

use std::fmt;

use super::{Config, ConfigError, Params};

/// Concurrency feedback: how much a success/failure moves the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// `N` or `N/M`: a constant amount.
    Constant(f64),
    /// `N/concurrency`: N divided by the current window.
    PerConcurrency(f64),
}

impl Feedback {
    /// The C daemon's QMGR_FEEDBACK_IDX_*: 0 constant, 1 per concurrency window.
    pub fn type_index(&self) -> u8 {
        match self {
            Feedback::Constant(_) => 0,
            Feedback::PerConcurrency(_) => 1,
        }
    }

    /// The feedback amount at concurrency window `window` (QMGR_FEEDBACK_VAL).
    pub fn value(&self, window: i32) -> f64 {
        match *self {
            Feedback::Constant(base) => base,
            Feedback::PerConcurrency(base) => base / f64::from(window),
        }
    }

    /// Feedback hysteresis is fixed at 1 in Postfix 3.7.
    pub const HYSTERESIS: i32 = 1;
}

/// A number as C's `printf("%g")` prints it (six significant digits, trailing zeros dropped,
/// exponent form below 1e-4 or from 1e6), for the feedback debug lines.
pub fn format_g(value: f64) -> String {
    const PRECISION: i32 = 6;
    if value.is_nan() {
        return if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_string();
    }
    if value.is_infinite() {
        return if value < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // The exponent after rounding to the precision decides the form, as in C.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let strip = |digits: &str| -> String {
        if digits.contains('.') {
            digits
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            digits.to_string()
        }
    };
    if (-4..PRECISION).contains(&exponent) {
        let decimals = (PRECISION - 1 - exponent) as usize;
        strip(&format!("{value:.decimals$}"))
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa), exponent.unsigned_abs())
    }
}

/// A bad feedback value that was replaced by 1; `Display` is Postfix's warning text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportWarning {
    /// The transport-specific name, or the `default_...` name when the value is the default's.
    pub parameter: String,
    pub value: Vec<u8>,
}

impl fmt::Display for TransportWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: ignoring malformed or unreasonable feedback: {}",
            self.parameter,
            String::from_utf8_lossy(&self.value)
        )
    }
}

/// A line the C daemon's qmgr_transport_create logs while it reads a transport's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportNotice {
    /// A malformed feedback value (a `warning:` line).
    Warning(TransportWarning),
    /// destination_concurrency_feedback_debug's report of a feedback setting (an info line,
    /// as qmgr_feedback_init logs it).
    Info(String),
}

impl fmt::Display for TransportNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportNotice::Warning(w) => w.fmt(f),
            TransportNotice::Info(text) => f.write_str(text),
        }
    }
}

/// The settings of one transport, looked up once when the transport is first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportParams {
    pub name: String,
    /// Per-destination concurrency limit; 0 = unlimited; forced to 1 by a destination rate
    /// delay.
    pub dest_concurrency_limit: i32,
    /// Recipients per delivery request; 0 = unlimited.
    pub recipient_limit: i32,
    /// Initial per-destination concurrency, clamped to a non-zero concurrency limit.
    pub init_dest_concurrency: i32,
    /// Seconds between deliveries over the transport.
    pub transport_rate_delay: i32,
    /// Seconds between deliveries to one destination.
    pub destination_rate_delay: i32,
    pub positive_feedback: Feedback,
    pub negative_feedback: Feedback,
    pub failed_cohort_limit: i32,
}

/// Upper bound of the feedback numerator and denominator (INT_MAX).
const INT_MAX: f64 = i32::MAX as f64;

/// Parses a feedback value like `sscanf(value, "%lf %1[/] %30s%c")` followed by Postfix's
/// checks: `N`, `N/M` or `N/concurrency`, result within 0..1. `None` when unusable.
pub fn parse_feedback(value: &[u8]) -> Option<Feedback> {
    let (numerator, used) = crate::cnum::strtod(value)?;
    let mut rest = skip_space(&value[used..]);
    if rest.first() != Some(&b'/') {
        // One conversion: whatever follows the number is ignored.
        return in_unit_range(numerator).then_some(Feedback::Constant(numerator));
    }
    rest = skip_space(&rest[1..]);
    let word_len = rest
        .iter()
        .take_while(|&&b| !super::maincf::is_c_space(b))
        .count()
        .min(30);
    if word_len == 0 || word_len < rest.len() {
        // Two conversions (nothing after "/") or four (junk after the word).
        return None;
    }
    let denominator = rest;
    // qmgr_feedback_init looks the keyword up with name_code, which ignores case.
    let feedback = if denominator.eq_ignore_ascii_case(b"concurrency") {
        Feedback::PerConcurrency(numerator)
    } else {
        if !(0.0..=INT_MAX).contains(&numerator) {
            return None;
        }
        let (divisor, used) = crate::cnum::strtod(denominator)?;
        if used != denominator.len() || !((1.0 / INT_MAX)..=INT_MAX).contains(&divisor) {
            return None;
        }
        Feedback::Constant(numerator / divisor)
    };
    let base = match feedback {
        Feedback::Constant(base) | Feedback::PerConcurrency(base) => base,
    };
    in_unit_range(base).then_some(feedback)
}

fn in_unit_range(value: f64) -> bool {
    (0.0..=1.0).contains(&value)
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let blanks = bytes
        .iter()
        .take_while(|&&b| super::maincf::is_c_space(b))
        .count();
    &bytes[blanks..]
}

impl Default for TransportParams {
    /// Postfix 3.7's defaults for a transport with no settings of its own.
    fn default() -> Self {
        TransportParams {
            name: String::new(),
            dest_concurrency_limit: 20,
            recipient_limit: 50,
            init_dest_concurrency: 5,
            transport_rate_delay: 0,
            destination_rate_delay: 0,
            positive_feedback: Feedback::Constant(1.0),
            negative_feedback: Feedback::Constant(1.0),
            failed_cohort_limit: 1,
        }
    }
}

impl TransportParams {
    /// Looks up the settings of transport `name` the way qmgr_transport_create() does, in the
    /// same order (so the first fatal error is the same). `params` supplies the fallbacks.
    /// Bad feedback values are replaced by 1 and reported as warnings; with
    /// destination_concurrency_feedback_debug, each feedback setting is reported too.
    pub fn lookup(
        config: &Config,
        params: &Params,
        name: &str,
    ) -> Result<(TransportParams, Vec<TransportNotice>), ConfigError> {
        let key = |suffix: &str| format!("{name}{suffix}");
        let mut dest_concurrency_limit = config.get_int(
            &key("_destination_concurrency_limit"),
            params.default_destination_concurrency_limit,
            0,
            0,
        )?;
        let recipient_limit = config.get_int(
            &key("_destination_recipient_limit"),
            params.default_destination_recipient_limit,
            0,
            0,
        )?;
        let mut init_dest_concurrency = config.get_int(
            &key("_initial_destination_concurrency"),
            params.initial_destination_concurrency,
            1,
            0,
        )?;
        let transport_rate_delay = config.get_time_or_seconds(
            &key("_transport_rate_delay"),
            params.default_transport_rate_delay,
            b's',
            0,
            0,
        )?;
        let destination_rate_delay = config.get_time_or_seconds(
            &key("_destination_rate_delay"),
            params.default_destination_rate_delay,
            b's',
            0,
            0,
        )?;
        if destination_rate_delay > 0 {
            dest_concurrency_limit = 1;
        }
        if dest_concurrency_limit != 0 && dest_concurrency_limit < init_dest_concurrency {
            init_dest_concurrency = dest_concurrency_limit;
        }
        let mut notices = Vec::new();
        let positive_feedback = feedback(
            config,
            params,
            name,
            &key("_destination_concurrency_positive_feedback"),
            "default_destination_concurrency_positive_feedback",
            &params.default_destination_concurrency_positive_feedback,
            &mut notices,
        )?;
        let negative_feedback = feedback(
            config,
            params,
            name,
            &key("_destination_concurrency_negative_feedback"),
            "default_destination_concurrency_negative_feedback",
            &params.default_destination_concurrency_negative_feedback,
            &mut notices,
        )?;
        let failed_cohort_limit = config.get_int(
            &key("_destination_concurrency_failed_cohort_limit"),
            params.default_destination_concurrency_failed_cohort_limit,
            0,
            0,
        )?;
        Ok((
            TransportParams {
                name: name.to_string(),
                dest_concurrency_limit,
                recipient_limit,
                init_dest_concurrency,
                transport_rate_delay,
                destination_rate_delay,
                positive_feedback,
                negative_feedback,
                failed_cohort_limit,
            },
            notices,
        ))
    }
}

/// qmgr_feedback_init(): the transport's value (else the default's value, expanded again),
/// at least 1 byte long; unusable values become 1 with a warning.
fn feedback(
    config: &Config,
    params: &Params,
    transport: &str,
    name: &str,
    default_name: &str,
    default_value: &[u8],
    notices: &mut Vec<TransportNotice>,
) -> Result<Feedback, ConfigError> {
    let value = config.get_str(name, default_value, 1, 0)?;
    // The lines name the parameter that holds the value.
    let parameter = if value != default_value {
        name
    } else {
        default_name
    };
    let feedback = match parse_feedback(&value) {
        Some(feedback) => feedback,
        None => {
            notices.push(TransportNotice::Warning(TransportWarning {
                parameter: parameter.to_string(),
                value,
            }));
            Feedback::Constant(1.0)
        }
    };
    if params.destination_concurrency_feedback_debug {
        let (kind, at) = (
            feedback.type_index(),
            params.initial_destination_concurrency,
        );
        notices.push(TransportNotice::Info(format!(
            "{transport}: {parameter} feedback type {kind} value at {at}: {}",
            format_g(feedback.value(at))
        )));
    }
    Ok(feedback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(main_cf: &str) -> (Config, Params) {
        let config =
            Config::from_main_cf("/etc/postfix", main_cf.as_bytes(), &[] as &[&str], b"vm")
                .unwrap();
        let params = Params::from_config(&config).unwrap();
        (config, params)
    }

    fn lookup(main_cf: &str, transport: &str) -> (TransportParams, Vec<String>) {
        let (config, params) = setup(main_cf);
        let (found, warnings) = TransportParams::lookup(&config, &params, transport).unwrap();
        (found, warnings.iter().map(|w| w.to_string()).collect())
    }

    #[test]
    fn defaults_and_local_special_case() {
        let (smtp, warnings) = lookup("", "smtp");
        assert!(warnings.is_empty());
        assert_eq!(smtp.dest_concurrency_limit, 20);
        assert_eq!(smtp.recipient_limit, 50);
        assert_eq!(smtp.init_dest_concurrency, 5);
        assert_eq!(smtp.transport_rate_delay, 0);
        assert_eq!(smtp.destination_rate_delay, 0);
        assert_eq!(smtp.positive_feedback, Feedback::Constant(1.0));
        assert_eq!(smtp.failed_cohort_limit, 1);
        let (local, _) = lookup("", "local");
        assert_eq!(local.dest_concurrency_limit, 2);
        assert_eq!(local.recipient_limit, 1);
        assert_eq!(local.init_dest_concurrency, 2);
    }

    #[test]
    fn specific_values_fallbacks_and_derived_rules() {
        let main_cf = "default_destination_concurrency_limit = 10\n\
            relay_destination_concurrency_limit = 3\n\
            relay_destination_recipient_limit = 0\n\
            relay_transport_rate_delay = 2m\n\
            slow_destination_rate_delay = 5\n\
            slow_destination_concurrency_limit = 40\n\
            my-filter_destination_concurrency_failed_cohort_limit = 7\n";
        let (relay, _) = lookup(main_cf, "relay");
        assert_eq!(relay.dest_concurrency_limit, 3);
        assert_eq!(relay.init_dest_concurrency, 3);
        assert_eq!(relay.recipient_limit, 0);
        assert_eq!(relay.transport_rate_delay, 120);
        let (slow, _) = lookup(main_cf, "slow");
        assert_eq!(slow.destination_rate_delay, 5);
        assert_eq!(slow.dest_concurrency_limit, 1);
        assert_eq!(slow.init_dest_concurrency, 1);
        let (filter, _) = lookup(main_cf, "my-filter");
        assert_eq!(filter.dest_concurrency_limit, 10);
        assert_eq!(filter.failed_cohort_limit, 7);
        let (unlimited, _) = lookup("x_destination_concurrency_limit = 0\n", "x");
        assert_eq!(unlimited.dest_concurrency_limit, 0);
        assert_eq!(unlimited.init_dest_concurrency, 5);
    }

    #[test]
    fn bad_values_are_fatal() {
        let (config, params) =
            setup("smtp_initial_destination_concurrency = 0\nrelay_destination_rate_delay = 1y\n");
        assert_eq!(
            TransportParams::lookup(&config, &params, "smtp")
                .unwrap_err()
                .to_string(),
            "invalid smtp_initial_destination_concurrency parameter value 0 < 1"
        );
        assert_eq!(
            TransportParams::lookup(&config, &params, "relay")
                .unwrap_err()
                .to_string(),
            "parameter relay_destination_rate_delay: bad time value or unit: 1y"
        );
        let (config, params) = setup("smtp_destination_concurrency_negative_feedback =\n");
        assert_eq!(
            TransportParams::lookup(&config, &params, "smtp")
                .unwrap_err()
                .to_string(),
            "bad string length 0 < 1: smtp_destination_concurrency_negative_feedback = "
        );
    }

    #[test]
    fn feedback_syntax() {
        assert_eq!(parse_feedback(b"1"), Some(Feedback::Constant(1.0)));
        assert_eq!(parse_feedback(b"0.5"), Some(Feedback::Constant(0.5)));
        assert_eq!(parse_feedback(b"1/8"), Some(Feedback::Constant(0.125)));
        assert_eq!(parse_feedback(b" 1 / 4"), Some(Feedback::Constant(0.25)));
        assert_eq!(
            parse_feedback(b"1/concurrency"),
            Some(Feedback::PerConcurrency(1.0))
        );
        // The keyword is looked up with name_code, which ignores case.
        for keyword in ["1/CONCURRENCY", "1 / Concurrency"] {
            assert_eq!(
                parse_feedback(keyword.as_bytes()),
                Some(Feedback::PerConcurrency(1.0)),
                "{keyword}"
            );
        }
        assert_eq!(parse_feedback(b"0.5abc"), Some(Feedback::Constant(0.5)));
        assert_eq!(parse_feedback(b"0x.8"), Some(Feedback::Constant(0.5)));
        assert_eq!(parse_feedback(b"5."), None);
        assert_eq!(parse_feedback(b"1."), Some(Feedback::Constant(1.0)));
        for bad in [
            "",
            "x",
            "2",
            "-1",
            "1/",
            "1/8 ",
            "1/8x",
            "1/0",
            "1/sqrt_concurrency",
            "nan",
            "inf",
            "2/concurrency",
            "1/ 8 9",
        ] {
            assert_eq!(parse_feedback(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(Feedback::PerConcurrency(1.0).value(4), 0.25);
        assert_eq!(Feedback::Constant(0.5).value(4), 0.5);
    }

    #[test]
    fn feedback_warnings_name_the_parameter_that_holds_the_value() {
        let (smtp, warnings) = lookup(
            "smtp_destination_concurrency_positive_feedback = 3\n",
            "smtp",
        );
        assert_eq!(smtp.positive_feedback, Feedback::Constant(1.0));
        assert_eq!(
            warnings,
            ["smtp_destination_concurrency_positive_feedback: ignoring malformed or unreasonable feedback: 3"]
        );
        let (_, warnings) = lookup(
            "default_destination_concurrency_negative_feedback = 1/0\n",
            "smtp",
        );
        assert_eq!(
            warnings,
            ["default_destination_concurrency_negative_feedback: ignoring malformed or unreasonable feedback: 1/0"]
        );
    }

    #[test]
    fn numbers_print_as_c_printf_g() {
        let cases: [(f64, &str); 16] = [
            (1.0, "1"),
            (0.2, "0.2"),
            (1.0 / 3.0, "0.333333"),
            (0.125, "0.125"),
            (1e-5, "1e-05"),
            (1234567.0, "1.23457e+06"),
            (0.0, "0"),
            (100000.0, "100000"),
            (999999.5, "1e+06"),
            (0.0001, "0.0001"),
            (2.5, "2.5"),
            (-0.5, "-0.5"),
            (0.00012345678, "0.000123457"),
            (123456.7, "123457"),
            (5.0 / 7.0, "0.714286"),
            (3.0000001, "3"),
        ];
        for (value, printed) in cases {
            assert_eq!(format_g(value), printed, "{value}");
        }
    }

    #[test]
    fn feedback_debug_reports_each_setting_as_qmgr_feedback_init() {
        let (_, lines) = lookup("", "smtp");
        assert!(lines.is_empty(), "off by default");
        let (_, lines) = lookup(
            "destination_concurrency_feedback_debug = yes\n\
             relay_destination_concurrency_positive_feedback = 1/Concurrency\n\
             relay_destination_concurrency_negative_feedback = 7\n\
             initial_destination_concurrency = 3\n",
            "relay",
        );
        assert_eq!(
            lines,
            [
                "relay: relay_destination_concurrency_positive_feedback feedback type 1 value at 3: 0.333333",
                "relay_destination_concurrency_negative_feedback: ignoring malformed or unreasonable feedback: 7",
                "relay: relay_destination_concurrency_negative_feedback feedback type 0 value at 3: 1",
            ]
        );
        let (_, lines) = lookup("destination_concurrency_feedback_debug = yes\n", "smtp");
        assert_eq!(
            lines,
            [
                "smtp: default_destination_concurrency_positive_feedback feedback type 0 value at 5: 1",
                "smtp: default_destination_concurrency_negative_feedback feedback type 0 value at 5: 1",
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn feedback_parser_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = parse_feedback(&input);
        }

        #[test]
        fn feedback_soup_never_panics(input in "[0-9./ xpe+-]{0,20}") {
            if let Some(Feedback::Constant(v) | Feedback::PerConcurrency(v)) = parse_feedback(input.as_bytes()) {
                proptest::prop_assert!((0.0..=1.0).contains(&v));
            }
        }
    }
}
