//! Response buffering: the app's answer is read as fast as the app writes it, whatever the
//! client's pace, so the app's worker and the admission slot are free when the app is done
//! rather than when the client is.
//!
//! Pingora reads the upstream in one half of its proxy loop and writes downstream in the
//! other, joined by a channel of four tasks: a slow client soon stops the upstream read. Its
//! `upstream_response_tasks` hook (carried as a patch, `vendor/pingora-proxy`) lets a
//! [`Buffers::relay`] sit on that channel, as a future Pingora joins with its two halves (in
//! the request's task: nothing is spawned per answer). The relay takes every task the moment
//! the upstream half reads it and hands tasks on as fast as the downstream half takes them:
//! what the client can take goes straight through, untouched (time to first byte does not
//! grow, and a page the client takes at once costs no buffering), the rest waits in memory
//! (up to [`MEMORY_PER_RESPONSE`] per answer and `[proxy] response-buffer-memory` for all),
//! then in an unlinked temporary file (up to `response-buffer-file` per answer). With both
//! full, the app is read at the client's pace again, as nginx does past
//! `proxy_max_temp_file_size`. When the app's last byte is in, the relay runs the request's
//! `on_complete` (which frees the slot).
//!
//! The response filters (hints, edge-cache fill, compression) still run as the client takes
//! the body: they see every byte, in order, after the relay.
//!
//! Not read ahead ([`read_ahead`] is false): `101 Switching Protocols`, `text/event-stream`,
//! and answers with `X-Accel-Buffering: no` (nginx's per-response switch). Those are passed on
//! one task at a time, so the client's pace still governs the app's.

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use crate::metrics::Metrics;

/// Of each answer, at most this much waits in memory; the rest goes to its temporary file.
/// Most pages are smaller, and never touch the disk.
pub const MEMORY_PER_RESPONSE: u64 = 1 << 20;

/// Tasks handed to the downstream half ahead of its writes (Pingora's own channel holds 4).
const DOWNSTREAM_TASKS: usize = 4;

/// What relays one answer, to be joined with Pingora's two halves (its `BoxFuture`).
pub type RelayFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// `[proxy] response-buffer-memory` and `response-buffer-file`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Bytes of all answers held in memory at once; past it, answers go to their files.
    pub memory: u64,
    /// Bytes one answer may hold in its temporary file; 0 never writes to disk.
    pub file: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            memory: 64 << 20,
            file: 1 << 30,
        }
    }
}

/// Whether an answer with this head is read ahead of the client: not an upgrade, not an event
/// stream (each event must reach the client as it is written, and the stream may never end),
/// not opted out by the app with `X-Accel-Buffering: no`.
pub fn read_ahead(head: &ResponseHeader) -> bool {
    // Static names: a `&str` name is parsed and validated on every look-up.
    static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
    if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return false;
    }
    // Bytes, not `to_str`: no validation of the whole value for a prefix.
    let field = |name: &HeaderName| head.headers.get(name).map(|v| v.as_bytes());
    let event_stream = field(&CONTENT_TYPE).is_some_and(|ct| {
        let media = ct.split(|b| *b == b';').next().unwrap_or_default();
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
    });
    let opted_out =
        field(&X_ACCEL_BUFFERING).is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"no"));
    !(event_stream || opted_out)
}

/// Something a request lends to its relay, to let go of when the app's answer is complete
/// (the admission slot); the request takes it back if the answer never completes (a retry).
pub struct Lent<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Lent<T> {
    fn clone(&self) -> Self {
        Lent(self.0.clone())
    }
}

impl<T> Lent<T> {
    /// Lends `value`.
    pub fn new(value: T) -> Self {
        Lent(Arc::new(Mutex::new(Some(value))))
    }

