//! The login demo in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver` packages) driven over WebDriver with `fantoccini`,
//! against the demo served on a real socket.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` on `PATH`; without them the
//! tests fail (never skip) and say what to install:
//!
//! ```text
//! apt-get install -y chromium chromium-driver
//! cargo test -p examples --test browser
//! ```
//!
//! `UPDATE_SCREENSHOT=1 cargo test -p examples --test browser` also writes
//! the README's screenshot of the active-sessions page to `docs/sessions.png`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use examples::demo::{self, Users};
use fantoccini::{Client, ClientBuilder, Locator};
use http::{Request, StatusCode, header};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use session_core::SessionManager;
use session_store_memory::MemoryStore;
use session_tower::CookieConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";
const INSTALL: &str = "apt-get install -y chromium chromium-driver";
/// The session cookie's name with the default (Secure) `CookieConfig`.
const COOKIE: &str = "__Host-session";
/// How long any one wait (driver start-up, an element, a navigation) may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// Hashing the demo users is deliberately slow: do it once per binary.
fn users() -> Arc<Users> {
    static USERS: OnceLock<Arc<Users>> = OnceLock::new();
    Arc::clone(USERS.get_or_init(|| Arc::new(Users::demo().unwrap())))
}

/// The demo on `127.0.0.1:<free port>` with the memory store, served by a
/// spawned task for the rest of the test. Returns its base URL and the
/// router (sharing the same store), for requests that bypass the browser.
async fn serve_demo() -> (String, Router) {
    // The default cookie config, `Secure` included: Chromium counts
    // http://127.0.0.1 and http://localhost as secure contexts ("potentially
    // trustworthy" origins) and stores `Secure` cookies from them over plain
    // http, so the test runs with the production setting.
    let app = demo::router(
        SessionManager::new(MemoryStore::default()),
        users(),
        CookieConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    // As `examples/login.rs` serves it: with connect info, so the login
    // throttle tells clients apart by address.
    let served = app
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
    (format!("http://{addr}"), app)
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A `chromedriver` of our own on a free port; killed (with the browsers it
/// started, which share its process group) on drop, before the browsers'
/// profile directories are removed.
struct ChromeDriver {
    child: Child,
    url: String,
    profiles: Mutex<Vec<tempfile::TempDir>>,
}

impl ChromeDriver {
    async fn start() -> Self {
        let driver = on_path(CHROMEDRIVER);
        if driver.is_none() || !Path::new(CHROMIUM).is_file() {
            panic!(
                "the browser test needs {CHROMIUM} and `{CHROMEDRIVER}` on PATH \
                 (found chromium: {}, chromedriver: {}): run `{INSTALL}`",
                Path::new(CHROMIUM).is_file(),
                driver.is_some(),
            );
        }
        // A free port: bind port 0, note it, release it for chromedriver.
        let port = StdListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver.unwrap())
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop can end the browsers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; run `{INSTALL}`"));
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profiles: Mutex::new(Vec::new()),
        };
        driver.wait_until_ready(port).await;
        driver
    }

    /// Polls `GET /status` until chromedriver says it is ready.
    async fn wait_until_ready(&self, port: u16) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if tokio::time::timeout(Duration::from_secs(2), Self::is_ready(port))
                .await
                .is_ok_and(|ready| ready.unwrap_or(false))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} did not answer on port {port} within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One `GET /status`. chromedriver wants a `Host` header with the port,
    /// and keeps the connection open even when asked to close it, so the
    /// reply is read only until it says whether the driver is ready.
    async fn is_ready(port: u16) -> std::io::Result<bool> {
        let mut stream =
            tokio::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        let request =
            format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        let mut chunk = [0_u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            reply.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&reply);
            if text.contains("\"ready\":true") {
                return Ok(true);
            }
            if n == 0 || text.contains("\"ready\":false") {
                return Ok(false);
            }
        }
    }

    /// A new headless Chromium session with a fresh, empty profile.
    async fn browser(&self) -> Client {
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1100,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // chromedriver speaks plain http on loopback: no TLS connector needed.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM} through {CHROMEDRIVER}: {e}"));
        self.profiles.lock().unwrap().push(profile);
        client
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser it left behind.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the browser's URL path is `path`, and returns the URL.
async fn wait_for_path(client: &Client, path: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let url = client.current_url().await.unwrap();
        if url.path() == path {
            return url.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "expected to land on {path}, still on {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    match client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element.text().await.unwrap(),
        Err(e) => panic!("no {css} on {:?}: {e}", client.current_url().await),
    }
}

/// Signs in through the login form, as a person would.
async fn log_in(client: &Client, base: &str, user: &str, password: &str) {
    client.goto(&format!("{base}/login")).await.unwrap();
    let form = client.wait().at_most(PATIENCE);
    form.for_element(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    client
        .find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    client
        .find(Locator::Css("#submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The seed's flow end to end: log in through the form, see the members
/// page, the session cookie is there but hidden from scripts (HttpOnly), log
/// out, and the members page is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_httponly_cookie_and_logout_in_a_real_browser() {
    let (base, _app) = serve_demo().await;
    let driver = ChromeDriver::start().await;
    let client = driver.browser().await;

    // Log in through the form; the redirect lands on the members page.
    log_in(&client, &base, "alice", "wonderland").await;
    wait_for_path(&client, "/members").await;
    let welcome = text_of(&client, "#welcome").await;
    assert!(welcome.contains("alice"), "members page says {welcome:?}");

    // The content security policy lets the demo's own stylesheet in (and
    // nothing inline): the page is styled, 52rem wide at most.
    let width = client
        .execute("return getComputedStyle(document.body).maxWidth;", vec![])
        .await
        .unwrap();
    assert_eq!(width, json!("832px"), "the stylesheet did not apply");

    // Scripts cannot see the session cookie...
    let visible = client
        .execute("return document.cookie;", vec![])
        .await
        .unwrap();
    let visible = visible.as_str().expect("document.cookie is a string");
    assert!(
        !visible.contains(&format!("{COOKIE}=")),
        "the session cookie must be HttpOnly, but document.cookie = {visible:?}"
    );
    // ...yet the browser holds it: WebDriver sees every cookie.
    let cookie = client
        .get_named_cookie(COOKIE)
        .await
        .unwrap_or_else(|e| panic!("the browser stored no {COOKIE:?} cookie: {e}"));
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(cookie.secure(), Some(true), "{cookie:?}");
    assert!(!cookie.value().is_empty());
    assert!(!cookie.value().contains("alice"));

    // Log out from the nav; back to the login form, and the cookie is gone.
    client
        .find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&client, "/login").await;
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    assert!(
        client.get_named_cookie(COOKIE).await.is_err(),
        "logout must overwrite the cookie with Max-Age=0"
    );

    // The members page now refuses us: it redirects to the login form.
    client.goto(&format!("{base}/members")).await.unwrap();
    let url = wait_for_path(&client, "/login").await;
    assert!(url.ends_with("/login"), "{url}");
    assert!(
        client.find(Locator::Css("#welcome")).await.is_err(),
        "members page shown after logout"
    );

    client.close().await.unwrap();
}

/// Signs `user` in through the router directly (no browser), as another
/// device with user agent `agent`.
async fn log_in_elsewhere(app: &Router, agent: &str, user: &str, password: &str) {
    let request = Request::post("/login")
        .header(header::USER_AGENT, agent)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("username={user}&password={password}")))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

/// The active-sessions page in the browser lists every device of the user:
/// this browser (marked) and two logins from elsewhere. Its screenshot goes
/// to the test's temporary directory, and with `UPDATE_SCREENSHOT=1` to
/// `docs/sessions.png` for the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_page_lists_every_device() {
    let (base, app) = serve_demo().await;
    log_in_elsewhere(
        &app,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "alice",
        "wonderland",
    )
    .await;
    log_in_elsewhere(
        &app,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "alice",
        "wonderland",
    )
    .await;
    // Another user's session, which must not show.
    log_in_elsewhere(&app, "Bob's PC", "bob", "builder").await;

    let driver = ChromeDriver::start().await;
    let client = driver.browser().await;
    log_in(&client, &base, "alice", "wonderland").await;
    wait_for_path(&client, "/members").await;
    client.goto(&format!("{base}/sessions")).await.unwrap();
    let table = text_of(&client, "#sessions").await;
    for device in ["HeadlessChrome", "iPhone", "Firefox/128.0"] {
        assert!(table.contains(device), "{device} missing from {table}");
    }
    assert!(!table.contains("Bob"), "{table}");
    assert_eq!(table.matches("(this session)").count(), 1, "{table}");
    let rows = client
        .find_all(Locator::Css("#sessions tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);

    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("sessions.png"),
        &png,
    )
    .unwrap();
    if std::env::var_os("UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("sessions.png"), &png).unwrap();
    }

    client.close().await.unwrap();
}

/// Login CSRF: a page on another site (here `http://localhost:<port>`,
/// another site than the demo's `http://127.0.0.1:<port>`) that
/// auto-submits a login form to the demo. Chromium sends it with
/// `Sec-Fetch-Site: cross-site`; the demo's session layer refuses it (403),
/// so the visitor is not signed in to the attacker's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_form_auto_submitted_from_another_site_is_refused() {
    let (base, _app) = serve_demo().await;
    let forged = format!(
        "<!doctype html><title>win a prize</title>\
         <form id=forged method=post action=\"{base}/login\">\
         <input name=username value=alice><input name=password value=wonderland></form>\
         <script>document.getElementById('forged').submit()</script>"
    );
    let evil = Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = forged.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let evil_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, evil).await.unwrap() });

    let driver = ChromeDriver::start().await;
    let client = driver.browser().await;
    client
        .goto(&format!("http://localhost:{evil_port}/"))
        .await
        .unwrap();
    // The form posted to the demo, which answered a bare 403.
    let url = wait_for_path(&client, "/login").await;
    assert!(url.starts_with(&base), "{url}");
    assert!(
        client.get_named_cookie(COOKIE).await.is_err(),
        "a refused cross-site login must not set a session cookie"
    );
    // Not signed in: the members page sends us to the login form.
    client.goto(&format!("{base}/members")).await.unwrap();
    wait_for_path(&client, "/login").await;
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    // The same credentials typed into the demo's own form do sign in.
    log_in(&client, &base, "alice", "wonderland").await;
    wait_for_path(&client, "/members").await;
    client.close().await.unwrap();
}

