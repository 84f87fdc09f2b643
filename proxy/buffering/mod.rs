//! Buffering: frontdoor, not the app's workers, waits on slow clients.
//!
//! - [`request`]: a request body is received in full (memory, then a temporary file) before
//!   the request takes an admission slot, and sent to the app at once with a
//!   `Content-Length`; `Expect: 100-continue` is answered by frontdoor.

pub mod request;
