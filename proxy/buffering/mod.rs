//! Buffering between clients and the app, so that the proxy, not an app worker, waits on a
//! slow client (what `proxy_buffering` does for nginx).
//!
//! - [`response`]: the app's answer is read as fast as the app writes it and handed to the
//!   client at the client's pace; the admission slot is free once the app is done.

pub mod response;
