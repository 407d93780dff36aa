//! Sizes and durations as users type them, and as the lab prints them.
//!
//! `K`, `KiB`, `M`, `MiB`, `G`, `GiB` are powers of 1024; `KB`, `MB`, `GB` are powers of 1000
//! (the seeds' "3.8 MB" file is 3 800 000 bytes). A bare number is bytes. Fractions are allowed
//! when the result is a whole number of bytes (`3.8MB`, `1.5KiB`).

use std::fmt;
use std::time::Duration;

/// Why a size or duration string was refused; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

const SUFFIXES: &[(&str, u64)] = &[
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1_000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("tb", 1_000_000_000_000),
];

/// Splits a trailing unit off `t`: the first of `units` (checked in order, so list longer
/// suffixes first) that `t` ends with, and its multiplier; `(t, bare)` when none does.
pub fn strip_unit<'a, T: Copy>(t: &'a str, units: &[(&str, T)], bare: T) -> (&'a str, T) {
    units
        .iter()
        .find_map(|&(u, m)| t.strip_suffix(u).map(|n| (n, m)))
        .unwrap_or((t, bare))
}

/// Parses a size such as `4096`, `4K`, `64KiB`, `3.8MB`, `1GiB`; zero is allowed here
/// (callers that need a positive size use [`parse_size_nonzero`]).
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(ParseError(format!(
            "'{s}' is not a size (expected e.g. 4096, 64K, 1MiB, 3.8MB)"
        )));
    }
    let mult = if unit.is_empty() {
        1
    } else {
        let u = unit.trim().to_ascii_lowercase();
        SUFFIXES
            .iter()
            .find(|(name, _)| *name == u)
            .map(|&(_, m)| m)
            .ok_or_else(|| {
                ParseError(format!(
                    "'{s}': unknown size unit '{unit}' (use B, K/KiB, M/MiB, G/GiB, or KB/MB/GB for powers of 1000)"
                ))
            })?
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return Err(ParseError(format!("'{s}' is not a size")));
    }
    let int_v: u64 = if int.is_empty() {
        0
    } else {
        int.parse()
            .map_err(|_| ParseError(format!("'{s}' is too large")))?
    };
    let mut total = int_v
        .checked_mul(mult)
        .ok_or_else(|| ParseError(format!("'{s}' is too large")))?;
    if !frac.is_empty() {
        if frac.len() > 12 {
            return Err(ParseError(format!("'{s}' has too many decimals")));
        }
        let frac_v: u128 = frac
            .parse()
            .map_err(|_| ParseError(format!("'{s}' is not a size")))?;
        let scale = 10u128.pow(frac.len() as u32);
        let part = frac_v * mult as u128;
        if part % scale != 0 {
            return Err(ParseError(format!("'{s}' is not a whole number of bytes")));
        }
        total = total
            .checked_add((part / scale) as u64)
            .ok_or_else(|| ParseError(format!("'{s}' is too large")))?;
    }
    Ok(total)
}

/// Like [`parse_size`] but refuses zero: a transfer, buffer or message of 0 bytes measures nothing.
pub fn parse_size_nonzero(s: &str) -> Result<u64, ParseError> {
    match parse_size(s)? {
        0 => Err(ParseError(format!("'{s}': size must be greater than 0"))),
        v => Ok(v),
    }
}

/// Parses a comma-separated list of non-zero sizes (`4K,64K,1M`); an empty list is refused.
pub fn parse_size_list(s: &str) -> Result<Vec<u64>, ParseError> {
    let items: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect();
    if items.is_empty() {
        return Err(ParseError(format!(
            "'{s}': expected one or more sizes separated by commas"
        )));
    }
    items.into_iter().map(parse_size_nonzero).collect()
}

/// Parses a duration: `250ms`, `2s`, `1.5s`, `10m`, `100us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| ParseError(format!("'{s}' is not a duration (expected e.g. 2s, 250ms)")))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" => v / 1e6,
        "ns" => v / 1e9,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => {
            return Err(ParseError(format!(
                "'{s}': unknown duration unit '{u}' (use ns, us, ms, s, m, h)"
            )));
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(ParseError(format!("'{s}' is out of range")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a byte count the way the lab prints parameter points: exact binary units where the
/// value is a whole multiple (`64KiB`, `1MiB`), exact decimal units otherwise (`3.8MB`), else bytes.
pub fn fmt_size(v: u64) -> String {
    let dec = fmt_decimal(v);
    for (name, m) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if v >= m && v % m == 0 {
            let bin = format!("{}{name}", v / m);
            // 800 MB is also 781250 KiB: take the shorter spelling.
            return match dec {
                Some(d) if d.len() < bin.len() => d,
                _ => bin,
            };
        }
    }
    dec.unwrap_or_else(|| format!("{v}B"))
}

fn fmt_decimal(v: u64) -> Option<String> {
    for (name, m) in [("GB", 1_000_000_000u64), ("MB", 1_000_000), ("KB", 1_000)] {
        if v >= m && v % (m / 10) == 0 {
            let whole = v / m;
            let tenth = (v % m) / (m / 10);
            return Some(if tenth == 0 {
                format!("{whole}{name}")
            } else {
                format!("{whole}.{tenth}{name}")
            });
        }
    }
    None
}

/// Bytes per second as GB/s (10^9), the unit the tables print.
pub fn gbps(bytes: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        bytes as f64 / ns as f64
    }
}

/// Nanoseconds, printed with a unit that keeps three significant figures.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("3.8MB").unwrap(), 3_800_000);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("1.2.3K").is_err());
        assert!(parse_size("0.3B").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000T").is_err());
        assert!(parse_size_nonzero("0").is_err());
        assert_eq!(parse_size_list("4K, 1M").unwrap(), vec![4096, 1 << 20]);
        assert!(parse_size_list(",").is_err());
    }

    #[test]
    fn size_round_trip() {
        assert_eq!(fmt_size(800_000_000), "800MB");
        assert_eq!(fmt_size(65536), "64KiB");
        for v in [
            1u64,
            1000,
            1024,
            4096,
            65536,
            3_800_000,
            394_000_000,
            800_000_000,
            1 << 30,
            12345,
        ] {
            assert_eq!(parse_size(&fmt_size(v)).unwrap(), v, "{}", fmt_size(v));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
