//! The load generator: one task per connection, each an HTTP/1.1
//! keep-alive connection (hyper's client connection) sending one request
//! after the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BoxError;

/// One keep-alive connection to a server.
pub(crate) struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Empty<Bytes>>,
}

/// What one request got back.
pub(crate) struct Answer {
    /// The status.
    pub(crate) status: StatusCode,
    /// The `name=value` part of the first `Set-Cookie`, if any.
    pub(crate) cookie: Option<String>,
    /// The body.
    pub(crate) body: Bytes,
}

impl Conn {
    /// Opens a connection (`TCP_NODELAY`, as browsers and `wrk` do).
    pub(crate) async fn open(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { addr, sender })
    }

    /// Sends one request with an empty body and reads the whole answer.
    /// A transport error reopens the connection for the next request.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
    ) -> Result<Answer, BoxError> {
        let result = self.try_send(method, path, cookie).await;
        if result.is_err() {
            *self = Self::open(self.addr).await?;
        }
        result
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
    ) -> Result<Answer, BoxError> {
        self.sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = self
            .sender
            .send_request(request.body(Empty::new())?)
            .await?;
        let status = response.status();
        let cookie = cookie_pair(response.headers());
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            cookie,
            body,
        })
    }
}

/// The `name=value` part of the first `Set-Cookie` in `headers`.
pub(crate) fn cookie_pair(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// A workload: which request each connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    /// `GET /plain` with a session cookie: the session is never touched.
    W0Plain,
    /// `GET /counter`: read-modify-write.
    W1Counter,
    /// `POST /login` without a cookie: creates a session.
    W2Login,
    /// `GET /read`: read-only.
    W3Read,
}

impl Workload {
    /// Every workload, in report order.
    pub(crate) const ALL: [Workload; 4] = [
        Workload::W1Counter,
        Workload::W2Login,
        Workload::W3Read,
        Workload::W0Plain,
    ];

    /// Short label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Workload::W0Plain => "W0 /plain",
            Workload::W1Counter => "W1 /counter",
            Workload::W2Login => "W2 /login",
            Workload::W3Read => "W3 /read",
        }
    }

    fn request(self) -> (Method, &'static str, bool) {
        match self {
            Workload::W0Plain => (Method::GET, "/plain", true),
            Workload::W1Counter => (Method::GET, "/counter", true),
            Workload::W2Login => (Method::POST, "/login", false),
            Workload::W3Read => (Method::GET, "/read", true),
        }
    }
}

/// Counts of one measured window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    /// 2xx answers.
    pub(crate) ok: u64,
    /// Answers with another status.
    pub(crate) non_2xx: u64,
    /// Transport errors (no answer).
    pub(crate) errors: u64,
    /// The window's length in seconds.
    pub(crate) secs: f64,
}

impl Counts {
    /// 2xx answers per second.
    pub(crate) fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }

    fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
    }
}

/// Runs `workload` over `connections` connections: a warm-up, then a
/// measured window. Connection `c` sends the cookies `c`, `c +
/// connections`, … in turn (cookies are `name=value` strings), so at 64
/// connections no two requests in flight share a session.
pub(crate) async fn run(
    addr: SocketAddr,
    workload: Workload,
    connections: usize,
    cookies: Arc<Vec<String>>,
    warmup: Duration,
    window: Duration,
) -> Result<Counts, BoxError> {
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + warmup;
    let measure_to = measure_from + window;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let cookies = Arc::clone(&cookies);
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let (method, path, with_cookie) = workload.request();
            let mut counts = Counts::default();
            let mut i = c;
            tokio::time::sleep_until(start.into()).await;
            loop {
                let cookie = if with_cookie && !cookies.is_empty() {
                    Some(cookies[i % cookies.len()].as_str())
                } else {
                    None
                };
                i += connections;
                let result = conn.send(method.clone(), path, cookie).await;
                let now = Instant::now();
                if now >= measure_to {
                    break;
                }
                if now < measure_from {
                    continue;
                }
                match result {
                    Ok(answer) if answer.status.is_success() => counts.ok += 1,
                    Ok(_) => counts.non_2xx += 1,
                    Err(_) => counts.errors += 1,
                }
            }
            Ok::<_, BoxError>(counts)
        });
    }
    let mut total = Counts {
        secs: window.as_secs_f64(),
        ..Counts::default()
    };
    while let Some(joined) = tasks.join_next().await {
        total.add(joined??);
    }
    Ok(total)
}

