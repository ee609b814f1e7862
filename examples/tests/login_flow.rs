//! The seed article's login and logout walk-throughs, step by step, over
//! HTTP (through the router, no sockets), on each store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use examples::demo::{self, Users};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use session_core::{Record, SessionId, SessionManager, SessionStore, StorageKey, Timestamp};
use session_tower::CookieConfig;
use tower::ServiceExt;

/// The session cookie's name with the default (Secure) `CookieConfig`.
const COOKIE: &str = "__Host-session";

/// Hashing the demo users is deliberately slow: do it once per binary.
fn users() -> Arc<Users> {
    static USERS: OnceLock<Arc<Users>> = OnceLock::new();
    Arc::clone(USERS.get_or_init(|| Arc::new(Users::demo().unwrap())))
}

fn app(store: Arc<dyn SessionStore>) -> Router {
    demo::router(
        SessionManager::from_arc(store),
        users(),
        CookieConfig::default(),
    )
}

/// A cookie jar in front of the router: one browser.
struct Browser {
    app: Router,
    jar: HashMap<String, String>,
    agent: &'static str,
}

impl Browser {
    fn new(app: &Router, agent: &'static str) -> Self {
        Self {
            app: app.clone(),
            jar: HashMap::new(),
            agent,
        }
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&str>) -> Response<Body> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::USER_AGENT, self.agent);
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        let body = match form {
            Some(form) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(form.to_owned())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        response
    }

    async fn get(&mut self, path: &str) -> Response<Body> {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &str) -> Response<Body> {
        self.send("POST", path, Some(form)).await
    }

    async fn login(&mut self, user: &str, password: &str) -> Response<Body> {
        self.post("/login", &format!("username={user}&password={password}"))
            .await
    }

    fn cookie(&self) -> Option<String> {
        self.jar.get(COOKIE).cloned()
    }

    fn key(&self) -> StorageKey {
        SessionId::parse(&self.cookie().expect("a session cookie"))
            .unwrap()
            .storage_key()
    }
}

async fn text(response: Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn location(response: &Response<Body>) -> &str {
    response.headers()[header::LOCATION].to_str().unwrap()
}

fn set_cookie(response: &Response<Body>) -> String {
    response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn assert_members_refused(browser: &mut Browser, why: &str) {
    let response = browser.get("/members").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{why}");
    assert_eq!(location(&response), "/login", "{why}");
}

async fn assert_members_page(browser: &mut Browser, user: &str) {
    let response = browser.get("/members").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(text(response).await.contains(&format!("Welcome, {user}")));
}

/// Login (steps 1–8 of the seed): credentials → a session in the store → an
/// HttpOnly cookie with an opaque id → the members page.
async fn login_sets_an_httponly_cookie_that_opens_the_members_page(store: Arc<dyn SessionStore>) {
    let app = app(Arc::clone(&store));
    let mut browser = Browser::new(&app, "browser-1");
    let response = browser.get("/login").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        browser.cookie().is_none(),
        "the login form must not start a session"
    );

    let response = browser.login("alice", "wonderland").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/members");
    let cookie = set_cookie(&response);
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    // The server keeps the state; the cookie holds only the id.
    let record = store
        .load(&browser.key())
        .await
        .unwrap()
        .expect("a stored session");
    assert_eq!(record.user.as_deref(), Some("alice"));
    assert!(!cookie.contains("alice"));

    assert_members_page(&mut browser, "alice").await;
}

async fn wrong_password_is_refused_without_a_session(store: Arc<dyn SessionStore>) {
    let app = app(store);
    let mut browser = Browser::new(&app, "browser-1");
    for (user, password) in [("alice", "nope"), ("mallory", "wonderland"), ("alice", "")] {
        let response = browser.login(user, password).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{user}/{password}"
        );
        assert!(response.headers().get(header::SET_COOKIE).is_none());
    }
    assert_members_refused(&mut browser, "after failed logins").await;
}

/// Without a cookie, or with a forged or malformed one, no members page.
async fn members_page_needs_a_live_session(store: Arc<dyn SessionStore>) {
    let app = app(store);
    let mut browser = Browser::new(&app, "browser-1");
    assert_members_refused(&mut browser, "without a cookie").await;
    let forged = SessionId::generate().unwrap().to_cookie_value();
    for bad in [
        forged.as_str(),
        "garbage",
        "",
        "../../etc/passwd",
        &"A".repeat(43),
    ] {
        browser.jar.insert(COOKIE.into(), bad.into());
        assert_members_refused(&mut browser, &format!("with cookie {bad:?}")).await;
    }
}

