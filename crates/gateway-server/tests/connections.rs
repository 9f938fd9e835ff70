//! The accept loop against real sockets: slow headers, idle connections, stalled
//! bodies, the connection cap and shutdown.
//!
//! These run on the real clock with short limits (hundreds of milliseconds); each
//! assertion waits for the server to act (an answer or end of stream), never for a sleep.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_server::{ConnectionLimits, Server, read_body};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// Real time: each bound leaves a loaded machine room between what should happen at
// once and what should happen only at the timeout.
const HEADER: Duration = Duration::from_millis(600);
const BODY: Duration = Duration::from_millis(600);
const IDLE: Duration = Duration::from_millis(3_000);

fn limits(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: HEADER,
        body_read_timeout: BODY,
        idle_timeout: IDLE,
        max_connections,
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = match read_body(req.into_body(), 1024, BODY).await {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = status;
    Ok(response)
}

async fn start(max_connections: usize) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::serve(
        listener,
        limits(max_connections),
        hyper::service::service_fn(answer),
    )
    .unwrap()
}

/// Reads until the server closes the stream (bounded by `limit`); returns what it sent.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut got))
        .await
        .expect("the server closed the connection in time")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off() {
    let server = start(16).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    // A byte every 50 ms keeps the connection busy but never finishes the headers.
    for byte in b"GET / HTTP/1.1\r\nx-slow: ".iter().cycle() {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let read = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break;
        }
        assert!(
            started.elapsed() < IDLE / 2,
            "the slow headers were not cut off"
        );
    }
    assert!(
        started.elapsed() >= HEADER,
        "cut off before the header timeout"
    );
}

/// Half a request head, then silence: the header timeout applies from its first byte,
/// not the idle timeout, on every connection (nine, so a watchdog that misses the byte
/// now and then cannot pass by luck). An HTTP/1.1 request whose method is `PRI`, and an
/// HTTP/2 preface that stops short, are half heads too.
#[tokio::test]
async fn a_head_that_stops_halfway_is_cut_off_at_the_header_timeout() {
    let server = start(16).await;
    let started = Instant::now();
    let mut closed = Vec::new();
    let heads: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nx-half: ",
        b"PRI /x HTTP/1.1\r\nx-half: ",
        b"PRI * HTTP/2.0\r\n",
    ];
    for head in heads.iter().cycle().take(9) {
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        stream.write_all(head).await.unwrap();
        closed.push(tokio::spawn(async move {
            read_to_close(&mut stream, IDLE * 4).await;
            Instant::now()
        }));
    }
    for closed in closed {
        let at = closed.await.unwrap().duration_since(started);
        assert!(
            at < IDLE,
            "closed after {at:?}: the idle timeout, not the header one"
        );
        assert!(
            at + Duration::from_millis(50) >= HEADER,
            "closed after {at:?}"
        );
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = start(16).await;
    // One that never sends anything, and one that goes quiet after a request.
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut kept_alive = TcpStream::connect(server.local_addr()).await.unwrap();
    kept_alive.write_all(GET).await.unwrap();
    let mut buf = [0u8; 256];
    let n = kept_alive.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    read_to_close(&mut silent, IDLE * 4).await;
    read_to_close(&mut kept_alive, IDLE * 4).await;
    assert!(started.elapsed() + Duration::from_millis(100) >= IDLE);
    assert_eq!(server.open_connections(), 0);
}

#[tokio::test]
async fn a_stalled_body_is_answered_408() {
    let server = start(16).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream, IDLE).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn over_the_cap_is_refused_at_once_while_established_callers_are_served() {
    let server = start(3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        // A request proves the connection holds a slot before the next one comes.
        stream.write_all(GET).await.unwrap();
        let mut buf = [0u8; 256];
        assert!(stream.read(&mut buf).await.unwrap() > 0);
        open.push(stream);
    }
    let mut extra = TcpStream::connect(server.local_addr()).await.unwrap();
    let started = Instant::now();
    let refused = read_to_close(&mut extra, HEADER).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("x-request-id: "), "{refused}");
    assert!(started.elapsed() < HEADER, "refused quickly");
    // The body is whole, and a caller of either door finds its error shape in it.
    let (head, body) = refused.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{refused}"
    );
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["code"], "router.too.many.connections");
    assert_eq!(body["status"], 503);
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert_eq!(body["error"]["type"], "server_error");
    assert!(body["error"]["message"].is_string());

    // An established caller still gets answers.
    open[0].write_all(GET).await.unwrap();
    let mut buf = [0u8; 256];
    let n = open[0].read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(server.open_connections(), 3);
}