/// `POST /login` `n` times over `connections` connections; the cookies
/// the server set, in no particular order.
pub(crate) async fn sign_in(
    addr: SocketAddr,
    n: usize,
    connections: usize,
) -> Result<Vec<String>, BoxError> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut cookies = Vec::new();
            for _ in (c..n).step_by(connections) {
                let answer = conn.send(Method::POST, "/login", None).await?;
                if !answer.status.is_success() {
                    return Err(format!("POST /login answered {}", answer.status).into());
                }
                // The bare baseline sets no cookie: any cookie will do.
                cookies.push(answer.cookie.unwrap_or_else(|| "session=bare".to_owned()));
            }
            Ok::<_, BoxError>(cookies)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined??);
    }
    Ok(all)
}

/// The hot session: `connections` connections send requests with the
/// same cookie for a while; then one request reads back how many
/// increments the store kept.
///
/// * [`HotKind::Counter`]: every connection sends `GET /counter` (one
///   shared counter, read-modify-write), then `GET /read`;
/// * [`HotKind::OwnKeys`]: connection `c` sends `GET /hit/{c}` (its own
///   counter `hit-{c}` in the shared session), then `GET /hits` adds them
///   up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HotKind {
    /// One shared counter.
    Counter,
    /// One counter per connection in the same session.
    OwnKeys,
}

/// What a hot-session run counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hot {
    /// 2xx answers.
    pub(crate) ok: u64,
    /// Non-2xx answers.
    pub(crate) non_2xx: u64,
    /// Transport errors.
    pub(crate) errors: u64,
    /// Increments the store kept (the counters start at 0).
    pub(crate) applied: u64,
}

impl Hot {
    /// Increments applied ÷ requests answered with 2xx.
    pub(crate) fn ratio(&self) -> f64 {
        if self.ok == 0 {
            0.0
        } else {
            self.applied as f64 / self.ok as f64
        }
    }
}

/// Runs the hot session (see [`HotKind`]) on a fresh session.
pub(crate) async fn hot(
    addr: SocketAddr,
    kind: HotKind,
    connections: usize,
    window: Duration,
) -> Result<Hot, BoxError> {
    let cookie = sign_in(addr, 1, 1)
        .await?
        .pop()
        .ok_or("no cookie from POST /login")?;
    let cookie = Arc::new(cookie);
    let until = Instant::now() + window;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let cookie = Arc::clone(&cookie);
        let path = match kind {
            HotKind::Counter => "/counter".to_owned(),
            HotKind::OwnKeys => format!("/hit/{c}"),
        };
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut hot = Hot::default();
            while Instant::now() < until {
                match conn.send(Method::GET, &path, Some(&cookie)).await {
                    Ok(answer) if answer.status.is_success() => hot.ok += 1,
                    Ok(_) => hot.non_2xx += 1,
                    Err(_) => hot.errors += 1,
                }
            }
            Ok::<_, BoxError>(hot)
        });
    }
    let mut total = Hot::default();
    while let Some(joined) = tasks.join_next().await {
        let hot = joined??;
        total.ok += hot.ok;
        total.non_2xx += hot.non_2xx;
        total.errors += hot.errors;
    }
    let read = match kind {
        HotKind::Counter => "/read",
        HotKind::OwnKeys => "/hits",
    };
    let mut conn = Conn::open(addr).await?;
    let answer = conn.send(Method::GET, read, Some(&cookie)).await?;
    if !answer.status.is_success() {
        return Err(format!(
            "GET {read} after the hot session answered {}",
            answer.status
        )
        .into());
    }
    total.applied = std::str::from_utf8(&answer.body)?.trim().parse()?;
    Ok(total)
}
