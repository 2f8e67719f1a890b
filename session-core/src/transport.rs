//! How tokens travel: reading them from request headers, writing the
//! `Set-Cookie` or token header of the response.
//!
//! Plain strings in and out, so adapters convert their framework's header
//! types at the edge and the core depends on no HTTP crate.

use std::borrow::Cow;

use crate::config::{SameSite, SessionConfig, Transport};
use crate::error::SessionError;

/// Most tokens read for one session from one request (several cookies of one
/// name can arrive when paths or domains overlap).
const MAX_CANDIDATES: usize = 4;

/// A header for the adapter to add to the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    name: Cow<'static, str>,
    // Borrowed for the fixed values (`Vary`, `Cache-Control`), so adapters
    // that take `into_parts` copy nothing for them.
    value: Cow<'static, str>,
    if_absent: bool,
}

impl ResponseHeader {
    /// The header name (`set-cookie`, or the token header).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The header value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the adapter adds this header only when the response has no
    /// header of this name yet (`Cache-Control`: the handler's own wins).
    /// Other headers are appended.
    pub fn only_if_absent(&self) -> bool {
        self.if_absent
    }

    /// The name and value, moved out: static text stays borrowed, so an
    /// adapter can build its header types without copying it.
    pub fn into_parts(self) -> (Cow<'static, str>, Cow<'static, str>) {
        (self.name, self.value)
    }

    /// `Vary` naming what the session's token travels in: a response that
    /// depends on the session must not be served to another client by a
    /// cache.
    pub(crate) fn vary(config: &SessionConfig) -> Self {
        let value = match &config.transport {
            Transport::Cookie => Cow::Borrowed("Cookie"),
            Transport::Header(name) => Cow::Owned(name.clone()),
        };
        ResponseHeader {
            name: Cow::Borrowed("vary"),
            value,
            if_absent: false,
        }
    }

    /// `Cache-Control: private`, unless the handler chose its own.
    pub(crate) fn private_cache() -> Self {
        ResponseHeader {
            name: Cow::Borrowed("cache-control"),
            value: Cow::Borrowed("private"),
            if_absent: true,
        }
    }

    /// Carries a new or changed token.
    pub(crate) fn token(
        config: &SessionConfig,
        token: &str,
        persistent: bool,
        remaining: time::Duration,
    ) -> Result<Self, SessionError> {
        let header = match &config.transport {
            Transport::Cookie => ResponseHeader {
                name: Cow::Borrowed("set-cookie"),
                value: Cow::Owned(set_cookie(config, token, persistent.then_some(remaining))),
                if_absent: false,
            },
            Transport::Header(name) => ResponseHeader {
                name: Cow::Owned(name.clone()),
                value: Cow::Owned(token.to_owned()),
                if_absent: false,
            },
        };
        if header.value.len() > config.max_header_len {
            return Err(SessionError::CookieTooLarge {
                size: header.value.len(),
                limit: config.max_header_len,
            });
        }
        Ok(header)
    }

    /// Re-sends an unchanged token because the cookie's attributes changed
    /// (persistence, `Max-Age`); header transport has nothing to re-send.
    pub(crate) fn resend(
        config: &SessionConfig,
        token: &str,
        persistent: bool,
        remaining: time::Duration,
    ) -> Result<Option<Self>, SessionError> {
        match config.transport {
            Transport::Cookie => Self::token(config, token, persistent, remaining).map(Some),
            _ => Ok(None),
        }
    }

    /// Tells the client to drop its token.
    pub(crate) fn removal(config: &SessionConfig) -> Self {
        match &config.transport {
            Transport::Cookie => ResponseHeader {
                name: Cow::Borrowed("set-cookie"),
                value: Cow::Owned(set_cookie(config, "", Some(time::Duration::ZERO))),
                if_absent: false,
            },
            Transport::Header(name) => ResponseHeader {
                name: Cow::Owned(name.clone()),
                value: Cow::Borrowed(""),
                if_absent: false,
            },
        }
    }
}

fn set_cookie(config: &SessionConfig, value: &str, max_age: Option<time::Duration>) -> String {
    let mut cookie = cookie::Cookie::new(config.name.as_str(), value);
    let attributes = &config.cookie;
    cookie.set_path(attributes.path_value());
    if let Some(domain) = attributes.domain_value() {
        cookie.set_domain(domain);
    }
    cookie.set_http_only(attributes.is_http_only());
    cookie.set_secure(attributes.is_secure());
    cookie.set_same_site(match attributes.same_site_value() {
        SameSite::Strict => cookie::SameSite::Strict,
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::None => cookie::SameSite::None,
    });
    if let Some(max_age) = max_age {
        let max_age = time::Duration::seconds(max_age.whole_seconds().max(0));
        cookie.set_max_age(max_age);
        if max_age.is_zero() {
            cookie.set_expires(time::OffsetDateTime::UNIX_EPOCH);
        }
    }
    // Room for the attributes up front: `to_string` would grow the text
    // several times for a cookie session's token.
    let mut text = String::with_capacity(config.name.len() + value.len() + 160);
    std::fmt::Write::write_fmt(&mut text, format_args!("{cookie}"))
        .expect("writing to a String cannot fail");
    text
}

