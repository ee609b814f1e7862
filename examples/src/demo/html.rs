//! The demo's pages: plain, tidy HTML, no JavaScript.

use session_core::{ExpiryPolicy, Record, StorageKey, Timestamp};

use super::users::{MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES};

/// The demo's stylesheet, served at `/style.css` (the content security
/// policy allows no inline styles).
pub(crate) const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.6rem}form.inline{display:inline}label{display:block;margin:.6rem 0 .2rem}\
input[type=text],input[type=password]{padding:.4rem;width:16rem}\
button{padding:.35rem .9rem;margin:.3rem .3rem .3rem 0;cursor:pointer}\
table{border-collapse:collapse;width:100%;margin:1rem 0}td.t,td.b{white-space:nowrap}th,td{text-align:left;padding:.45rem;border-bottom:1px solid #ddd;vertical-align:top}\
.note{color:#666;font-size:.9rem}.error{color:#b00020}.this{font-weight:600;color:#0a6}nav a{margin-right:1rem}";

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title}</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body>{body}</body></html>",
        title = escape(title)
    )
}

fn nav() -> &'static str {
    "<nav><a href=\"/members\">Members</a><a href=\"/sessions\">Active sessions</a>\
<form class=\"inline\" method=\"post\" action=\"/logout\"><button id=\"logout\">Log out</button></form></nav>"
}

/// The login form, with an optional error, or a note when already signed in.
pub(crate) fn login(signed_in_as: Option<&str>, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(user) = signed_in_as {
        body.push_str(&format!(
            "<p>You are signed in as <b>{}</b>. <a href=\"/members\">Go to the members page</a>.</p>",
            escape(user)
        ));
    }
    if let Some(error) = error {
        body.push_str(&format!(
            "<p class=\"error\" id=\"error\">{}</p>",
            escape(error)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/login\">\
<label for=\"username\">User name</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" maxlength=\"{MAX_USERNAME_BYTES}\" required>\
<label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" maxlength=\"{MAX_PASSWORD_BYTES}\" required>\
<p><button type=\"submit\" id=\"submit\">Sign in</button></p></form>\
<p class=\"note\">Demo accounts: alice / wonderland, bob / builder.</p>"
    ));
    page("Sign in", &body)
}

/// The members-only page.
pub(crate) fn members(user: &str, since: Option<Timestamp>) -> String {
    let since = since.map(format_time).unwrap_or_else(|| "-".into());
    page(
        "Members",
        &format!(
            "{}<h1 id=\"welcome\">Welcome, {}</h1><p>This page is only for signed-in members. \
Your browser holds nothing but an opaque, HttpOnly session id; everything else lives on the server.</p>\
<p class=\"note\">Signed in at {since}.</p>",
            nav(),
            escape(user)
        ),
    )
}

/// The active-sessions page.
pub(crate) fn sessions(
    user: &str,
    records: &[Record],
    current: Option<StorageKey>,
    policy: &ExpiryPolicy,
) -> String {
    let now = Timestamp::now();
    let mut rows = String::new();
    for record in records {
        let device = record
            .data
            .get("device")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown device");
        let this = Some(record.key) == current;
        let marker = if this {
            " <span class=\"this\">(this session)</span>"
        } else {
            ""
        };
        rows.push_str(&format!(
            "<tr><td>{}{marker}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td>\
<td class=\"b\"><form class=\"inline\" method=\"post\" action=\"/sessions/revoke\">\
<input type=\"hidden\" name=\"key\" value=\"{}\"><button>Log out</button></form></td></tr>",
            escape(device),
            format_time(record.created_at),
            last_seen(record, policy, now),
            format_time(record.expires_at),
            record.key.to_hex(),
        ));
    }
    page(
        "Active sessions",
        &format!(
            "{}<h1>Active sessions of {}</h1>\
<table id=\"sessions\"><thead><tr><th>Device</th><th>Signed in</th><th>Last seen</th><th>Expires</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table>\
<form class=\"inline\" method=\"post\" action=\"/logout-others\"><button id=\"logout-others\">Log out everywhere else</button></form>\
<form class=\"inline\" method=\"post\" action=\"/logout-everywhere\"><button id=\"logout-everywhere\">Log out everywhere</button></form>\
<p class=\"note\">Times are UTC. “Last seen” is exact to the session's touch step ({} s).</p>",
            nav(),
            escape(user),
            policy.touch_step().as_secs(),
        ),
    )
}

/// When the session was last active: its expiry minus the idle timeout,
/// unless the absolute deadline capped the expiry (then unknown, shown as
/// "recently").
fn last_seen(record: &Record, policy: &ExpiryPolicy, now: Timestamp) -> String {
    if record.expires_at >= policy.absolute_deadline(record.created_at) {
        return "recently".into();
    }
    let seen = record.expires_at.saturating_sub(policy.idle()).min(now);
    let ago = now.duration_since(seen).as_secs();
    match ago {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", ago / 60),
        _ => format!("{} h ago", ago / 3600),
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub(crate) fn format_time(t: Timestamp) -> String {
    let secs = t.as_millis().div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_time(Timestamp::from_millis(0)), "1970-01-01 00:00");
        assert_eq!(
            format_time(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29 00:00"
        );
        assert_eq!(
            format_time(Timestamp::from_millis(1_795_675_150_148)),
            "2026-11-26 06:39"
        );
    }
}
