//! RFC 3339 timestamps in UTC to the second, for problem documents. By hand
//! (the civil-from-days algorithm): the `humantime` crate cost the module
//! more than this; a unit test checks it against that crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-30T23:59:59Z`; times before 1970 print as the epoch.
pub fn rfc3339_seconds(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn agrees_with_humantime() {
        let mut seconds: u64 = 0;
        // Every day boundary and leap day of 1970–2400, and odd seconds between.
        while seconds < 13_569_465_600 {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(
                rfc3339_seconds(time),
                humantime::format_rfc3339_seconds(time).to_string()
            );
            seconds += 86_399;
        }
        assert_eq!(
            rfc3339_seconds(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
    }
}
