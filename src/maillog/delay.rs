//! Postfix's delay numbers in `delay=` and `delays=`: two significant digits, rounded half up,
//! never more decimals than delay_logging_resolution_limit, trailing zeros dropped.

/// For k = 1..=5, the smallest f64 whose log10 (as glibc's libm rounds it) is at least -k: a
/// few ulps below 10^-k. Comparing against them gives `floor(log10(secs))` for 0 < secs < 1
/// without calling libm's log10, the one symbol that linked libm (about 320 KiB of an idle
/// daemon's RSS). Below 10^-5 the decimals are clamped to 6 anyway.
const DECADES: [f64; 5] = [
    f64::from_bits(0x3fb9_9999_9999_9998),
    f64::from_bits(0x3f84_7ae1_47ae_1478),
    f64::from_bits(0x3f50_624d_d2f1_a9fa),
    f64::from_bits(0x3f1a_36e2_eb1c_4325),
    f64::from_bits(0x3ee4_f8b5_88e3_68eb),
];

/// `1 - floor(log10(secs))` for 0 < secs < 1, at most 7.
fn decimals_below_one(secs: f64) -> i32 {
    DECADES.iter().take_while(|&&t| secs < t).count() as i32 + 2
}

/// Formats `secs` (non-negative) the way Postfix's format_tv does for delay logging.
pub fn format(secs: f64, max_decimals: u32) -> String {
    let secs = if secs.is_finite() && secs > 0.0 {
        secs
    } else {
        0.0
    };
    let wanted: i32 = if secs >= 10.0 {
        0
    } else if secs >= 1.0 {
        1
    } else if secs > 0.0 {
        decimals_below_one(secs)
    } else {
        0
    };
    let decimals = wanted.clamp(0, max_decimals.min(6) as i32) as u32;
    let scale = 10f64.powi(decimals as i32);
    let scaled = (secs * scale + 0.5).floor();
    let mut text = format!("{:.*}", decimals as usize, scaled / scale);
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn like_postfix_delay_fields() {
        assert_eq!(format(0.0, 2), "0");
        assert_eq!(format(0.05, 2), "0.05");
        assert_eq!(format(0.123, 2), "0.12");
        assert_eq!(format(0.001, 2), "0");
        assert_eq!(format(1.24, 2), "1.2");
        assert_eq!(format(1.0, 2), "1");
        assert_eq!(format(9.96, 2), "10");
        assert_eq!(format(12.4, 2), "12");
        assert_eq!(format(0.5, 0), "1");
        assert_eq!(format(0.0123, 3), "0.012");
    }

    #[test]
    fn decades_give_what_log10_gave() {
        let old = |x: f64| (1 - x.log10().floor() as i32).min(7);
        for &t in &super::DECADES {
            let mut x = t;
            for _ in 0..40 {
                x = f64::from_bits(x.to_bits() - 1);
            }
            for _ in 0..80 {
                assert_eq!(super::decimals_below_one(x), old(x), "{x:e}");
                x = f64::from_bits(x.to_bits() + 1);
            }
        }
        let mut x = 0.999_999;
        while x > 1e-8 {
            assert_eq!(super::decimals_below_one(x), old(x), "{x:e}");
            x *= 0.999_7;
        }
    }
}
