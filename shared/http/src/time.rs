//! Times as the API shows them: RFC 3339 in UTC, everywhere (accounts, sessions, keys,
//! archive entries, audit events). The store keeps epoch numbers; only answers are text.

use aws_smithy_types::date_time::{DateTime, Format};

/// Seconds since the Unix epoch, e.g. `2026-11-21T07:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    DateTime::from_secs(secs)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, always with three fractional digits, e.g.
/// `2026-11-21T07:00:00.120Z`: one width for every value, so times sort as text as they do
/// as instants.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = rfc3339(i64::try_from(ms / 1000).unwrap_or(i64::MAX));
    match secs.strip_suffix('Z') {
        Some(whole) => format!("{whole}.{:03}Z", ms % 1000),
        None => secs,
    }
}

/// Serialises epoch milliseconds as [`rfc3339_ms`] (`#[serde(serialize_with)]`).
pub fn serialize_ms<S: serde::Serializer>(ms: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339_ms(*ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339_ms(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
        assert_eq!(rfc3339_ms(1_795_000_000_070), "2026-11-18T11:06:40.070Z");
    }

    #[test]
    fn millisecond_times_sort_as_text_as_they_do_as_instants() {
        // 760 ms printed as ".76Z" would sort after ".768Z".
        let times = [
            1_795_000_000_000,
            1_795_000_000_760,
            1_795_000_000_768,
            1_795_000_001_000,
        ];
        for pair in times.windows(2) {
            assert!(rfc3339_ms(pair[0]) < rfc3339_ms(pair[1]), "{pair:?}");
        }
    }
}
