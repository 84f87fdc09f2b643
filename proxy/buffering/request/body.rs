//! A request body as received: pieces in memory within the bounds, else an unnamed temporary
//! file; read back by Pingora's proxy loop as a [`BodyReplay`].

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::http::server::BodyReplay;
use pingora::{Error, ErrorType, Result};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{to_i64, RequestBuffers, Settings};

/// Bytes read back from a spilled body at a time (Pingora's own body buffer size).
const READ_PIECE: usize = 64 * 1024;

/// Pieces read ahead of the proxy loop from a spilled body.
const READ_AHEAD: usize = 2;

/// A request body received in full.
pub struct BufferedBody {
    len: u64,
    store: Store,
}

enum Store {
    Memory {
        pieces: VecDeque<Bytes>,
        held: MemoryHeld,
    },
    Disk {
        file: tokio::fs::File,
        held: DiskHeld,
    },
}

impl BufferedBody {
    /// An empty body counted in `buffers`.
    pub(super) fn new(buffers: Arc<RequestBuffers>) -> Self {
        BufferedBody {
            len: 0,
            store: Store::Memory {
                pieces: VecDeque::new(),
                held: MemoryHeld { buffers, bytes: 0 },
            },
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `memory` or `disk` (the `storage` label of the metrics).
    pub fn storage(&self) -> &'static str {
        match self.store {
            Store::Memory { .. } => "memory",
            Store::Disk { .. } => "disk",
        }
    }

    /// Appends `data`: to memory while this body and all bodies together stay within the
    /// bounds, else (from then on) to a temporary file.
    pub(super) async fn push(&mut self, data: Bytes, settings: &Settings) -> io::Result<()> {
        let n = data.len() as u64;
        let len = self.len + n;
        if let Store::Memory { pieces, held } = &mut self.store {
            if len <= settings.memory_per_body && held.grow(n, settings.memory_total) {
                pieces.push_back(data);
                self.len = len;
                return Ok(());
            }
            let (file, disk) = spill(pieces, held, &settings.dir).await?;
            self.store = Store::Disk { file, held: disk };
        }
        if let Store::Disk { file, held } = &mut self.store {
            file.write_all(&data).await?;
            held.grow(n);
        }
        self.len = len;
        Ok(())
    }

    /// Makes a spilled body ready to be read back from its start.
    pub(super) async fn finish(&mut self) -> io::Result<()> {
        if let Store::Disk { file, .. } = &mut self.store {
            file.flush().await?;
            file.seek(io::SeekFrom::Start(0)).await?;
        }
        Ok(())
    }

    /// The body as Pingora reads it back (after [`Self::finish`]).
    pub(super) fn into_replay(self) -> Box<dyn BodyReplay> {
        match self.store {
            Store::Memory { pieces, held } => Box::new(MemoryReplay { pieces, held }),
            Store::Disk { file, held } => Box::new(DiskReplay {
                source: Some((file, held)),
                pieces: None,
                left: self.len,
            }),
        }
    }
}

/// Moves the pieces in memory to a new unnamed temporary file in `dir` and gives their
/// memory back.
async fn spill(
    pieces: &mut VecDeque<Bytes>,
    held: &mut MemoryHeld,
    dir: &std::path::Path,
) -> io::Result<(tokio::fs::File, DiskHeld)> {
    let dir = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
        .await
        .map_err(io::Error::other)??;
    let mut file = tokio::fs::File::from_std(file);
    let mut disk = DiskHeld {
        buffers: held.buffers.clone(),
        bytes: 0,
    };
    for piece in pieces.drain(..) {
        file.write_all(&piece).await?;
        disk.grow(piece.len() as u64);
    }
    held.shrink(held.bytes);
    Ok((file, disk))
}

/// Memory a body holds, given back when dropped.
struct MemoryHeld {
    buffers: Arc<RequestBuffers>,
    bytes: u64,
}

impl MemoryHeld {
    /// Takes `n` more bytes if all bodies stay within `total`.
    fn grow(&mut self, n: u64, total: u64) -> bool {
        let taken = self.buffers.take_memory(n, total);
        if taken {
            self.bytes += n;
        }
        taken
    }

    fn shrink(&mut self, n: u64) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        self.buffers.give_memory(n);
    }
}

impl Drop for MemoryHeld {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

/// Bytes a body holds in its temporary file, counted until the file is closed.
struct DiskHeld {
    buffers: Arc<RequestBuffers>,
    bytes: u64,
}

impl DiskHeld {
    fn grow(&mut self, n: u64) {
        self.bytes += n;
        self.buffers.metrics.request_buffer_disk(to_i64(n));
    }
}

impl Drop for DiskHeld {
    fn drop(&mut self) {
        self.buffers
            .metrics
            .request_buffer_disk(-to_i64(self.bytes));
    }
}

/// A body in memory, given to Pingora piece by piece; each piece's memory is given back as
/// it goes.
struct MemoryReplay {
    pieces: VecDeque<Bytes>,
    held: MemoryHeld,
}

#[async_trait]
impl BodyReplay for MemoryReplay {
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        // Nothing awaits, so it is cancel-safe.
        let piece = self.pieces.pop_front();
        if let Some(piece) = &piece {
            self.held.shrink(piece.len() as u64);
        }
        Ok(piece)
    }

