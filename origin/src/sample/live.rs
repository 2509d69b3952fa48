//! A live HLS stream derived purely from wall-clock time, so any number of origin
//! instances sharing an epoch serve identical playlists and segments without coordination.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::ts::ts_segment;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A live HLS stream whose segments roll with wall-clock time: segment `n` covers
/// `[epoch + n * segment_duration, epoch + (n + 1) * segment_duration)`.
///
/// The newest listed segment is the last *complete* one, so a listed segment never changes.
#[derive(Debug, Clone)]
pub struct LiveStream {
    segment_duration: Duration,
    window: usize,
    segment_bytes: usize,
    epoch: SystemTime,
}

impl LiveStream {
    /// `segment_duration` is raised to at least 1 ms and `window` to at least 1 segment.
    pub fn new(
        segment_duration: Duration,
        window: usize,
        segment_bytes: usize,
        epoch: SystemTime,
    ) -> Self {
        Self {
            segment_duration: segment_duration.max(Duration::from_millis(1)),
            window: window.max(1),
            segment_bytes,
            epoch,
        }
    }

    /// Media playlist at `now`: the last `window` complete segments (fewer at the very start,
    /// none before the first completes), with no EXT-X-ENDLIST.
    pub fn playlist(&self, now: SystemTime) -> String {
        let done = self.completed(now);
        let first = done.saturating_sub(self.window as u64);
        let d = self.segment_duration;
        let target = (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
        let mut p = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
        if done > first {
            p.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:{}\n",
                rfc3339_millis(self.segment_start(first))
            ));
            for seq in first..done {
                p.push_str(&format!("#EXTINF:{:.3},\nseg_{seq}.ts\n", d.as_secs_f64()));
            }
        }
        p
    }

    /// The bytes of segment `seq` if it is complete at `now` and within `window * 2` segments
    /// of the newest; the slack past the window serves players still working through an
    /// older playlist.
    pub fn segment(&self, seq: u64, now: SystemTime) -> Option<Bytes> {
        let newest = self.completed(now).checked_sub(1)?;
        let keep = (self.window as u64).saturating_mul(2);
        if seq > newest || newest - seq >= keep {
            return None;
        }
        Some(Bytes::from(ts_segment(
            seq,
            self.segment_duration.as_secs_f64(),
            self.segment_bytes,
        )))
    }

    /// Whole seconds the playlist at `now` stays current (until the next segment completes),
    /// for Cache-Control max-age. Rounded down so caches never outlive it by more than the
    /// 1-second floor.
    pub fn playlist_max_age(&self, now: SystemTime) -> u64 {
        let d = self.segment_duration.as_nanos();
        let remaining = match now.duration_since(self.epoch) {
            Ok(elapsed) => d - elapsed.as_nanos() % d,
            Err(early) => early.duration().as_nanos() + d,
        };
        saturate(remaining / NANOS_PER_SEC).max(1)
    }

    /// How many segments are complete at `now`: segment `n` completes at `epoch + (n + 1) * d`.
    fn completed(&self, now: SystemTime) -> u64 {
        now.duration_since(self.epoch).map_or(0, |e| {
            saturate(e.as_nanos() / self.segment_duration.as_nanos())
        })
    }

    fn segment_start(&self, seq: u64) -> SystemTime {
        let nanos = self
            .segment_duration
            .as_nanos()
            .saturating_mul(u128::from(seq));
        let offset = Duration::new(
            saturate(nanos / NANOS_PER_SEC),
            (nanos % NANOS_PER_SEC) as u32,
        );
        self.epoch.checked_add(offset).unwrap_or(self.epoch)
    }
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2023-11-14T22:13:20.123Z`.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let ms: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    let ms_of_day = ms.rem_euclid(86_400_000);
    let mut days = ms.div_euclid(86_400_000);
    // The Gregorian calendar repeats every 400 years (146097 days), which bounds the loop below.
    let mut year = 1970 + 400 * days.div_euclid(146_097);
    days = days.rem_euclid(146_097);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    while days >= 365 + i64::from(leap(year)) {
        days -= 365 + i64::from(leap(year));
        year += 1;
    }
    let months = [
        31,
        28 + i64::from(leap(year)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= months[month] {
        days -= months[month];
        month += 1;
    }
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        month + 1,
        days + 1,
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn uris(playlist: &str) -> Vec<&str> {
        playlist.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn stream() -> (LiveStream, SystemTime) {
        let epoch = UNIX_EPOCH + secs(1000.0);
        (LiveStream::new(secs(4.0), 3, 8 * 1024, epoch), epoch)
    }

    #[test]
    fn playlist_rolls_a_window_of_complete_segments() {
        let (live, epoch) = stream();
        let p = live.playlist(epoch + secs(25.0));
        assert!(p.starts_with(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:3\n"
        ));
        assert_eq!(uris(&p), ["seg_3.ts", "seg_4.ts", "seg_5.ts"]);
        assert_eq!(p.matches("#EXTINF:4.000,\n").count(), 3);
        // Segment 3 starts 12 s after the epoch, i.e. 1012 s after 1970.
        assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:52.000Z\n"));
        assert!(!p.contains("#EXT-X-ENDLIST"));
        // A segment is listed the instant it completes.
        assert_eq!(
            uris(&live.playlist(epoch + secs(24.0))),
            ["seg_3.ts", "seg_4.ts", "seg_5.ts"]
        );
        assert_eq!(
            uris(&live.playlist(epoch + secs(23.999))),
            ["seg_2.ts", "seg_3.ts", "seg_4.ts"]
        );
    }

    #[test]
    fn playlist_at_the_start_lists_what_exists() {
        let (live, epoch) = stream();
        for now in [epoch + secs(2.0), epoch, epoch - secs(10.0)] {
            let p = live.playlist(now);
            assert!(uris(&p).is_empty(), "{p}");
            assert!(!p.contains("PROGRAM-DATE-TIME"));
            assert!(p.contains("#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"));
        }
        let p = live.playlist(epoch + secs(9.0));
        assert_eq!(uris(&p), ["seg_0.ts", "seg_1.ts"]);
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:40.000Z\n"));
    }

    #[test]
    fn target_duration_rounds_up() {
        let live = LiveStream::new(secs(2.5), 5, 4096, UNIX_EPOCH);
        let p = live.playlist(UNIX_EPOCH + secs(100.0));
        assert!(p.contains("#EXT-X-TARGETDURATION:3\n"));
        assert!(p.contains("#EXTINF:2.500,\nseg_39.ts\n"));
    }

    #[test]
    fn segments_exist_only_while_complete_and_unexpired() {
        let (live, epoch) = stream();
        let now = epoch + secs(25.0); // newest complete: 5
        assert_eq!(live.segment(6, now), None, "still being produced");
        let five = live.segment(5, now).expect("newest");
        assert_eq!(five, ts_segment(5, 4.0, 8 * 1024));
        assert_eq!(
            live.segment(5, now + secs(3.0)),
            Some(five),
            "stable once complete"
        );
        assert!(
            live.segment(0, now).is_some(),
            "5 behind the newest is within 2 windows"
        );
        let later = epoch + secs(29.0); // newest complete: 6
        assert_eq!(live.segment(0, later), None, "expired");
        assert!(live.segment(1, later).is_some());
        assert_eq!(
            live.segment(0, epoch + secs(3.0)),
            None,
            "nothing complete yet"
        );
        assert_ne!(live.segment(1, later), live.segment(2, later));
    }

    #[test]
    fn max_age_runs_until_the_next_segment() {
        let (live, epoch) = stream();
        assert_eq!(live.playlist_max_age(epoch + secs(25.0)), 3);
        assert_eq!(live.playlist_max_age(epoch + secs(25.5)), 2);
        assert_eq!(live.playlist_max_age(epoch + secs(27.9)), 1);
        assert_eq!(live.playlist_max_age(epoch + secs(28.0)), 4);
        assert_eq!(live.playlist_max_age(epoch - secs(10.0)), 14);
    }

    #[test]
    fn degenerate_parameters_are_clamped() {
        let live = LiveStream::new(Duration::ZERO, 0, 0, UNIX_EPOCH);
        let p = live.playlist(UNIX_EPOCH + secs(1.0));
        assert_eq!(uris(&p).len(), 1);
        assert!(p.contains("#EXT-X-TARGETDURATION:1\n"));
        assert_eq!(live.playlist_max_age(UNIX_EPOCH + secs(1.0)), 1);
    }

    #[test]
    fn rfc3339_known_timestamps() {
        let at = |ms: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(253_402_300_799_000), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - secs(1.0)),
            "1969-12-31T23:59:59.000Z"
        );
    }
}