    /// The value, unless the other side took it first.
    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The memory every buffered answer shares, the current settings and the metrics; one per
/// process, kept across reloads.
pub struct Buffers {
    in_memory: AtomicU64,
    memory_limit: AtomicU64,
    file_limit: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Buffers {
    /// No answer held yet.
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Self {
        let buffers = Buffers {
            in_memory: AtomicU64::new(0),
            memory_limit: AtomicU64::new(0),
            file_limit: AtomicU64::new(0),
            metrics,
        };
        buffers.retune(settings);
        buffers
    }

    /// Applies reloaded settings to answers that start from now on.
    pub fn retune(&self, settings: Settings) {
        self.memory_limit.store(settings.memory, Ordering::Relaxed);
        self.file_limit.store(settings.file, Ordering::Relaxed);
    }

    /// The settings answers start with now.
    pub fn settings(&self) -> Settings {
        Settings {
            memory: self.memory_limit.load(Ordering::Relaxed),
            file: self.file_limit.load(Ordering::Relaxed),
        }
    }

    /// Bytes of answers held in memory now.
    pub fn in_memory(&self) -> u64 {
        self.in_memory.load(Ordering::Relaxed)
    }

    /// Relays the tasks of one answer from `upstream`: the downstream half reads the receiver
    /// returned, and the future returned does the relaying (Pingora joins it with its two
    /// halves; dropping it drops what it holds). `on_complete` runs once the app's answer is
    /// in whole (not if it failed).
    pub fn relay(
        self: &Arc<Self>,
        upstream: mpsc::Receiver<HttpTask>,
        on_complete: impl FnOnce() + Send + 'static,
    ) -> (mpsc::Receiver<HttpTask>, RelayFuture) {
        let settings = self.settings();
        let (downstream, receiver) = mpsc::channel(DOWNSTREAM_TASKS);
        let relay = Relay {
            upstream,
            downstream,
            held: Holding {
                spool: Spool::new(self.clone(), settings),
                ahead: true,
                on_complete: Some(on_complete),
                full_counted: false,
            },
        };
        (receiver, Box::pin(relay.run()))
    }

    /// Takes `n` bytes of the shared memory if they fit under `limit`.
    fn reserve(&self, n: u64, limit: u64) -> bool {
        let taken = self
            .in_memory
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(n).filter(|total| *total <= limit)
            })
            .is_ok();
        if taken {
            self.metrics.response_buffer_memory(n as i64);
        }
        taken
    }

    /// Takes `n` bytes of the shared memory whatever the limit (one chunk past it).
    fn force(&self, n: u64) {
        self.in_memory.fetch_add(n, Ordering::Relaxed);
        self.metrics.response_buffer_memory(n as i64);
    }

    fn free(&self, n: u64) {
        self.in_memory.fetch_sub(n, Ordering::Relaxed);
        self.metrics.response_buffer_memory(-(n as i64));
    }
}

/// One answer on its way from the upstream half to the downstream half.
struct Relay<F> {
    upstream: mpsc::Receiver<HttpTask>,
    downstream: mpsc::Sender<HttpTask>,
    held: Holding<F>,
}

/// What the relay holds of one answer, and what it knows of it.
struct Holding<F> {
    spool: Spool,
    /// Reading ahead of the client ([`read_ahead`] of the head so far).
    ahead: bool,
    on_complete: Option<F>,
    /// `response_buffer_full_total` counts an answer once.
    full_counted: bool,
}

