//! The login demo: the seed article's login and logout flows as a small
//! axum app, on any session store.
//!
//! Routes (plain HTML forms, no JavaScript):
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | redirects to `/members` when signed in, else to `/login` |
//! | `GET /login` | the login form |
//! | `POST /login` | form fields `username`, `password`; on success binds the user, **rotates the session id**, and redirects (303) to `/members`; wrong credentials answer 401 with the form (see below for 400, 413, 429 and 503) |
//! | `GET /members` | the members page; without a live session, a redirect (303) to `/login` |
//! | `GET /sessions` | the signed-in user's active sessions (device, created, last seen) |
//! | `POST /sessions/revoke` | form field `key`: log out that one session of yours |
//! | `POST /logout` | deletes the server record and overwrites the cookie (`Max-Age=0`) |
//! | `POST /logout-others` | logs out every other session of the user, keeps this one |
//! | `POST /logout-everywhere` | logs out every session of the user, this one too |
//! | `GET /style.css` | the pages' stylesheet |
//!
//! Passwords are kept only as Argon2 hashes ([`Users`]). Cross-site
//! form posts (a forged login, say) are refused with 403 by
//! `session_tower::CrossSiteGuard`, which `SessionLayer` applies by
//! default. Every response is `Cache-Control: no-store` and carries a
//! content security policy that forbids framing ([`headers`]).
//!
//! A login attempt goes through, in order:
//!
//! 1. **Size.** Request bodies over 16 KiB get 413; a user name over
//!    [`MAX_USERNAME_BYTES`] or a password over [`MAX_PASSWORD_BYTES`]
//!    gets 400. Neither is counted or hashed.
//! 2. **Throttle** ([`throttle`]): too many wrong passwords for this name
//!    from this client address get 429 with `Retry-After`. A correct
//!    password from an address that has not failed for the name is never
//!    refused, so no one can lock a user out. The attempt is counted here,
//!    before its hash runs, so a burst cannot slip through while hashes
//!    run.
//! 3. **Hash gate** ([`gate`]): at most a few Argon2 hashes (19 MiB each)
//!    run at once and a few more wait; beyond that, 503 with
//!    `Retry-After`, uncounted.
//! 4. **Password check**: 401, or the signed-in session.

pub mod gate;
pub mod headers;
mod html;
pub mod throttle;
mod users;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use session_core::{Error, SessionManager, SessionStore, StorageKey, Timestamp};
use session_tower::{CookieConfig, Session, SessionError, SessionLayer};

pub use gate::HashGate;
pub use throttle::{LoginThrottle, Refusal, ThrottlePolicy};
pub use users::{DEMO_USERS, MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES, Users};

/// The largest request body the demo reads (its biggest form, a login
/// with the longest name and password, percent-encoded, is under 4 KiB).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Which store the demo keeps its sessions in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// In process memory (the default): sessions end with the process.
    Memory,
    /// An SQLite file at this path (created if missing).
    Sqlite(PathBuf),
    /// A Redis server at this URL (`redis://…`, `rediss://…`, `unix://…`).
    Redis(String),
    /// A PostgreSQL database at this URL (`postgres://…`,
    /// `postgresql://…`); the sessions table is installed if missing.
    Postgres(String),
}

