//! The app's own report of its queue time: `Server-Timing: queue;dur=<ms>` (what the
//! simulator, and Rails middleware such as Judoscale's, send). It is read for the metrics
//! and removed from the client's response: it describes frontdoor's backends, not the page.

use pingora::http::ResponseHeader;
use std::time::Duration;

/// `Server-Timing` (RFC: W3C Server Timing), a name the `http` crate does not define.
const SERVER_TIMING: &str = "server-timing";

/// Removes every `queue` entry from the response's `Server-Timing` fields (dropping a field
/// left empty) and returns the first one's duration.
pub fn take_queue_time(response: &mut ResponseHeader) -> Option<Duration> {
    let fields: Vec<String> = response
        .headers
        .get_all(SERVER_TIMING)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if fields.is_empty() {
        return None;
    }
    let mut queue = None;
    let mut kept = Vec::new();
    for entry in fields.iter().flat_map(|f| f.split(',')) {
        let mut params = entry.split(';').map(str::trim);
        if params
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("queue"))
        {
            let dur = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("dur"))
                .and_then(|(_, v)| v.trim().trim_matches('"').parse::<f64>().ok())
                .filter(|ms| ms.is_finite() && *ms >= 0.0);
            if queue.is_none() {
                // `try_`: a `dur` past Duration's range (`dur=1e40`, found by the
                // `server_timing` fuzz target) panicked the response phase.
                queue = dur.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok());
            }
        } else if !entry.trim().is_empty() {
            kept.push(entry.trim().to_string());
        }
    }
    response.remove_header(SERVER_TIMING);
    if !kept.is_empty() {
        // Re-inserting a field we just read cannot fail.
        let _ = response.insert_header(SERVER_TIMING, kept.join(", "));
    }
    queue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_entry_is_read_and_removed_the_rest_kept() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("server-timing", "db;dur=4, queue;dur=12.5")
            .unwrap();
        r.append_header("server-timing", "view;dur=3;desc=\"render\"")
            .unwrap();
        assert_eq!(take_queue_time(&mut r), Some(Duration::from_micros(12_500)));
        let left: Vec<_> = r.headers.get_all("server-timing").iter().collect();
        assert_eq!(left, ["db;dur=4, view;dur=3;desc=\"render\""]);

        let mut only = ResponseHeader::build(200, None).unwrap();
        only.append_header("server-timing", "queue;dur=7").unwrap();
        assert_eq!(take_queue_time(&mut only), Some(Duration::from_millis(7)));
        assert!(only.headers.get("server-timing").is_none());

        let mut bad = ResponseHeader::build(200, None).unwrap();
        bad.append_header("server-timing", "queue;dur=-1, app")
            .unwrap();
        assert_eq!(take_queue_time(&mut bad), None);
        assert_eq!(bad.headers["server-timing"], "app");
    }

    #[test]
    fn a_duration_past_the_range_of_duration_is_ignored_not_a_panic() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.append_header("server-timing", format!("queue;dur={}", "3".repeat(40)))
            .unwrap();
        assert_eq!(take_queue_time(&mut r), None);
        assert!(r.headers.get("server-timing").is_none());
    }
}