impl<F: FnOnce()> Relay<F> {
    async fn run(mut self) {
        // Open until the task that ends the answer is in: Pingora's upstream half sends
        // nothing after it.
        let mut upstream_open = true;
        loop {
            if !upstream_open && self.held.spool.is_empty() {
                // Dropping the sender ends the downstream half's reading, as Pingora's would.
                return;
            }
            if upstream_open && self.held.spool.is_empty() {
                // What the upstream half has sent already, without a select: the common case
                // of a page, whose tasks all go straight on.
                match self.upstream.try_recv() {
                    Ok(task) => {
                        upstream_open = !task.is_end();
                        if !self.held.take(task, &self.downstream).await {
                            return;
                        }
                        continue;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        upstream_open = false;
                        continue;
                    }
                }
            }
            let reading = upstream_open && self.held.room();
            let waiting = !self.held.spool.is_empty();
            let step = tokio::select! {
                // Handing on first: a client that keeps up gets each chunk as it arrives.
                biased;
                permit = self.downstream.reserve(), if waiting => match permit {
                    Ok(permit) => Step::HandOn(permit),
                    Err(_) => Step::Gone,
                },
                task = self.upstream.recv(), if reading => match task {
                    Some(task) => Step::Hold(task),
                    None => Step::UpstreamDone,
                },
                () = self.downstream.closed(), if !waiting => Step::Gone,
            };
            match step {
                Step::HandOn(permit) => match self.held.spool.pop().await {
                    Ok(Some(task)) => permit.send(task),
                    Ok(None) => {}
                    Err(e) => {
                        let failed = pingora::Error::because(
                            pingora::ErrorType::ReadError,
                            "reading the response buffer file",
                            e,
                        );
                        permit.send(HttpTask::Failed(failed.into_up()));
                        return;
                    }
                },
                Step::Hold(task) => {
                    upstream_open = !task.is_end();
                    if !self.held.take(task, &self.downstream).await {
                        return;
                    }
                }
                Step::UpstreamDone => upstream_open = false,
                // The downstream half is gone (the client left, or the answer ended).
                Step::Gone => return,
            }
        }
    }
}

impl<F: FnOnce()> Holding<F> {
    /// Takes a task read from the upstream: straight on to the downstream half if nothing
    /// waits before it and the half has room (a client that keeps up, the whole of a small
    /// page), else into the spool. False when the downstream half is gone.
    async fn take(&mut self, task: HttpTask, downstream: &mpsc::Sender<HttpTask>) -> bool {
        self.note(&task);
        let task = if self.spool.is_empty() {
            match downstream.try_send(task) {
                Ok(()) => return true,
                Err(TrySendError::Full(task)) => task,
                Err(TrySendError::Closed(_)) => return false,
            }
        } else {
            task
        };
        self.spool.push(task, self.ahead).await;
        true
    }

    /// Whether another task may be read from the upstream now.
    fn room(&mut self) -> bool {
        if !self.ahead {
            return self.spool.is_empty();
        }
        let room = self.spool.room();
        if !room && !self.full_counted {
            self.full_counted = true;
            self.spool.buffers.metrics.response_buffer_full();
        }
        room
    }

    /// Takes note of a task read from the upstream, before it is handed on or held: the head
    /// says whether to read ahead; the end of a complete answer runs `on_complete`.
    fn note(&mut self, task: &HttpTask) {
        if let HttpTask::Header(head, _) = task {
            let informational = head.status.is_informational()
                && head.status != http::StatusCode::SWITCHING_PROTOCOLS;
            if !informational && !read_ahead(head) {
                self.ahead = false;
            }
        }
        if task.is_end() && !matches!(task, HttpTask::Failed(_)) {
            if let Some(on_complete) = self.on_complete.take() {
                on_complete();
            }
        }
    }
}

/// What one turn of the relay does.
enum Step<'a> {
    HandOn(mpsc::Permit<'a, HttpTask>),
    Hold(HttpTask),
    UpstreamDone,
    Gone,
}

/// A task waiting for the downstream half: in memory, or a body chunk in the file.
enum Held {
    Task(HttpTask),
    OnDisk { len: usize, end: bool },
}

/// The tasks of one answer not yet handed on, in order.
struct Spool {
    buffers: Arc<Buffers>,
    settings: Settings,
    queue: VecDeque<Held>,
    /// Body bytes of this answer in memory.
    memory: u64,
    file: Option<SpillFile>,
    /// The file failed once: the rest of the answer stays in memory.
    file_failed: bool,
}