impl StoreChoice {
    /// Parses `--store` values: `memory`, `sqlite:PATH`, a Redis URL or a
    /// PostgreSQL URL.
    ///
    /// ```
    /// use examples::demo::StoreChoice;
    ///
    /// assert_eq!(StoreChoice::parse("memory"), Ok(StoreChoice::Memory));
    /// assert_eq!(StoreChoice::parse("sqlite:/tmp/s.db"), Ok(StoreChoice::Sqlite("/tmp/s.db".into())));
    /// assert!(StoreChoice::parse("redis://127.0.0.1:6379/").is_ok());
    /// assert_eq!(
    ///     StoreChoice::parse("postgres://postgres@localhost/test"),
    ///     Ok(StoreChoice::Postgres("postgres://postgres@localhost/test".into()))
    /// );
    /// assert!(StoreChoice::parse("mongodb://x").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "memory" {
            Ok(Self::Memory)
        } else if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                Err("--store sqlite:PATH needs a path".into())
            } else {
                Ok(Self::Sqlite(PathBuf::from(path)))
            }
        } else if ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|scheme| text.starts_with(scheme))
        {
            Ok(Self::Redis(text.to_owned()))
        } else if ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| text.starts_with(scheme))
        {
            Ok(Self::Postgres(text.to_owned()))
        } else {
            Err(format!(
                "unknown store {text:?}: use `memory`, `sqlite:PATH`, a redis:// URL or a \
                 postgres:// URL"
            ))
        }
    }

    /// Opens the chosen store.
    ///
    /// # Errors
    ///
    /// The store's error when it cannot be opened or reached.
    pub async fn open(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(match self {
            Self::Memory => Arc::new(session_store_memory::MemoryStore::default()),
            Self::Sqlite(path) => Arc::new(session_store_sqlite::SqliteStore::open(path).await?),
            Self::Redis(url) => Arc::new(
                session_store_redis::RedisStore::builder(url.as_str())
                    .prefix("demo:session:")
                    .connect()
                    .await?,
            ),
            Self::Postgres(url) => Arc::new(
                session_store_postgres::PostgresOptions::new(url.as_str())
                    .migrate(true)
                    .connect()
                    .await?,
            ),
        })
    }
}

/// The demo's defences against password guessing and login floods,
/// shared by every request of one app.
#[derive(Debug, Clone, Default)]
pub struct LoginLimits {
    /// Counts wrong passwords and decides who may try ([`throttle`]).
    pub throttle: Arc<LoginThrottle>,
    /// Bounds the password hashes running and waiting ([`gate`]).
    pub hashes: Arc<HashGate>,
}

#[derive(Clone)]
struct App {
    manager: SessionManager,
    users: Arc<Users>,
    limits: LoginLimits,
}

/// The demo's router over `manager`, with sessions cookies as `cookie`
/// says, and the default [`LoginLimits`].
pub fn router(manager: SessionManager, users: Arc<Users>, cookie: CookieConfig) -> Router {
    router_with_limits(manager, users, cookie, LoginLimits::default())
}

/// Like [`router`], with `limits`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the
/// throttle tells clients apart by address (without, all clients count as
/// one address, as behind a proxy: see [`throttle`]).
pub fn router_with_limits(
    manager: SessionManager,
    users: Arc<Users>,
    cookie: CookieConfig,
    limits: LoginLimits,
) -> Router {
    let layer = SessionLayer::new(manager.clone()).with_cookie(cookie);
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/members", get(members))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke))
        .route("/logout", post(logout))
        .route("/logout-others", post(logout_others))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(layer)
        // Outside the session layer: the stylesheet needs no session.
        .route("/style.css", get(stylesheet))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(headers::secure))
        .with_state(App {
            manager,
            users,
            limits,
        })
}

type Page = Result<Response, SessionError>;

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

async fn index(session: Session) -> Page {
    Ok(match session.user().await? {
        Some(_) => see_other("/members"),
        None => see_other("/login"),
    })
}

async fn login_form(session: Session) -> Page {
    let user = session.user().await?;
    Ok(Html(html::login(user.as_deref(), None)).into_response())
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        html::STYLE,
    )
        .into_response()
}

