//! The demo's HTML page.

use crate::app::Flash;

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

/// The page: user, counter, flashes, and forms for login, logout,
/// remember me and the counter.
pub fn render(user: Option<&str>, counter: u64, persistent: bool, flashes: &[Flash]) -> String {
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
        let html = render(Some("<b>\"x\"&'"), 3, true, &flashes);
        assert!(html.contains("&lt;b&gt;&quot;x&quot;&amp;&#39;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains(r#"<span id="counter">3</span>"#));
        assert!(html.contains(" checked>"));
    }
}