/// An unlinked temporary file read in the order it was written; offsets go back to 0 each
/// time the reader catches up, so its size stays within `response-buffer-file`.
struct SpillFile {
    file: Arc<std::fs::File>,
    written: u64,
    read: u64,
}

impl Spool {
    fn new(buffers: Arc<Buffers>, settings: Settings) -> Self {
        Spool {
            buffers,
            settings,
            queue: VecDeque::new(),
            memory: 0,
            file: None,
            file_failed: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the next chunk of this answer has somewhere to wait (one always has, so
    /// that an answer moves even when other answers hold all the memory).
    fn room(&self) -> bool {
        let memory =
            self.memory < MEMORY_PER_RESPONSE && self.buffers.in_memory() < self.settings.memory;
        self.queue.is_empty() || memory || self.file_room(1)
    }

    fn file_room(&self, n: u64) -> bool {
        let written = self.file.as_ref().map_or(0, |f| f.written);
        !self.file_failed && written + n <= self.settings.file
    }

    /// Holds `task`: a body chunk in memory if it fits, else in the file if it fits (when
    /// reading `ahead`), else in memory anyway (the caller stops reading until there is room).
    async fn push(&mut self, task: HttpTask, ahead: bool) {
        let (data, end) = match task {
            HttpTask::Body(Some(data), end) if !data.is_empty() => (data, end),
            other => return self.queue.push_back(Held::Task(other)),
        };
        let len = data.len() as u64;
        let fits = self.memory + len <= MEMORY_PER_RESPONSE
            && self.buffers.reserve(len, self.settings.memory);
        if !fits && ahead && self.file_room(len) {
            match self.spill(data.clone()).await {
                Ok(()) => {
                    self.queue.push_back(Held::OnDisk {
                        len: data.len(),
                        end,
                    });
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        "response buffer file failed, keeping the answer in memory: {e}"
                    );
                    self.file_failed = true;
                }
            }
        }
        if !fits {
            self.buffers.force(len);
        }
        self.memory += len;
        self.queue
            .push_back(Held::Task(HttpTask::Body(Some(data), end)));
    }

    /// Appends `data` to the file (made on the first spill).
    async fn spill(&mut self, data: Bytes) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = blocking(tempfile::tempfile).await?;
                self.buffers.metrics.response_buffer_spilled();
                self.file.insert(SpillFile {
                    file: Arc::new(file),
                    written: 0,
                    read: 0,
                })
            }
        };
        let (handle, at, len) = (file.file.clone(), file.written, data.len() as u64);
        blocking(move || handle.write_all_at(&data, at)).await?;
        file.written += len;
        self.buffers.metrics.response_buffer_file(len as i64);
        Ok(())
    }

    /// The next task, read back from the file if it waited there.
    async fn pop(&mut self) -> io::Result<Option<HttpTask>> {
        let Some(held) = self.queue.pop_front() else {
            return Ok(None);
        };
        let (len, end) = match held {
            Held::Task(task) => {
                if let HttpTask::Body(Some(data), _) = &task {
                    let len = data.len() as u64;
                    self.memory -= len;
                    self.buffers.free(len);
                }
                return Ok(Some(task));
            }
            Held::OnDisk { len, end } => (len, end),
        };
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("a chunk waits in a file that is gone"))?;
        let (handle, at) = (file.file.clone(), file.read);
        let data = blocking(move || {
            let mut buf = vec![0u8; len];
            handle.read_exact_at(&mut buf, at).map(|()| buf)
        })
        .await?;
        file.read += len as u64;
        self.buffers.metrics.response_buffer_file(-(len as i64));
        if file.read == file.written {
            file.read = 0;
            file.written = 0;
        }
        Ok(Some(HttpTask::Body(Some(Bytes::from(data)), end)))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.buffers.free(self.memory);
        if let Some(file) = &self.file {
            let unread = file.written - file.read;
            self.buffers.metrics.response_buffer_file(-(unread as i64));
        }
    }
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests;
