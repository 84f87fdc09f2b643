//! Buffering between clients and the app, so that the proxy, not an app worker, waits on a
//! slow client (what `proxy_request_buffering` and `proxy_buffering` do for nginx).
//!
//! - [`request`]: a request body is received in full (memory, then a temporary file) before
//!   the request takes an admission slot, and sent to the app at once with a
//!   `Content-Length`; `Expect: 100-continue` is answered by frontdoor.
//! - [`response`]: the app's answer is read as fast as the app writes it and handed to the
//!   client at the client's pace; the admission slot is free once the app is done.

pub mod request;
pub mod response;