/// Logout: the server record is deleted and the cookie overwritten with
/// `Max-Age=0`; the old cookie replayed afterwards opens nothing.
async fn logout_deletes_the_record_and_clears_the_cookie(store: Arc<dyn SessionStore>) {
    let app = app(Arc::clone(&store));
    let mut browser = Browser::new(&app, "browser-1");
    browser.login("alice", "wonderland").await;
    let old_cookie = browser.cookie().unwrap();
    let key = browser.key();
    assert!(store.load(&key).await.unwrap().is_some());

    let response = browser.post("/logout", "").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cleared = set_cookie(&response);
    assert!(cleared.starts_with(&format!("{COOKIE}=;")), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        store.load(&key).await.unwrap(),
        None,
        "the server record must be gone"
    );
    assert!(browser.cookie().is_none());

    // A stolen copy of the old cookie is worthless now.
    browser.jar.insert(COOKIE.into(), old_cookie);
    assert_members_refused(&mut browser, "with the cookie replayed after logout").await;
}

/// Login rotates the id: an id planted before login (fixation) is dead
/// afterwards, and the new id carries the login.
async fn login_rotates_the_session_id(store: Arc<dyn SessionStore>) {
    let app = app(Arc::clone(&store));
    let mut browser = Browser::new(&app, "browser-1");
    // An attacker plants a valid, stored, anonymous session id.
    let planted = SessionId::generate().unwrap();
    let now = Timestamp::now();
    let mut record = Record::new(
        planted.storage_key(),
        now,
        now.saturating_add(Duration::from_secs(600)),
    );
    record.data.insert("planted".into(), true.into());
    store.create(&record).await.unwrap();
    browser.jar.insert(COOKIE.into(), planted.to_cookie_value());

    browser.login("alice", "wonderland").await;
    let after = browser.cookie().unwrap();
    assert_ne!(
        after,
        planted.to_cookie_value(),
        "login must issue a new id"
    );
    assert_eq!(
        store.load(&planted.storage_key()).await.unwrap(),
        None,
        "the pre-login id must be dead"
    );
    let mut attacker = Browser::new(&app, "attacker");
    attacker
        .jar
        .insert(COOKIE.into(), planted.to_cookie_value());
    assert_members_refused(&mut attacker, "with the pre-login id").await;
    assert_members_page(&mut browser, "alice").await;
}

/// "Log out everywhere" ends the user's sessions in other cookie jars, and
/// no other user's; "everywhere else" keeps the current one.
async fn logout_everywhere_reaches_other_browsers(store: Arc<dyn SessionStore>) {
    let app = app(store);
    let mut laptop = Browser::new(&app, "Laptop <b>Firefox</b>");
    let mut phone = Browser::new(&app, "Phone");
    let mut tablet = Browser::new(&app, "Tablet");
    let mut bob = Browser::new(&app, "Bob's PC");
    for browser in [&mut laptop, &mut phone, &mut tablet] {
        browser.login("alice", "wonderland").await;
    }
    bob.login("bob", "builder").await;

    // The active-sessions page lists all three, marks this one, escapes.
    let page = text(laptop.get("/sessions").await).await;
    for device in ["Laptop &lt;b&gt;Firefox&lt;/b&gt;", "Phone", "Tablet"] {
        assert!(page.contains(device), "{device} missing from {page}");
    }
    assert!(!page.contains("Bob&#39;s PC"));
    assert_eq!(page.matches("(this session)").count(), 1);

    // Log out this one other session (the tablet) by its key.
    let tablet_key = tablet.key().to_hex();
    laptop
        .post("/sessions/revoke", &format!("key={tablet_key}"))
        .await;
    assert_members_refused(
        &mut tablet,
        "after its session was logged out from the laptop",
    )
    .await;
    // A key of another user's session is ignored.
    bob.post("/sessions/revoke", &format!("key={}", phone.key().to_hex()))
        .await;
    assert_members_page(&mut phone, "alice").await;

    // Everywhere else: the phone goes, the laptop stays.
    tablet.login("alice", "wonderland").await;
    laptop.post("/logout-others", "").await;
    assert_members_refused(&mut phone, "after log out everywhere else").await;
    assert_members_refused(&mut tablet, "after log out everywhere else").await;
    assert_members_page(&mut laptop, "alice").await;

    // Everywhere: the laptop too; bob is untouched.
    phone.login("alice", "wonderland").await;
    let response = laptop.post("/logout-everywhere", "").await;
    assert!(set_cookie(&response).contains("Max-Age=0"));
    assert_members_refused(&mut laptop, "after log out everywhere").await;
    assert_members_refused(&mut phone, "after log out everywhere").await;
    assert_members_page(&mut bob, "bob").await;
}

