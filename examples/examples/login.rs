//! The login demo: sign in, see the members page, manage your active
//! sessions, log out — the seed article's flows, end to end.
//!
//! ```text
//! cargo run -p examples --example login [-- --store memory|sqlite:PATH|redis://HOST:PORT/|postgres://USER@HOST/DB] [--addr 127.0.0.1:3000] [--secure-cookies]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use examples::demo::{self, DEMO_USERS, StoreChoice, Users};
use session_core::SessionManager;
use session_core::sweeper::SweeperExt;
use session_tower::CookieConfig;

struct Args {
    store: StoreChoice,
    addr: SocketAddr,
    secure_cookies: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        store: StoreChoice::Memory,
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
        secure_cookies: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--store" => {
                let value = it.next().ok_or("--store needs a value")?;
                args.store = StoreChoice::parse(&value)?;
            }
            "--addr" => {
                let value = it.next().ok_or("--addr needs HOST:PORT")?;
                args.addr = value
                    .parse()
                    .map_err(|e| format!("--addr {value:?}: {e}"))?;
            }
            "--secure-cookies" => args.secure_cookies = true,
            "-h" | "--help" => {
                return Err("usage: login [--store memory|sqlite:PATH|redis://...|postgres://...] [--addr HOST:PORT] [--secure-cookies]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let args = parse_args()?;
    let store = args.store.open().await?;
    // Expired sessions are invisible at once; a sweep every five minutes
    // also removes them physically from the SQL stores (Redis expires
    // them itself, and the memory store's sweep is its own periodic one).
    let _sweeper = store.spawn_sweeper(std::time::Duration::from_secs(300))?;
    let manager = SessionManager::from_arc(store);
    let users = Arc::new(Users::demo()?);
    // The demo serves plain HTTP, so `Secure` is off unless asked for
    // (behind HTTPS, always pass --secure-cookies).
    let cookie = CookieConfig::default().with_secure(args.secure_cookies);
    let app = demo::router(manager, users, cookie);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "login demo on http://{} (sessions in {:?})",
        listener.local_addr()?,
        args.store
    );
    println!("demo users:");
    for (name, password) in DEMO_USERS {
        println!("  {name} / {password}");
    }
    if !args.secure_cookies {
        println!("note: cookies are not `Secure` (plain HTTP); use --secure-cookies behind HTTPS");
    }
    // Connect info: the login throttle counts failures per client address.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