#[tokio::test]
async fn stopping_finishes_requests_in_flight_and_closes_idle_connections() {
    let server = start(16).await;
    let mut idle = TcpStream::connect(server.local_addr()).await.unwrap();
    // A request whose body is still arriving when the stop comes.
    let mut busy = TcpStream::connect(server.local_addr()).await.unwrap();
    busy.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nab")
        .await
        .unwrap();
    // The idle connection proves the server is up (a byte would start its header clock).
    idle.write_all(GET).await.unwrap();
    let mut buf = [0u8; 256];
    assert!(idle.read(&mut buf).await.unwrap() > 0);

    server.stop_accepting();
    busy.write_all(b"cd").await.unwrap();
    let answer = read_to_close(&mut busy, IDLE).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request in flight is answered: {answer}"
    );
    read_to_close(&mut idle, IDLE).await;
    tokio::time::timeout(IDLE, server.drained())
        .await
        .expect("drained");
    assert!(
        TcpStream::connect(server.local_addr()).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn close_all_ends_connections_mid_request() {
    let server = start(16).await;
    let mut stuck = TcpStream::connect(server.local_addr()).await.unwrap();
    stuck
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nab")
        .await
        .unwrap();
    // Wait until the server holds the connection.
    while server.open_connections() == 0 {
        tokio::task::yield_now().await;
    }
    server.close_all();
    tokio::time::timeout(BODY, server.drained())
        .await
        .expect("closed at once");
    let rest = read_to_close(&mut stuck, BODY).await;
    assert!(rest.is_empty(), "no answer, just closed: {rest}");
}

/// A zero timeout would close every connection at its first byte, and make each
/// connection's watchdog spin while a request is in flight: refused, by name.
#[tokio::test]
async fn a_zero_timeout_is_refused() {
    let zero = |name: &str| {
        let mut limits = limits(16);
        match name {
            "header_read_timeout" => limits.header_read_timeout = Duration::ZERO,
            "body_read_timeout" => limits.body_read_timeout = Duration::ZERO,
            _ => limits.idle_timeout = Duration::ZERO,
        }
        limits
    };
    for name in ["header_read_timeout", "body_read_timeout", "idle_timeout"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let service = hyper::service::service_fn(answer);
        let err = Server::serve(listener, zero(name), service).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(name), "{err}");
    }
}

/// Limits beyond any clock mean "never", not "now": the accept loop neither panics on a
/// connection cap above what tokio's semaphore can hold nor closes connections at once
/// when a timeout is too long to add to an `Instant`. (Paused clock: an hour of virtual
/// idleness passes at once.)
#[tokio::test(start_paused = true)]
async fn limits_beyond_any_clock_mean_never() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let limits = ConnectionLimits {
        header_read_timeout: Duration::MAX,
        body_read_timeout: Duration::MAX,
        idle_timeout: Duration::MAX,
        max_connections: usize::MAX,
    };
    let server = Server::serve(listener, limits, hyper::service::service_fn(answer)).unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(GET).await.unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle now: the connection stays open for (at least) an hour.
    let idle = tokio::time::timeout(Duration::from_secs(3_600), stream.read(&mut buf)).await;
    assert!(idle.is_err(), "the idle connection was closed: {idle:?}");
    assert_eq!(server.open_connections(), 1);
}

#[tokio::test]
async fn a_body_announced_over_the_cap_is_refused_before_it_is_sent() {
    let server = start(4).await;
    for head in [
        // Without the check: `100 Continue`, then the upload.
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n",
        // Without the check: a 408 once the body timeout has passed.
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 9223372036854775807\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut got = vec![0; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut got))
            .await
            .expect("an answer in time")
            .unwrap();
        let answer = String::from_utf8_lossy(&got[..read]);
        assert!(answer.starts_with("HTTP/1.1 413 "), "{head}: {answer}");
    }
    server.close_all();
    server.drained().await;
}

/// The frame types an HTTP/2 server sent until it closed the connection.
async fn http2_frames_until_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server closed the connection in time")
        .ok();
    let mut types = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = &rest[(9 + length).min(rest.len())..];
    }
    types
}