/// Every response, signed in or not, stays out of caches and cannot be
/// framed or made to load or post anywhere else.
fn assert_secure_headers(what: &str, response: &Response<Body>) {
    let get = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{what}: no {name} header"))
    };
    assert_eq!(get("cache-control"), "no-store", "{what}");
    let csp = get("content-security-policy");
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "style-src 'self'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: {directive} missing from {csp}"
        );
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
}

async fn every_page_is_no_store_with_a_csp_that_forbids_framing(store: Arc<dyn SessionStore>) {
    let app = app(store);
    let mut browser = Browser::new(&app, "browser-1");
    let mut pages = vec![
        ("GET /login", browser.get("/login").await),
        ("GET / signed out", browser.get("/").await),
        ("a wrong password", browser.login("alice", "nope").await),
        (
            "a right password",
            browser.login("alice", "wonderland").await,
        ),
        ("GET /members", browser.get("/members").await),
        ("GET /sessions", browser.get("/sessions").await),
        ("GET /login signed in", browser.get("/login").await),
    ];
    pages.push(("POST /logout", browser.post("/logout", "").await));
    pages.push(("GET /members signed out", browser.get("/members").await));
    for (what, response) in &pages {
        assert_secure_headers(what, response);
    }
    // The pages' only stylesheet, which the policy allows; it may be cached.
    let response = browser.get("/style.css").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let members = text(pages.swap_remove(4).1).await;
    assert!(members.contains("<link rel=\"stylesheet\" href=\"/style.css\">"));
    assert!(!members.contains("<style") && !members.contains("<script"));
}

/// One test per flow; `$store` gives the store and a guard that keeps
/// whatever the store needs (a temporary directory) alive for the test.
macro_rules! flows {
    ($store:expr) => {
        #[tokio::test]
        async fn login_sets_an_httponly_cookie_that_opens_the_members_page() {
            let (store, _guard) = $store;
            super::login_sets_an_httponly_cookie_that_opens_the_members_page(store).await;
        }
        #[tokio::test]
        async fn wrong_password_is_refused_without_a_session() {
            let (store, _guard) = $store;
            super::wrong_password_is_refused_without_a_session(store).await;
        }
        #[tokio::test]
        async fn members_page_needs_a_live_session() {
            let (store, _guard) = $store;
            super::members_page_needs_a_live_session(store).await;
        }
        #[tokio::test]
        async fn logout_deletes_the_record_and_clears_the_cookie() {
            let (store, _guard) = $store;
            super::logout_deletes_the_record_and_clears_the_cookie(store).await;
        }
        #[tokio::test]
        async fn login_rotates_the_session_id() {
            let (store, _guard) = $store;
            super::login_rotates_the_session_id(store).await;
        }
        #[tokio::test]
        async fn logout_everywhere_reaches_other_browsers() {
            let (store, _guard) = $store;
            super::logout_everywhere_reaches_other_browsers(store).await;
        }
        #[tokio::test]
        async fn every_page_is_no_store_with_a_csp_that_forbids_framing() {
            let (store, _guard) = $store;
            super::every_page_is_no_store_with_a_csp_that_forbids_framing(store).await;
        }
    };
}

type Guard = Box<dyn std::any::Any>;

mod memory {
    use super::*;

    fn store() -> (Arc<dyn SessionStore>, Guard) {
        (
            Arc::new(session_store_memory::MemoryStore::default()),
            Box::new(()),
        )
    }

    flows!(store());
}

mod sqlite {
    use super::*;

    async fn store() -> (Arc<dyn SessionStore>, Guard) {
        let dir = tempfile::tempdir().unwrap();
        let store = session_store_sqlite::SqliteStore::open(dir.path().join("sessions.db"))
            .await
            .unwrap();
        (Arc::new(store), Box::new(dir))
    }

    flows!(store().await);
}

mod redis {
    use super::*;