/// Clickjacking: a page on another site frames the demo's login form
/// (and, as a control, a page of its own). The demo's
/// `Content-Security-Policy: frame-ancestors 'none'` makes Chromium refuse
/// to render it in the frame, while the control frame renders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_cannot_frame_the_login_form() {
    let (base, _app) = serve_demo().await;
    let framing = format!(
        "<!doctype html><title>click here</title>\
         <iframe src=\"{base}/login\" onload=\"window.loaded=(window.loaded||0)+1\"></iframe>\
         <iframe src=\"/control\" onload=\"window.loaded=(window.loaded||0)+1\"></iframe>"
    );
    let evil = Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let page = framing.clone();
                async move { axum::response::Html(page) }
            }),
        )
        .route(
            "/control",
            axum::routing::get(|| async { axum::response::Html("<p id=control>framed</p>") }),
        );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let evil_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, evil).await.unwrap() });

    let driver = ChromeDriver::start().await;
    let client = driver.browser().await;
    client
        .goto(&format!("http://localhost:{evil_port}/"))
        .await
        .unwrap();
    // Both frames have finished loading (a refused frame loads an error
    // page, and fires `load` too).
    let deadline = Instant::now() + PATIENCE;
    while client
        .execute("return window.loaded || 0;", vec![])
        .await
        .unwrap()
        != json!(2)
    {
        assert!(Instant::now() < deadline, "the frames never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The control: the other site's own page renders in its frame.
    client.enter_frame(1).await.unwrap();
    client.find(Locator::Css("#control")).await.unwrap();
    client.enter_parent_frame().await.unwrap();
    // The demo's form does not.
    client.enter_frame(0).await.unwrap();
    assert!(
        client.find(Locator::Css("#username")).await.is_err(),
        "the login form rendered inside another site's frame"
    );
    client.close().await.unwrap();
}
