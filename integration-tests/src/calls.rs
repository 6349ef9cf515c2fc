//! Reading the emulator's call log (`/_emulator/calls`): timestamps, request parameters and tags.

use anyhow::{anyhow, Result};
use serde_json::Value;

/// Milliseconds since the epoch of an emulator timestamp `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn parse_ms(t: &str) -> Result<i64> {
    let bad = || anyhow!("unexpected timestamp {t:?}");
    let num = |a: usize, b: usize| -> Result<i64> {
        t.get(a..b)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    if t.len() != 24 || !t.ends_with('Z') {
        return Err(bad());
    }
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((((days * 24 + hh) * 60 + mm) * 60 + ss) * 1000 + ms)
}

/// A call's request parameter `key` (empty if absent).
pub fn param<'a>(c: &'a Value, key: &str) -> &'a str {
    c["params"][key].as_str().unwrap_or_default()
}

/// The value of tag `key` in a call's `TagSpecification.N.Tag.M.Key/Value` params.
pub fn tag_param<'a>(c: &'a Value, key: &str) -> Option<&'a str> {
    let params = c["params"].as_object()?;
    params.iter().find_map(|(k, v)| {
        let stem = k.strip_suffix(".Key")?;
        if v.as_str() != Some(key) {
            return None;
        }
        params.get(&format!("{stem}.Value"))?.as_str()
    })
}

/// The median of the benchmarks' runs (0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
