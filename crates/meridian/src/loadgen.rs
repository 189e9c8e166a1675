//! A lean HTTP/1.1 keep-alive GET client for the latency benchmarks: a pool of plain
//! TCP connections, one request at a time on each, responses parsed with `httparse`.
//!
//! Why not hyper's pooled client: on this 2-core machine the load generator shares the
//! CPUs with the server it measures, and hyper's legacy client cost 22 µs of CPU per
//! request at 20k requests/s — more than the server spent answering `/healthz` (17 µs).
//! Every microsecond the generator burns is taken from the server under test and shows
//! up as its tail latency. This client writes one pre-formatted request and reads one
//! response per call, with no tasks, channels or per-host bookkeeping.

use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One idle connection and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Keep-alive connections to one server; a call takes an idle connection (or opens one)
/// and puts it back after a complete response.
pub(crate) struct KeepAliveClient {
    addr: SocketAddr,
    host: String,
    authorization: String,
    idle: Mutex<Vec<Conn>>,
}

impl KeepAliveClient {
    /// A client for `base` (`http://host:port`) sending `authorization` with every request.
    pub(crate) fn new(base: &str, authorization: &str) -> anyhow::Result<KeepAliveClient> {
        let host = base.strip_prefix("http://").context("the benchmark client speaks plain http only")?.trim_end_matches('/').to_owned();
        let addr = host.parse().with_context(|| format!("{host} is not an ip:port"))?;
        Ok(KeepAliveClient { addr, host, authorization: authorization.to_owned(), idle: Mutex::new(Vec::new()) })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Conn>> {
        // A panic while holding the lock leaves a valid Vec; keep using it.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `GET path`; fails unless the status is 2xx. Returns the body length.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<usize> {
        let conn = self.idle().pop();
        let mut conn = match conn {
            Some(c) => c,
            None => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                Conn { stream, buf: Vec::with_capacity(8192) }
            }
        };
        let request = format!("GET {path} HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\n\r\n", self.host, self.authorization);
        conn.stream.write_all(request.as_bytes()).await?;
        let (status, body_len, keep_alive) = read_response(&mut conn).await?;
        if keep_alive {
            self.idle().push(conn);
        }
        anyhow::ensure!((200..300).contains(&status), "status {status}");
        Ok(body_len)
    }
}

/// Reads one whole response (headers and a `content-length` body) from `conn`; returns
/// the status, the body length and whether the connection may be reused.
async fn read_response(conn: &mut Conn) -> anyhow::Result<(u16, usize, bool)> {
    conn.buf.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = response.parse(&conn.buf)? {
            let status = response.code.unwrap_or(0);
            let mut body_len = None;
            let mut keep_alive = true;
            for h in response.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    body_len = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                } else if h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                }
            }
            let body_len = body_len.context("response without content-length (chunked bodies are not expected from these routes)")?;
            let total = head_len + body_len;
            while conn.buf.len() < total {
                read_more(conn).await?;
            }
            anyhow::ensure!(conn.buf.len() == total, "bytes after the response: the server answered something not asked");
            return Ok((status, body_len, keep_alive));
        }
        read_more(conn).await?;
    }
}

async fn read_more(conn: &mut Conn) -> anyhow::Result<()> {
    if conn.buf.capacity() - conn.buf.len() < 4096 {
        conn.buf.reserve(8192);
    }
    let n = conn.stream.read_buf(&mut conn.buf).await?;
    anyhow::ensure!(n > 0, "the server closed the connection mid-response");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `answers` in order on one accepted connection, one per request head.
    async fn one_connection_server(answers: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = Vec::new();
            for answer in answers {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 1024];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                seen.push(String::from_utf8(buf.drain(..end).collect()).unwrap());
                // Written in two parts, so the client must keep reading.
                let (a, b) = answer.split_at(answer.len() / 2);
                s.write_all(a.as_bytes()).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                s.write_all(b.as_bytes()).await.unwrap();
            }
            seen
        });
        (base, task)
    }

    #[tokio::test]
    async fn reuses_the_connection_and_reports_statuses() {
        let (base, server) = one_connection_server(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let client = KeepAliveClient::new(&base, "Bearer k").unwrap();
        assert_eq!(client.get("/a").await.unwrap(), 5);
        let err = client.get("/b").await.unwrap_err().to_string();
        assert!(err.contains("429"), "{err}");
        assert_eq!(client.get("/c").await.unwrap(), 0, "the same connection is reused after a non-2xx answer");
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].starts_with("GET /a HTTP/1.1\r\n") && seen[0].contains("authorization: Bearer k\r\n"), "{}", seen[0]);
    }

    #[tokio::test]
    async fn refuses_chunked_and_non_http_bases() {
        let (base, _server) = one_connection_server(vec!["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"]).await;
        let client = KeepAliveClient::new(&base, "Bearer k").unwrap();
        let err = client.get("/").await.unwrap_err().to_string();
        assert!(err.contains("content-length"), "{err}");
        assert!(KeepAliveClient::new("https://127.0.0.1:1", "x").is_err());
    }
}
