//! Times and durations as an operator types and reads them: RFC 3339 timestamps in UTC with
//! milliseconds, relative times (`-10m`), and short durations (`3s`, `4m59.9s`).
//!
//! Why by hand: the audit trail stores milliseconds since the Unix epoch, and all the command
//! needs is to print them and to parse `--since`; a date library would be the biggest
//! dependency of the binary for forty lines of calendar arithmetic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `ms` (since the epoch) as `2025-05-01T12:00:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an RFC 3339 timestamp (`2025-05-01T12:00:00Z`, `2025-05-01 12:00:00.5+02:00`) to
/// milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let sep = rest.chars().next()?;
    if !matches!(sep, 'T' | 't' | ' ') {
        return None;
    }
    let rest = &rest[1..];
    let mut dp = date.split('-');
    let (y, mo, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (h, mi, sec) = (
        num(rest.get(0..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    if rest.get(2..3) != Some(":") || rest.get(5..6) != Some(":") || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    let mut milli = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n];
        milli = i64::from(num(&format!("{:0<3}", &digits[..n.min(3)]))?);
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.get(3..4) != Some(":") {
                return None;
            }
            let (oh, om) = (num(&rest[1..3])?, num(&rest[4..6])?);
            sign * i64::from(oh * 60 + om)
        }
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - offset_min * 60;
    Some(secs * 1000 + milli)
}

/// Parses a duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`), e.g. `500ms`, `3s`,
/// `10m`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h or d), e.g. 3s"))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: not a duration, e.g. 500ms, 3s, 10m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h or d)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: out of range"))
}

/// Parses `--since`: an RFC 3339 time, or a time relative to `now_ms` (`-10m`, `10m`: ten
/// minutes ago).
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    let rel = s.strip_prefix('-').unwrap_or(s);
    match parse_duration(rel) {
        Ok(d) => Ok(now_ms - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)),
        Err(_) => Err(format!(
            "--since {s:?}: expected an RFC 3339 time (2025-05-01T12:00:00Z) or a time \
             ago (-10m, -2h, -1d)"
        )),
    }
}

/// A duration for people: `850ms`, `4.2s`, `4m59s`, `2h03m`, `3d04h`.
pub fn human(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s < 60 {
        return format!("{}.{}s", s, ms % 1000 / 100);
    }
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if h == 0 {
        format!("{m}m{:02}s", s % 60)
    } else if d == 0 {
        format!("{h}h{:02}m", m % 60)
    } else {
        format!("{d}d{:02}h", h % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for ms in [0, 1_714_564_800_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00.5+02:00"),
            Some(1_714_564_800_500)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01 12:00:00Z"),
            Some(1_714_564_800_000)
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_and_since() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("3").is_err() && parse_duration("3y").is_err());
        assert_eq!(parse_since("-10m", 1_000_000), Ok(400_000));
        assert_eq!(parse_since("10m", 1_000_000), Ok(400_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 5), Ok(1000));
        assert!(parse_since("yesterday", 5).is_err());
        assert_eq!(human(850), "850ms");
        assert_eq!(human(4_250), "4.2s");
        assert_eq!(human(299_900), "4m59s");
        assert_eq!(human(7_380_000), "2h03m");
        assert_eq!(human(273_600_000), "3d04h");
    }
}
