//! Calendar time of a Unix timestamp, in UTC, without a time-zone database: the `created`
//! of image configs, containerd's lease expiry, the Proxmox backup name. One conversion for
//! the workspace, so every date chasi writes agrees; and back, for the dates chasi reads
//! (a registry's `Retry-After`).

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// The year (proleptic Gregorian).
    pub year: i64,
    /// 1 to 12.
    pub month: i64,
    /// 1 to 31.
    pub day: i64,
    /// 0 to 23.
    pub hour: i64,
    /// 0 to 59.
    pub minute: i64,
    /// 0 to 59.
    pub second: i64,
}

/// The UTC date and time of `epoch` (seconds since 1970-01-01T00:00:00Z).
pub fn utc(epoch: i64) -> UtcTime {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, public domain math).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    UtcTime {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: secs / 3600,
        minute: secs % 3600 / 60,
        second: secs % 60,
    }
}

/// RFC 3339 in UTC: `2023-11-14T22:13:20Z`.
pub fn rfc3339(epoch: i64) -> String {
    let t = utc(epoch);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The Unix timestamp of a UTC date and time; `None` for a field out of its range.
pub fn epoch(t: UtcTime) -> Option<i64> {
    let ok = (1..=12).contains(&t.month)
        && (1..=31).contains(&t.day)
        && (0..24).contains(&t.hour)
        && (0..60).contains(&t.minute)
        && (0..61).contains(&t.second);
    if !ok {
        return None;
    }
    // Days since 1970-01-01 of a civil date (the inverse of `utc`'s algorithm).
    let y = t.year - i64::from(t.month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (t.month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + t.day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    if utc(days * 86_400).day != t.day {
        return None; // 31 April, 30 February
    }
    Some(days * 86_400 + t.hour * 3600 + t.minute * 60 + t.second)
}

/// An HTTP date in its only form a sender may write (RFC 9110 §5.6.7, IMF-fixdate:
/// `Sun, 06 Nov 1994 08:49:37 GMT`), as a Unix timestamp.
pub fn http_date(text: &str) -> Option<i64> {
    let (_weekday, rest) = text.trim().split_once(", ")?;
    let mut parts = rest.split(' ');
    let day = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let year = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|f| f.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next() != Some("GMT") || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    epoch(UtcTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_calendar_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn calendar_dates_go_back_to_timestamps() {
        for e in [
            0,
            1,
            86_399,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            -86_400,
        ] {
            assert_eq!(epoch(utc(e)), Some(e), "{e}");
        }
        let bad = |month, day| UtcTime {
            year: 2023,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        };
        assert_eq!(epoch(bad(2, 29)), None);
        assert_eq!(epoch(bad(4, 31)), None);
        assert_eq!(epoch(bad(13, 1)), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        for bad in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "120",
            "",
        ] {
            assert_eq!(http_date(bad), None, "{bad}");
        }
    }
}
