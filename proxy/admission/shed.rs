//! The answer to a shed request: `503 Service Unavailable` with a jittered `Retry-After`
//! (so refused clients do not come back in step), a short HTML page for browsers and JSON
//! for everything else. It never reaches the app.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use rand::Rng;
use std::time::Duration;

use super::Shed;

/// Seconds to send in `Retry-After`: uniformly between `base` and twice `base`, at least 1.
pub fn retry_after_secs(base: Duration) -> u64 {
    let base = base.as_secs().max(1);
    rand::thread_rng().gen_range(base..=base * 2)
}

/// Writes the 503 for `why`.
pub async fn respond_shed(
    session: &mut Session,
    why: Shed,
    retry_after: Duration,
    request_id: &str,
) -> pingora::Result<()> {
    let wants_html = session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let seconds = retry_after_secs(retry_after);
    let (content_type, body) = if wants_html {
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Server too busy</title>\
                 <meta http-equiv=\"refresh\" content=\"{seconds}\"></head><body>\
                 <h1>Server too busy</h1><p>Too many requests are waiting right now. \
                 This page will try again in {seconds} seconds.</p></body></html>\n"
            ),
        )
    } else {
        (
            "application/json",
            format!("{{\"error\":\"server too busy\",\"reason\":\"{why}\",\"retry_after\":{seconds}}}\n"),
        )
    };
    let mut head = ResponseHeader::build(503, Some(6))?;
    head.insert_header(http::header::CONTENT_TYPE, content_type)?;
    head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    head.insert_header(http::header::RETRY_AFTER, seconds.to_string())?;
    head.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    head.insert_header(crate::headers::X_REQUEST_ID, request_id)?;
    session.write_response_header(Box::new(head), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_jittered_between_one_and_two_times() {
        let seen: std::collections::HashSet<u64> = (0..200)
            .map(|_| retry_after_secs(Duration::from_secs(2)))
            .collect();
        assert!(seen.iter().all(|s| (2..=4).contains(s)), "{seen:?}");
        assert!(seen.len() > 1, "jittered");
        assert!((1..=2).contains(&retry_after_secs(Duration::ZERO)));
    }
}