/// Tokens for each configured session (anything that holds its
/// configuration) found in the request headers.
pub(crate) fn read_tokens<'a, C: AsRef<SessionConfig>>(
    configs: &[std::sync::Arc<C>],
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<Vec<String>> {
    let configs = || configs.iter().map(|c| (**c).as_ref());
    let mut found: Vec<Vec<String>> = vec![Vec::new(); configs().len()];
    for (name, value) in headers {
        let is_cookie = name.eq_ignore_ascii_case("cookie");
        // Only the headers that can carry a token are decoded; a browser
        // sends a dozen others on every request.
        let carries_token = is_cookie
            || configs().any(|config| {
                matches!(&config.transport, Transport::Header(header) if header.eq_ignore_ascii_case(name))
            });
        if !carries_token {
            continue;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        if is_cookie {
            for pair in value.split(';') {
                let Some((cookie_name, cookie_value)) = pair.split_once('=') else {
                    continue;
                };
                let cookie_name = cookie_name.trim();
                let cookie_value = cookie_value.trim().trim_matches('"');
                for (config, tokens) in configs().zip(found.iter_mut()) {
                    if config.transport == Transport::Cookie
                        && config.name == cookie_name
                        && !cookie_value.is_empty()
                        && tokens.len() < MAX_CANDIDATES
                    {
                        tokens.push(cookie_value.to_owned());
                    }
                }
            }
        } else {
            for (config, tokens) in configs().zip(found.iter_mut()) {
                if let Transport::Header(header) = &config.transport {
                    let value = value.trim();
                    if header.eq_ignore_ascii_case(name)
                        && !value.is_empty()
                        && tokens.len() < MAX_CANDIDATES
                    {
                        tokens.push(value.to_owned());
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{CookieAttributes, KeyRing};

    fn config() -> SessionConfig {
        SessionConfig::cookie(KeyRing::from_secret(&crate::keys::test_secret(1)).unwrap())
    }

    #[test]
    fn cookie_attributes() {
        let c = config();
        let h = ResponseHeader::token(&c, "tok", false, time::Duration::HOUR).unwrap();
        assert_eq!(h.name(), "set-cookie");
        assert_eq!(h.value(), "sid=tok; HttpOnly; SameSite=Lax; Secure; Path=/");
        let h = ResponseHeader::token(
            &c.cookie_attributes(CookieAttributes::default().secure(false)),
            "tok",
            true,
            time::Duration::HOUR,
        )
        .unwrap();
        assert_eq!(
            h.value(),
            "sid=tok; HttpOnly; SameSite=Lax; Path=/; Max-Age=3600"
        );
    }

    #[test]
    fn removal_cookie_expires_now() {
        let h = ResponseHeader::removal(
            &config().cookie_attributes(CookieAttributes::default().secure(false)),
        );
        assert!(h.value().starts_with("sid=; "), "{}", h.value());
        assert!(h.value().contains("Max-Age=0"));
        assert!(h.value().contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"));
    }

    #[test]
    fn oversized_cookie_refused() {
        let big = "a".repeat(4090);
        let err = ResponseHeader::token(&config(), &big, false, time::Duration::HOUR).unwrap_err();
        assert!(matches!(
            err,
            SessionError::CookieTooLarge { limit: 4096, .. }
        ));
    }

    #[test]
    fn reads_cookies_and_headers() {
        let configs = vec![
            Arc::new(config()),
            Arc::new(
                config()
                    .name("api")
                    .transport(Transport::header("X-Session-Token")),
            ),
        ];
        let headers: Vec<(&str, &[u8])> = vec![
            ("Cookie", b"a=1; sid=first; b=2".as_slice()),
            ("cookie", b"sid=\"second\"; sid=".as_slice()),
            ("x-session-token", b" tok ".as_slice()),
            ("cookie", b"\xff\xfe".as_slice()),
            ("cookie", b"garbage;;; =; sid".as_slice()),
        ];
        let found = read_tokens(&configs, headers);
        assert_eq!(found[0], vec!["first", "second"]);
        assert_eq!(found[1], vec!["tok"]);
    }

    #[test]
    fn candidates_are_bounded() {
        let configs = vec![Arc::new(config())];
        let header = "sid=x; ".repeat(100);
        let found = read_tokens(&configs, [("cookie", header.as_bytes())]);
        assert_eq!(found[0].len(), MAX_CANDIDATES);
    }
}
