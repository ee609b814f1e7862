//! The login demo: the seed article's login and logout flows as a small
//! axum app, on any session store.
//!
//! Routes (plain HTML forms, no JavaScript):
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | redirects to `/members` when signed in, else to `/login` |
//! | `GET /login` | the login form |
//! | `POST /login` | form fields `username`, `password`; on success binds the user, **rotates the session id**, and redirects (303) to `/members`; wrong credentials answer 401 with the form; too many wrong passwords for one user name or from one address answer 429 with `Retry-After` ([`throttle`]) |
//! | `GET /members` | the members page; without a live session, a redirect (303) to `/login` |
//! | `GET /sessions` | the signed-in user's active sessions (device, created, last seen) |
//! | `POST /sessions/revoke` | form field `key`: log out that one session of yours |
//! | `POST /logout` | deletes the server record and overwrites the cookie (`Max-Age=0`) |
//! | `POST /logout-others` | logs out every other session of the user, keeps this one |
//! | `POST /logout-everywhere` | logs out every session of the user, this one too |
//!
//! Passwords are kept only as Argon2 hashes ([`Users`]). Cross-site
//! form posts (a forged login, say) are refused with 403 by
//! `session_tower::CrossSiteGuard`, which `SessionLayer` applies by
//! default.

mod html;
pub mod throttle;
mod users;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use session_core::{Error, SessionManager, SessionStore, StorageKey, Timestamp};
use session_tower::{CookieConfig, Session, SessionError, SessionLayer};

pub use throttle::{LoginThrottle, ThrottlePolicy};
pub use users::{DEMO_USERS, Users};

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

#[derive(Clone)]
struct App {
    manager: SessionManager,
    users: Arc<Users>,
    throttle: Arc<LoginThrottle>,
}

/// The demo's router over `manager`, with sessions cookies as `cookie`
/// says, and login throttling by the default [`ThrottlePolicy`].
pub fn router(manager: SessionManager, users: Arc<Users>, cookie: CookieConfig) -> Router {
    router_with_throttle(manager, users, cookie, Arc::new(LoginThrottle::default()))
}

/// Like [`router`], with the login throttle `throttle`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that failed
/// logins are counted per client address too (without, only per user
/// name).
pub fn router_with_throttle(
    manager: SessionManager,
    users: Arc<Users>,
    cookie: CookieConfig,
    throttle: Arc<LoginThrottle>,
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
        .with_state(App {
            manager,
            users,
            throttle,
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
    // Checked before the (deliberately slow) password hash runs.
    if let Err(wait) = app.throttle.check(&form.username, address, Instant::now()) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let minutes = secs.div_ceil(60);
        let page = html::login(
            None,
            Some(&format!(
                "Too many wrong passwords. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            )),
        );
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            Html(page),
        )
            .into_response());
    }
    if !app.users.verify(&form.username, &form.password).await {
        app.throttle.failed(&form.username, address, Instant::now());
        let page = html::login(None, Some("Wrong user name or password."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    app.throttle.succeeded(&form.username);
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
