//! `profile KIND N [--bare]`: `N` requests of one kind through the
//! benchmark app on the memory store, in process (the router called with
//! `tower::ServiceExt::oneshot`, no socket, one thread), so that
//! `valgrind --tool=callgrind` counts what `session-tower` and the
//! manager cost per request:
//!
//! * `untouched`: `GET /plain` with a session cookie (the handler never
//!   touches the session);
//! * `read`: `GET /read` (loads the session, reads the counter, no write);
//! * `write`: `GET /counter` (loads, increments, commits a save).
//!
//! `--bare` sends the same requests through the bare app (no session
//! layer): the difference is the layer's own cost.
//!
//! ```text
//! cargo build --release -p session-bench-http
//! for n in 10000 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.read.$n \
//!     $CARGO_TARGET_DIR/release/session-bench-http profile read $n
//! done
//! ```
//!
//! Instructions per request = (total of the 20,000 run − total of the
//! 10,000 run) ÷ 10,000: the setup cancels out. `callgrind_annotate` on
//! one output file shows where they go.

use axum::Router;
use axum::body::Body;
use http::{Method, Request, header};
use http_body_util::BodyExt as _;
use session_core::SessionManager;
use session_store_memory::MemoryStore;
use tower::ServiceExt as _;

use crate::BoxError;
use crate::app;

async fn call(
    router: &Router,
    method: Method,
    path: &str,
    cookie: Option<&str>,
) -> Result<(http::StatusCode, Option<String>), BoxError> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = router.clone().oneshot(request.body(Body::empty())?).await?;
    let status = response.status();
    let cookie = crate::load::cookie_pair(response.headers());
    response.into_body().collect().await?;
    Ok((status, cookie))
}

/// Runs the profile described in the module docs.
pub(crate) fn run(args: &[String]) -> Result<(), BoxError> {
    let (kind, n, bare) = match args {
        [kind, n] => (kind, n.parse::<u64>()?, false),
        [kind, n, flag] if flag == "--bare" => (kind, n.parse::<u64>()?, true),
        _ => return Err("profile: expected KIND N [--bare]".into()),
    };
    let path = match kind.as_str() {
        "untouched" => "/plain",
        "read" => "/read",
        "write" => "/counter",
        other => {
            return Err(
                format!("profile: unknown kind {other} (known: untouched, read, write)").into(),
            );
        }
    };
    let router = if bare {
        app::bare()
    } else {
        app::ours(SessionManager::new(MemoryStore::default()))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (status, cookie) = call(&router, Method::POST, "/login", None).await?;
        if !status.is_success() {
            return Err(format!("POST /login answered {status}").into());
        }
        let cookie = cookie.unwrap_or_else(|| "session=bare".to_owned());
        for _ in 0..n {
            let (status, _) = call(&router, Method::GET, path, Some(&cookie)).await?;
            if !status.is_success() {
                return Err(format!("GET {path} answered {status}").into());
            }
        }
        Ok::<_, BoxError>(())
    })?;
    println!(
        "{kind}: {n} requests{}",
        if bare { " (bare app)" } else { "" }
    );
    Ok(())
}