#[tokio::test]
async fn an_idle_http2_connection_is_told_with_a_goaway_and_pings_do_not_shorten_its_life() {
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const GOAWAY: u8 = 0x7;
    let server = start(4).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let started = Instant::now();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 1, 0, 0, 0, 0]);
    // A client's keep-alive PING, with no request open: not the start of a request,
    // whose headers would have to arrive within the header timeout.
    hello.extend_from_slice(&[0, 0, 8, PING, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    stream.write_all(&hello).await.unwrap();

    let frames = http2_frames_until_close(&mut stream).await;
    assert!(frames.contains(&PING), "the PING is answered: {frames:?}");
    assert!(frames.contains(&GOAWAY), "closed with a GOAWAY: {frames:?}");
    assert!(
        started.elapsed() >= IDLE,
        "closed after {:?}, before the idle timeout of {IDLE:?}",
        started.elapsed()
    );
}

/// An answer read slowly is not cut short by the idle timeout: over HTTP/1.1 each write
/// the reader takes counts as activity. On tokio's paused clock: the reader waits a sixth
/// of the idle timeout between reads, through dozens of idle timeouts in all. (Both
/// socket buffers are small, so the server writes as the reader reads; a large send
/// buffer hides a slow reader's progress from the server, and such a reader must take
/// a buffer's worth within the idle timeout, 60 s by default.) Nor is it cut at the
/// header timeout when the reader sends its next request before the answer is in
/// (pipelining): that request is read only once the answer is written, so its header
/// clock runs from the answer's last bytes written (a regression: it ran from its own
/// first byte). That reader waits a quarter of the header timeout: on the paused clock
/// the server's next write comes only at the reader's next wake-up.
#[tokio::test(start_paused = true)]
async fn an_answer_read_slowly_is_not_cut_short_by_the_idle_timeout() {
    const SIZE: usize = 4 << 20;
    const STATUS: &[u8] = b"HTTP/1.1 200 OK";
    for pipelined in [false, true] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let big = hyper::service::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; SIZE]))))
        });
        let server = Server::serve(listener, limits(16), big).unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        let mut stream = socket.connect(server.local_addr()).await.unwrap();
        stream.write_all(GET).await.unwrap();

        let (answers, pause) = if pipelined {
            (2, HEADER / 4)
        } else {
            (1, IDLE / 6)
        };
        let started = tokio::time::Instant::now();
        let (mut got, mut heads) = (0, 0);
        let mut buf = vec![0u8; 64 * 1024];
        // The tail of the last read, for a status line split between two reads.
        let mut tail = Vec::new();
        while heads < answers || got < answers * SIZE {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "pipelined {pipelined}: cut short after {got} bytes, {:?} in",
                started.elapsed()
            );
            if got == 0 && pipelined {
                stream.write_all(GET).await.unwrap();
            }
            got += n;
            tail.extend_from_slice(&buf[..n]);
            heads += tail.windows(STATUS.len()).filter(|w| *w == STATUS).count();
            tail.drain(..tail.len().saturating_sub(STATUS.len() - 1));
            tokio::time::sleep(pause).await;
        }
        assert!(started.elapsed() > IDLE * 4, "{:?}", started.elapsed());
    }
}

/// An HTTP/2 answer whose body is still streaming is not idle, however long it takes,
/// while its frames are taken (a regression: only a finished request counted, so the
/// connection was closed at the idle timeout mid-answer). On tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn an_http2_answer_still_streaming_is_not_cut_at_the_idle_timeout() {
    use http_body_util::BodyExt;

    const CHUNKS: usize = 12;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let streaming = hyper::service::service_fn(|_: Request<Incoming>| async {
        let chunks = futures_util::stream::unfold(0, |sent| async move {
            if sent == CHUNKS {
                return None;
            }
            tokio::time::sleep(IDLE / 2).await;
            let frame = hyper::body::Frame::data(Bytes::from_static(b"chunk\n"));
            Some((Ok::<_, Infallible>(frame), sent + 1))
        });
        Ok::<_, Infallible>(Response::new(http_body_util::StreamBody::new(chunks)))
    });
    let server = Server::serve(listener, limits(16), streaming).unwrap();
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let started = tokio::time::Instant::now();
    let request = Request::get("http://x/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let mut body = sender.send_request(request).await.unwrap().into_body();
    let mut chunks = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap_or_else(|e| {
            panic!(
                "cut after {chunks} of {CHUNKS} chunks, {:?} in: {e}",
                started.elapsed()
            )
        });
        if frame.data_ref().is_some_and(|data| !data.is_empty()) {
            chunks += 1;
        }
    }
    assert_eq!(chunks, CHUNKS);
    assert!(started.elapsed() > IDLE * 2, "{:?}", started.elapsed());
}
