//! The seed article's login and logout walk-throughs, step by step, over
//! HTTP (through the router, no sockets), on each store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use examples::demo::{self, Users};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use session_core::{Record, SessionId, SessionManager, SessionStore, StorageKey, Timestamp};
use session_tower::CookieConfig;
use tower::ServiceExt;

const COOKIE: &str = "session";

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
    assert!(cleared.starts_with("session=;"), "{cleared}");
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

#[tokio::test]
async fn wrong_passwords_for_one_name_get_429_with_retry_after_but_others_still_sign_in() {
    let app = app(Arc::new(session_store_memory::MemoryStore::default()));
    let limit = demo::ThrottlePolicy::default().per_user;
    for i in 0..limit {
        // From different addresses: the count is the name's.
        let response = app
            .clone()
            .oneshot(attempt("alice", "guess", [198, 51, 100, i as u8]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for password in ["guess", "wonderland"] {
        // Even the right password: checking it would keep the guessing going.
        let response = app
            .clone()
            .oneshot(attempt("Alice", password, [203, 0, 113, 9]))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{password}"
        );
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        let wait: u64 = response.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let window = demo::ThrottlePolicy::default().window.as_secs();
        assert!(wait > 0 && wait <= window, "Retry-After: {wait}");
        assert!(text(response).await.contains("Too many wrong passwords"));
    }
    // Another user is not locked out.
    let response = app
        .clone()
        .oneshot(attempt("bob", "builder", [198, 51, 100, 1]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn one_address_guessing_many_names_gets_429() {
    let app = app(Arc::new(session_store_memory::MemoryStore::default()));
    let limit = demo::ThrottlePolicy::default().per_address;
    for i in 0..limit {
        let response = app
            .clone()
            .oneshot(attempt(&format!("user{i}"), "guess", [192, 0, 2, 66]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let response = app
        .clone()
        .oneshot(attempt("bob", "builder", [192, 0, 2, 66]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The same user from elsewhere signs in.
    let response = app
        .clone()
        .oneshot(attempt("bob", "builder", [192, 0, 2, 67]))
        .await
        .unwrap();
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