    fn is_done(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// A spilled body, read by a task of its own into a short channel (so a read cancelled by
/// the proxy loop loses nothing), started on the first piece asked for: a request waiting for
/// a slot reads nothing.
struct DiskReplay {
    source: Option<(tokio::fs::File, DiskHeld)>,
    pieces: Option<mpsc::Receiver<io::Result<Bytes>>>,
    left: u64,
}

#[async_trait]
impl BodyReplay for DiskReplay {
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        if let Some((file, held)) = self.source.take() {
            let (tx, rx) = mpsc::channel(READ_AHEAD);
            tokio::spawn(read_back(file, held, tx));
            self.pieces = Some(rx);
        }
        let Some(pieces) = self.pieces.as_mut() else {
            return Ok(None);
        };
        match pieces.recv().await {
            Some(Ok(piece)) => {
                self.left = self.left.saturating_sub(piece.len() as u64);
                Ok(Some(piece))
            }
            Some(Err(e)) => Err(Error::because(
                ErrorType::FileReadError,
                "reading back a buffered request body",
                e,
            )),
            None if self.left > 0 => Error::e_explain(
                ErrorType::FileReadError,
                "a buffered request body ended early",
            ),
            None => Ok(None),
        }
    }

    fn is_done(&self) -> bool {
        self.left == 0
    }
}

/// Sends the file's pieces until its end, a read error, or the replay is dropped; the file
/// is closed (and gone) when this returns.
async fn read_back(
    mut file: tokio::fs::File,
    _held: DiskHeld,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    loop {
        let mut piece = vec![0; READ_PIECE];
        let sent = match file.read(&mut piece).await {
            Ok(0) => return,
            Ok(n) => {
                piece.truncate(n);
                tx.send(Ok(Bytes::from(piece))).await
            }
            Err(e) => tx.send(Err(e)).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn settings(per_body: u64, total: u64, dir: &std::path::Path) -> Settings {
        Settings {
            memory_per_body: per_body,
            memory_total: total,
            dir: dir.to_path_buf(),
        }
    }

    async fn read_all(mut replay: Box<dyn BodyReplay>) -> Vec<u8> {
        let mut out = Vec::new();
        while !replay.is_done() {
            let piece = replay.next_piece().await.unwrap().expect("a piece");
            out.extend_from_slice(&piece);
        }
        assert!(replay.next_piece().await.unwrap().is_none());
        out
    }

    fn data(n: usize, seed: u8) -> Bytes {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<_>>()
            .into()
    }

    #[tokio::test]
    async fn a_small_body_stays_in_memory_and_its_memory_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let buffers = Arc::new(RequestBuffers::new(Arc::new(Metrics::new().unwrap())));
        let mut body = BufferedBody::new(buffers.clone());
        let s = settings(1000, 10_000, dir.path());
        body.push(data(400, 1), &s).await.unwrap();
        body.push(data(500, 2), &s).await.unwrap();
        body.finish().await.unwrap();
        assert_eq!((body.storage(), body.len()), ("memory", 900));
        assert_eq!(buffers.memory_held(), 900);
        let out = read_all(body.into_replay()).await;
        assert_eq!(out, [data(400, 1), data(500, 2)].concat());
        assert_eq!(buffers.memory_held(), 0);
    }

    #[tokio::test]
    async fn a_body_over_its_bound_spills_to_disk_intact() {
        let dir = tempfile::tempdir().unwrap();
        let buffers = Arc::new(RequestBuffers::new(Arc::new(Metrics::new().unwrap())));
        let mut body = BufferedBody::new(buffers.clone());
        let s = settings(100_000, 10_000_000, dir.path());
        let pieces: Vec<Bytes> = (0..30).map(|i| data(7_000 + i, i as u8)).collect();
        for piece in &pieces {
            body.push(piece.clone(), &s).await.unwrap();
        }
        body.finish().await.unwrap();
        assert_eq!(body.storage(), "disk");
        assert_eq!(buffers.memory_held(), 0, "spilling gave the memory back");
        assert_eq!(read_all(body.into_replay()).await, pieces.concat());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the temporary file has no name"
        );
    }

    #[tokio::test]
    async fn bodies_spill_when_all_together_reach_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let buffers = Arc::new(RequestBuffers::new(Arc::new(Metrics::new().unwrap())));
        let s = settings(1000, 1500, dir.path());
        let mut first = BufferedBody::new(buffers.clone());
        first.push(data(1000, 1), &s).await.unwrap();
        let mut second = BufferedBody::new(buffers.clone());
        second.push(data(600, 2), &s).await.unwrap();
        second.finish().await.unwrap();
        assert_eq!((first.storage(), second.storage()), ("memory", "disk"));
        assert_eq!(buffers.memory_held(), 1000);
        assert_eq!(read_all(second.into_replay()).await, data(600, 2));
        drop(first);
        assert_eq!(buffers.memory_held(), 0);
    }
}