    async fn store() -> (Arc<dyn SessionStore>, Guard) {
        let url = session_store_redis::testing::shared_url().unwrap_or_else(|e| panic!("{e}"));
        let prefix = format!(
            "demo-test:{}:",
            SessionId::generate().unwrap().storage_key()
        );
        let store = session_store_redis::RedisStore::builder(url)
            .prefix(prefix)
            .connect()
            .await
            .unwrap();
        (Arc::new(store), Box::new(()))
    }

    flows!(store().await);
}

mod postgres {
    use super::*;

    /// A store in a schema of its own on the harness's server
    /// (`DATABASE_URL`, else a throwaway cluster); the guard drops the
    /// schema.
    async fn store() -> (Arc<dyn SessionStore>, Guard) {
        let test = session_store_postgres::testing::TestStore::new()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (Arc::new(test.store().clone()), Box::new(test))
    }

    flows!(store().await);
}

/// A login attempt for `user` from client address `from`, as the server
/// sees it when served with connect info.
fn attempt(user: &str, password: &str, from: [u8; 4]) -> Request<Body> {
    let mut request = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("username={user}&password={password}")))
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            from, 40000,
        ))));
    request
}

async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone().oneshot(request).await.unwrap()
}

fn retry_after(response: &Response<impl Sized>) -> u64 {
    response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn wrong_passwords_throttle_their_pair_but_the_owner_signs_in_from_a_clean_address() {
    let app = app(Arc::new(session_store_memory::MemoryStore::default()));
    let policy = demo::ThrottlePolicy::default();
    for i in 0..policy.per_pair {
        let response = send(&app, attempt("alice", "guess", [198, 51, 100, 7])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for password in ["guess", "wonderland"] {
        // Even the right password, from the guessing address: checking it
        // would keep the guessing going.
        let response = send(&app, attempt("Alice", password, [198, 51, 100, 7])).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        assert_secure_headers("the 429 page", &response);
        let wait = retry_after(&response);
        assert!(
            wait > 0 && wait <= policy.window.as_secs(),
            "Retry-After: {wait}"
        );
        assert!(text(response).await.contains("Too many wrong passwords"));
    }
    // The owner, from an address that has not failed for alice, signs in.
    let response = send(&app, attempt("alice", "wonderland", [203, 0, 113, 9])).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn one_address_guessing_many_names_loses_its_retries_not_its_first_tries() {
    let app = app(Arc::new(session_store_memory::MemoryStore::default()));
    let policy = demo::ThrottlePolicy::default();
    for i in 0..policy.per_address {
        let response = send(&app, attempt(&format!("user{i}"), "guess", [192, 0, 2, 66])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Past its limit, the address gets `per_pair_under_attack` tries per
    // name, not `per_pair`.
    for i in 1..policy.per_pair_under_attack {
        let response = send(&app, attempt("user0", "guess", [192, 0, 2, 66])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "retry {i}");
    }
    let response = send(&app, attempt("user0", "guess", [192, 0, 2, 66])).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // A name it never tried still gets checked: behind one shared address,
    // one guesser does not lock everyone else out.
    let response = send(&app, attempt("bob", "builder", [192, 0, 2, 66])).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

/// The demo on `127.0.0.1:<free port>`, served as `examples/login.rs`
/// serves it: with connect info, so the throttle sees client addresses.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

/// An HTTP client whose connections come from `from` (every 127.x.y.z
/// address is the loopback interface's on Linux).
fn client_from(from: Ipv4Addr) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(from.into()));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
}

/// `POST /login` over the socket; the status and `Retry-After`, if any.
async fn post_login(
    client: &Client,
    server: SocketAddr,
    user: &str,
    password: &str,
) -> (StatusCode, Option<u64>) {
    let request = Request::post(format!("http://{server}/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("username={user}&password={password}")))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let wait = response
        .headers()
        .contains_key(header::RETRY_AFTER)
        .then(|| retry_after(&response));
    (response.status(), wait)
}

/// Runs `count` logins at once over the socket; their answers.
async fn burst(
    client: &Client,
    server: SocketAddr,
    count: usize,
    credentials: impl Fn(usize) -> (String, &'static str),
) -> Vec<(StatusCode, Option<u64>)> {
    let logins: Vec<_> = (0..count)
        .map(|i| {
            let (user, password) = credentials(i);
            let client = client.clone();
            tokio::spawn(async move { post_login(&client, server, &user, password).await })
        })
        .collect();
    let all = async {
        let mut answers = Vec::new();
        for login in logins {
            answers.push(login.await.unwrap());
        }
        answers
    };
    // A bound on hanging, not a speed target: each answer takes one hash.
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("every login must be answered")
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_gets_at_most_five_checked_and_locks_no_one_else_out() {
    let server = serve(app(Arc::new(session_store_memory::MemoryStore::default()))).await;
    let attacker = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let answers = burst(&attacker, server, 40, |_| ("alice".into(), "guess")).await;
    let checked = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::TOO_MANY_REQUESTS)
        .count();
    let limit = demo::ThrottlePolicy::default().per_pair as usize;
    assert!(
        (1..=limit).contains(&checked),
        "{checked} of 40 parallel wrong passwords were not refused: {answers:?}"
    );
    // The guessing address is throttled, even with the right password...
    let (status, wait) = post_login(&attacker, server, "alice", "wonderland").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(wait.is_some_and(|wait| wait > 0));
    // ...and the owner, from another address, signs in.
    let owner = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let (status, _) = post_login(&owner, server, "alice", "wonderland").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn more_parallel_logins_than_the_hash_gate_holds_get_503_and_none_hang() {
    let server = serve(app(Arc::new(session_store_memory::MemoryStore::default()))).await;
    let gate = demo::HashGate::default();
    let count = gate.concurrent() + gate.queued() + 40;
    // Fresh names, so that the throttle lets every one through.
    let client = client_from(Ipv4Addr::new(127, 0, 1, 1));
    let answers = burst(&client, server, count, |i| (format!("user{i}"), "guess")).await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!busy.is_empty(), "no 503 among {count}: {answers:?}");
    assert!(busy.iter().all(|(_, wait)| *wait == Some(1)), "{busy:?}");
    assert!(
        answers.iter().all(|(status, _)| [
            StatusCode::UNAUTHORIZED,
            StatusCode::SERVICE_UNAVAILABLE
        ]
        .contains(status)),
        "{answers:?}"
    );
}

#[tokio::test]
async fn hashes_never_run_past_the_gate_s_bound() {
    let gate = Arc::new(demo::HashGate::new(2, 3));
    let limits = demo::LoginLimits {
        hashes: Arc::clone(&gate),
        ..demo::LoginLimits::default()
    };
    let app = demo::router_with_limits(
        SessionManager::new(session_store_memory::MemoryStore::default()),
        users(),
        CookieConfig::default(),
        limits,
    );
    let server = serve(app).await;
    let client = client_from(Ipv4Addr::new(127, 0, 1, 2));
    let answers = burst(&client, server, 30, |i| (format!("user{i}"), "guess")).await;
    let busy = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(busy > 0, "{answers:?}");
    // Two Argon2 runs of 19 MiB at most at any moment, however many came.
    assert!(
        (1..=2).contains(&gate.most_concurrent()),
        "{} hashes ran at once",
        gate.most_concurrent()
    );
}

#[tokio::test]
async fn overlong_fields_are_refused_before_any_work() {
    let app = app(Arc::new(session_store_memory::MemoryStore::default()));
    let from = [198, 51, 100, 40];
    let long_name = "a".repeat(demo::MAX_USERNAME_BYTES + 1);
    let long_password = "p".repeat(demo::MAX_PASSWORD_BYTES + 1);
    for _ in 0..10 {
        for (user, password) in [
            (long_name.as_str(), "guess"),
            ("alice", long_password.as_str()),
        ] {
            let response = send(&app, attempt(user, password, from)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert!(text(response).await.contains("at most"));
        }
    }
    // A body past the limit is not even read.
    let huge = "p".repeat(100_000);
    let response = send(&app, attempt("alice", &huge, from)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // None of them counted: the longest allowed password is checked, and
    // the right one signs in.
    let longest = "p".repeat(demo::MAX_PASSWORD_BYTES);
    let response = send(&app, attempt("alice", &longest, from)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = send(&app, attempt("alice", "wonderland", from)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_cross_site_login_form_is_refused_with_403() {
    let app = app(Arc::new(session_store_memory::MemoryStore::default()));
    let mut request = attempt("alice", "wonderland", [198, 51, 100, 2]);
    let headers = request.headers_mut();
    headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    // The same form from the demo's own page signs in.
    let mut request = attempt("alice", "wonderland", [198, 51, 100, 2]);
    request
        .headers_mut()
        .insert("sec-fetch-site", "same-origin".parse().unwrap());
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}
