//! Durations and sizes written with units, as operators write them in nginx and HAProxy
//! configs: `"250ms"`, `"5s"`, `"2m"`, `"1h"`; `"512KiB"`, `"256MiB"`, `"10MB"`.

use std::time::Duration;

/// Parses a duration with a unit: `ms`, `s`, `m` or `h` after a whole number.
///
/// A bare number is refused: a unit-less `timeout = 5` is the classic config mistake
/// (seconds or milliseconds?), so the unit is always required.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("`{text}` needs a unit: ms, s, m or h")),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    number
        .checked_mul(millis_per_unit)
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large (at most 87600h, ten years)"))
}

/// The longest duration a config may give: ten years is beyond any timeout or period, and
/// keeps every `Instant + duration` the server computes far from overflowing (which panics).
const MAX_DURATION_MS: u64 = 10 * 365 * 24 * 3_600_000;

/// Parses a size in bytes with a unit: `B`, `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let bytes_per_unit: u64 = match unit {
        "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "" => {
            return Err(format!(
                "`{text}` needs a unit: B, KiB, MiB, GiB, KB, MB or GB"
            ))
        }
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    number
        .checked_mul(bytes_per_unit)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Splits `"250ms"` into `(250, "ms")`.
fn split_number(text: &str) -> Result<(u64, &str), String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return Err(format!("`{text}` must start with a whole number"));
    }
    let number = text[..digits_end]
        .parse::<u64>()
        .map_err(|_| format!("`{text}` is too large"))?;
    Ok((number, text[digits_end..].trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_ms_s_m_h() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn durations_without_unit_or_number_are_refused() {
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn durations_past_ten_years_are_refused_before_an_instant_can_overflow() {
        assert_eq!(
            parse_duration("87600h"),
            Ok(Duration::from_secs(87_600 * 3600))
        );
        let error = parse_duration("87601h").unwrap_err();
        assert!(error.contains("at most 87600h"), "{error}");
        assert!(parse_duration("18446744073709551615ms").is_err());
        let far = std::time::Instant::now() + parse_duration("87600h").unwrap();
        assert!(far > std::time::Instant::now());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert!(parse_size("12").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