/// The login form's fields.
#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// The client's address, when the server was started with connect info
/// (behind a reverse proxy this is the proxy's: count by a trusted
/// forwarded header there instead).
struct ClientAddr(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

async fn login(
    State(app): State<App>,
    ClientAddr(address): ClientAddr,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Page {
    if form.username.len() > MAX_USERNAME_BYTES || form.password.len() > MAX_PASSWORD_BYTES {
        let page = html::login(
            None,
            Some(&format!(
                "User names have at most {MAX_USERNAME_BYTES} bytes, passwords at most \
                 {MAX_PASSWORD_BYTES}."
            )),
        );
        return Ok((StatusCode::BAD_REQUEST, Html(page)).into_response());
    }
    // Checked and counted before the (deliberately slow) hash runs, and
    // only with a place to run it in.
    let hashes = &app.limits.hashes;
    let began = app
        .limits
        .throttle
        .begin(&form.username, address, Instant::now(), || {
            hashes.try_enter()
        });
    let (ticket, admission) = match began {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refused(refusal)),
    };
    if !app
        .users
        .verify(admission, &form.username, &form.password)
        .await
    {
        drop(ticket); // stays counted as a wrong password
        let page = html::login(None, Some("Wrong user name or password."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    app.limits.throttle.succeeded(ticket);
    // Bind the user and move to a fresh id: a session id planted before
    // login (fixation) is worthless afterwards.
    session.login(form.username.clone()).await?;
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown device");
    session
        .insert("device", agent.chars().take(200).collect::<String>())
        .await?;
    session
        .insert("signed_in_at", Timestamp::now().as_millis())
        .await?;
    Ok(see_other("/members"))
}

/// The answer to a login attempt the throttle or the hash gate refused.
fn refused(refusal: Refusal) -> Response {
    let (status, wait, message) = match refusal {
        Refusal::Throttled(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            wait,
            "Too many wrong passwords from here.",
        ),
        Refusal::Full(wait) => (
            StatusCode::SERVICE_UNAVAILABLE,
            wait,
            "Too many sign-in attempts right now.",
        ),
        Refusal::NotAdmitted => (
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(1),
            "The server is busy checking other sign-ins.",
        ),
    };
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let when = match secs {
        0..=59 => format!("{secs} second{}", if secs == 1 { "" } else { "s" }),
        _ => {
            let minutes = secs.div_ceil(60);
            format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
        }
    };
    let page = html::login(None, Some(&format!("{message} Try again in {when}.")));
    (
        status,
        [(header::RETRY_AFTER, secs.to_string())],
        Html(page),
    )
        .into_response()
}

async fn members(session: Session) -> Page {
    let Some(user) = session.user().await? else {
        return Ok(see_other("/login"));
    };
    let since = session.get::<i64>("signed_in_at").await?;
    Ok(Html(html::members(&user, since.map(Timestamp::from_millis))).into_response())
}

async fn sessions(State(app): State<App>, session: Session) -> Page {
    let Some(user) = session.user().await? else {
        return Ok(see_other("/login"));
    };
    let current = session.storage_key().await;
    let listed = app.manager.sessions_of(&user).await?;
    if !listed.unreadable.is_empty() {
        // Still listed under this user; "log out everywhere" removes them.
        tracing::warn!(
            count = listed.unreadable.len(),
            "sessions that cannot be read were skipped"
        );
    }
    let mut records = listed.records;
    records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let policy = *app.manager.config().expiry();
    Ok(Html(html::sessions(&user, &records, current, &policy)).into_response())
}

/// The "log out this session" form.
#[derive(Deserialize)]
struct Revoke {
    key: String,
}

async fn revoke(State(app): State<App>, session: Session, Form(form): Form<Revoke>) -> Page {
    let Some(user) = session.user().await? else {
        return Ok(see_other("/login"));
    };
    if let Ok(key) = StorageKey::from_hex(&form.key) {
        if Some(key) == session.storage_key().await {
            session.logout().await;
            return Ok(see_other("/login"));
        }
        // Only ever a session of the signed-in user.
        app.manager.logout_session(&user, &key).await?;
    }
    Ok(see_other("/sessions"))
}

async fn logout(session: Session) -> Response {
    // The record goes now; the layer answers with `Max-Age=0`.
    session.logout().await;
    see_other("/login")
}

async fn logout_others(State(app): State<App>, session: Session) -> Page {
    let Some(user) = session.user().await? else {
        return Ok(see_other("/login"));
    };
    let current = session.storage_key().await;
    let listed = app.manager.sessions_of(&user).await?;
    for record in listed.records {
        if Some(record.key) != current {
            app.manager.logout_session(&user, &record.key).await?;
        }
    }
    // Unreadable sessions the store lists under this user go too.
    for key in listed.unreadable {
        app.manager.store().delete(&key).await?;
    }
    Ok(see_other("/sessions"))
}

async fn logout_everywhere(State(app): State<App>, session: Session) -> Page {
    if let Some(user) = session.user().await? {
        app.manager.logout_everywhere(&user).await?;
    }
    session.logout().await;
    Ok(see_other("/login"))
}
