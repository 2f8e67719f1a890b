//! The demo's HTML page.

use crate::app::{Flash, ListedSession};

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(text: &str) -> String {
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

/// What the page shows.
#[derive(Debug, Default)]
pub struct PageData<'a> {
    /// The signed-in user.
    pub user: Option<&'a str>,
    /// The counter.
    pub counter: u64,
    /// Remember me.
    pub persistent: bool,
    /// Flashes (consumed by this page).
    pub flashes: &'a [Flash],
    /// The user's sessions, when signed in.
    pub sessions: &'a [ListedSession],
}

fn sessions_html(sessions: &[ListedSession]) -> String {
    let rows: String = sessions
        .iter()
        .map(|s| {
            let this = if s.current {
                r#" <strong class="this-device">(this device)</strong>"#
            } else {
                ""
            };
            format!(
                r#"<li class="user-session" data-id="{id}"><span class="user-agent">{agent}</span>{this} <span class="last-seen" data-unix="{seen}"></span> <button class="end-session" type="button" data-id="{id}">End</button></li>"#,
                id = escape(&s.id),
                agent = escape(s.user_agent.as_deref().unwrap_or("unknown device")),
                seen = s.last_seen,
            )
        })
        .collect();
    format!(
        r#"<h2>Your sessions</h2>
<ul id="sessions">{rows}</ul>
<p><button id="revoke-others" type="button">Sign out everywhere else</button> <button id="logout-everywhere" type="button">Sign out everywhere</button></p>"#
    )
}

/// The page: user, counter, flashes, forms for login, logout, remember me
/// and the counter, and when signed in the user's sessions.
pub fn render(data: &PageData<'_>) -> String {
    let PageData {
        user,
        counter,
        persistent,
        flashes,
        sessions,
    } = *data;
    let sessions_html = if user.is_some() {
        sessions_html(sessions)
    } else {
        String::new()
    };
    let user_html = match user {
        Some(u) => format!(
            r#"<p>Signed in as <strong id="user">{}</strong></p>"#,
            escape(u)
        ),
        None => r#"<p id="anonymous">Not signed in.</p>"#.to_owned(),
    };
    let flash_html: String = flashes
        .iter()
        .map(|f| {
            format!(
                r#"<li class="flash {kind}" data-kind="{kind}">{message}</li>"#,
                kind = escape(&f.kind),
                message = escape(&f.message)
            )
        })
        .collect();
    let checked = if persistent { " checked" } else { "" };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Session demo</title>
<style>body {{ font-family: sans-serif; max-width: 40em; margin: 2em auto; }} .flash {{ padding: .3em; background: #eef; }}</style>
</head>
<body>
<h1>Session demo</h1>
<ul id="flashes">{flash_html}</ul>
{user_html}
<p>Counter: <span id="counter">{counter}</span> <button id="counter-button" type="button">Count</button></p>
<form id="login-form">
  <label>User <input id="login-user" name="user" required></label>
  <button id="login-button" type="submit">Log in</button>
</form>
<p><label><input id="remember" type="checkbox"{checked}> Remember me</label></p>
<p><button id="logout-button" type="button">Log out</button></p>
{sessions_html}
<script>
async function send(method, url, body) {{
  const options = {{ method, headers: {{ "content-type": "application/json" }} }};
  if (body !== undefined) options.body = JSON.stringify(body);
  return fetch(url, options);
}}
document.getElementById("counter-button").addEventListener("click", async () => {{
  const response = await send("GET", "/counter");
  const data = await response.json();
  document.getElementById("counter").textContent = data.n;
}});
document.getElementById("login-form").addEventListener("submit", async (event) => {{
  event.preventDefault();
  await send("POST", "/login", {{ user: document.getElementById("login-user").value }});
  location.reload();
}});
document.getElementById("remember").addEventListener("change", async (event) => {{
  await send("POST", "/remember", {{ persistent: event.target.checked }});
  location.reload();
}});
document.getElementById("logout-button").addEventListener("click", async () => {{
  await send("POST", "/logout");
  location.reload();
}});
for (const seen of document.querySelectorAll(".last-seen")) {{
  seen.textContent = "last seen " + new Date(Number(seen.dataset.unix) * 1000).toLocaleString();
}}
for (const button of document.querySelectorAll(".end-session")) {{
  button.addEventListener("click", async () => {{
    await send("DELETE", "/sessions/" + encodeURIComponent(button.dataset.id));
    location.reload();
  }});
}}
const others = document.getElementById("revoke-others");
if (others) others.addEventListener("click", async () => {{
  await send("POST", "/sessions/revoke-others");
  location.reload();
}});
const everywhere = document.getElementById("logout-everywhere");
if (everywhere) everywhere.addEventListener("click", async () => {{
  await send("POST", "/logout-everywhere");
  location.reload();
}});
</script>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_content_is_escaped() {
        let flashes = [Flash {
            kind: "info".into(),
            message: "<script>alert(1)</script>".into(),
        }];
        let sessions = [ListedSession {
            id: "h".into(),
            current: true,
            created: 1,
            last_seen: 2,
            user_agent: Some("<i>agent</i>".into()),
        }];
        let html = render(&PageData {
            user: Some("<b>\"x\"&'"),
            counter: 3,
            persistent: true,
            flashes: &flashes,
            sessions: &sessions,
        });
        assert!(html.contains("&lt;i&gt;agent&lt;/i&gt;"));
        assert!(html.contains("this device"));
        assert!(html.contains("&lt;b&gt;&quot;x&quot;&amp;&#39;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains(r#"<span id="counter">3</span>"#));
        assert!(html.contains(" checked>"));
    }
}
