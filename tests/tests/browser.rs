//! The demo page in a real browser: headless Chromium driven through
//! chromedriver (WebDriver), once per framework. Needs the Debian packages
//! `chromium` and `chromium-driver` (`.ci/run` installs them); without them
//! this test fails, it does not skip.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use session_tests::{Framework, Setup};

fn tool(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} not found: install the Debian packages chromium and chromium-driver (or set {var})"
    );
    path
}

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver() -> Driver {
    let binary = tool("SESSION_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let chromium = tool("SESSION_TEST_CHROMIUM", "/usr/bin/chromium");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("WebDriver session")
}

/// The text of the element `css`. The page re-renders parts of itself after
/// each action, so an element found a moment ago may be replaced before its
/// text is read ("node does not belong to the document"): find it again.
async fn text(client: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let element = client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .expect(css);
        match element.text().await {
            Ok(text) => return text,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{css} was replaced while read ({e}); reading it again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("text of {css}: {e}"),
        }
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The texts of the elements `css` (a list), read again if the list is
/// re-rendered meanwhile (see [`text`]).
async fn texts(client: &Client, css: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    'read: loop {
        let mut out = Vec::new();
        for li in client.find_all(Locator::Css(css)).await.expect(css) {
            match li.text().await {
                Ok(text) => out.push(text),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{css} was replaced while read ({e}); reading it again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'read;
                }
                Err(e) => panic!("text of {css}: {e}"),
            }
        }
        return out;
    }
}

async fn flashes(client: &Client) -> Vec<String> {
    texts(client, "#flashes li").await
}

async fn sessions(client: &Client) -> Vec<String> {
    texts(client, "#sessions li").await
}

async fn drive(framework: Framework, driver: &Driver) {
    let server = Setup::new(framework, "memory", "cookie").start(&[]);
    let profile = std::env::temp_dir().join(format!(
        "chromium-profile-{}-{framework:?}",
        std::process::id()
    ));
    let client = browser(driver, &profile).await;
    client
        .goto(&format!("{}/", server.base))
        .await
        .expect("open page");
    client
        .wait()
        .for_element(Locator::Css("#anonymous"))
        .await
        .expect("anonymous at first");

    // Log in through the form: the page reloads greeting the user once.
    client
        .find(Locator::Css("#login-user"))
        .await
        .unwrap()
        .send_keys("ada")
        .await
        .unwrap();
    client
        .find(Locator::Css("#login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&client, "#user").await, "ada", "{framework:?}");
    assert_eq!(flashes(&client).await, ["welcome ada"], "{framework:?}");
    client.refresh().await.unwrap();
    assert_eq!(text(&client, "#user").await, "ada");
    assert!(
        flashes(&client).await.is_empty(),
        "{framework:?}: the flash shows once"
    );

    // The counter button calls /counter and shows the new value.
    let start: u64 = text(&client, "#counter").await.parse().unwrap();
    for expected in [start + 1, start + 2] {
        client
            .find(Locator::Css("#counter-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        eventually("the counter to rise", || async {
            text(&client, "#counter").await == expected.to_string()
        })
        .await;
    }

    // A session cookie without expiry, then a persistent one after "remember me".
    let cookie = client.get_named_cookie("sid").await.expect("sid cookie");
    assert!(
        cookie.expires().is_none(),
        "{framework:?}: browser-session cookie first"
    );
    assert_eq!(cookie.http_only(), Some(true));
    client
        .find(Locator::Css("#remember"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("a persistent cookie", || async {
        client
            .get_named_cookie("sid")
            .await
            .is_ok_and(|c| c.expires().is_some())
    })
    .await;
    assert_eq!(text(&client, "#user").await, "ada");

    // The user's sessions: this one marked, another device's ended with its
    // button, then every other one with "sign out everywhere else".
    let other = server.client_as("other-device/1.0");
    other
        .post("/login", serde_json::json!({"user": "ada"}))
        .await;
    client.refresh().await.unwrap();
    eventually("both sessions listed", || async {
        sessions(&client).await.len() == 2
    })
    .await;
    let listed = sessions(&client).await;
    assert!(
        listed.iter().any(|s| s.contains("this device")),
        "{framework:?}: {listed:?}"
    );
    assert!(listed.iter().any(|s| s.contains("other-device/1.0")));
    client
        .find(Locator::Css(
            ".user-session:not(:has(.this-device)) .end-session",
        ))
        .await
        .expect("the other device's end button")
        .click()
        .await
        .unwrap();
    eventually("the other session ended", || async {
        sessions(&client).await.len() == 1
    })
    .await;
    assert_eq!(other.get("/whoami").await.status, 401, "{framework:?}");
    other
        .post("/login", serde_json::json!({"user": "ada"}))
        .await;
    client.refresh().await.unwrap();
    eventually("the new sign-in listed", || async {
        sessions(&client).await.len() == 2
    })
    .await;
    client
        .find(Locator::Css("#revoke-others"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("only this device left", || async {
        sessions(&client).await.len() == 1
    })
    .await;
    assert_eq!(other.get("/whoami").await.status, 401, "{framework:?}");
    assert_eq!(text(&client, "#user").await, "ada");

    // Log out: the user is gone.
    client
        .find(Locator::Css("#logout-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("#anonymous"))
        .await
        .expect("logged out");
    assert!(client.find(Locator::Css("#user")).await.is_err());
    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_chromium_on_every_framework() {
    let driver = start_chromedriver();
    for framework in [Framework::Axum, Framework::Actix, Framework::Rocket] {
        drive(framework, &driver).await;
    }
}
