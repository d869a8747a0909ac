//! Browser sessions, in a real browser: headless Chromium (over WebDriver) logs in through the
//! test IdP's real login form at a TLS gateway, and is held to everything `docs/sessions.md`
//! promises — the cookie's flags as the browser stores them, idle and absolute expiry, step-up,
//! no fixation, no open redirect, cross-origin posts refused, RP-initiated logout, back-channel
//! logout reaching a second replica (Redis) within a second, and `revoke --subject` ending a
//! session. Each test reads the audit events its requests wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use invoiceguard_testkit::{
    Browser, GatewayProcess, Idp, Redis, TempDir, Upstream, WEB_CLIENT_ID, certificates,
};
use serde_json::Value;

use super::{BINARY, run, sections};

/// A TLS gateway (or two, sharing Redis) with browser sessions, the IdP that logs people in,
/// and the example API.
struct SessionWorld {
    idp: Idp,
    upstream: Upstream,
    gateways: Vec<GatewayProcess>,
    otp: String,
    dir: TempDir,
    _redis: Option<Redis>,
}

impl SessionWorld {
    /// `replicas` gateways (with Redis when more than one), `session_extra` more `[session]`
    /// lines, the admin token file set up for `revoke`.
    async fn start(replicas: usize, session_extra: &str) -> Self {
        let dir = TempDir::new("sessions").unwrap();
        let (ca, cert, key) = certificates(dir.path()).unwrap();
        let idp = Idp::start_trusting(Some(&ca)).await.unwrap();
        let upstream = Upstream::start().unwrap();
        let (secret, otp) = Idp::web_client_secret_and_otp().unwrap();
        let secret_file = dir.path().join("web-client-secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let admin_token = dir.path().join("admin-token");
        std::fs::write(&admin_token, "s3cret-admin-token-for-tests\n").unwrap();
        let redis = if replicas > 1 {
            Some(Redis::start().await.unwrap())
        } else {
            None
        };
        let state = redis.as_ref().map_or_else(String::new, |redis| {
            format!(
                "\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n",
                redis.url()
            )
        });
        // `{issuer}` in the extra lines is the IdP's (an `[ssf]` section's transmitter).
        let session_extra = session_extra.replace("{issuer}", &idp.issuer);
        let text = format!(
            "{}{state}\n[admin]\naddress = \"127.0.0.1:{{admin_port}}\"\ntoken_file = {admin_token:?}\n\n\
             [session]\nclient_id = \"{WEB_CLIENT_ID}\"\nclient_secret_file = {secret_file:?}\n\
             external_url = \"https://localhost:{{port}}\"\n\
             scopes = [\"invoices:read\", \"invoices:write\", \"exports:create\"]\n{session_extra}\n",
            sections(
                &idp.issuer,
                &upstream.url(),
                &format!("tls = {{ cert_file = {cert:?}, key_file = {key:?} }}"),
            )
        );
        let mut gateways = Vec::new();
        for _ in 0..replicas {
            gateways.push(
                GatewayProcess::start(Path::new(BINARY), &text, true)
                    .await
                    .unwrap(),
            );
        }
        let origins: Vec<&str> = gateways.iter().map(|g| g.url.as_str()).collect();
        idp.register_gateways(&origins).await.unwrap();
        Self {
            idp,
            upstream,
            gateways,
            otp,
            dir,
            _redis: redis,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateways[0].url)
    }

    /// Waits for the IdP's login form, and signs in as `user` (with the one-time code when
    /// `mfa`).
    async fn sign_in(&self, browser: &Browser, user: &str, mfa: bool) {
        browser.wait_for_url(&self.idp.issuer).await.unwrap();
        browser.type_into("#username", user).await.unwrap();
        browser
            .type_into("#password", &format!("{user}-password"))
            .await
            .unwrap();
        if mfa {
            browser.type_into("#otp", &self.otp).await.unwrap();
        }
        browser.click("#sign-in").await.unwrap();
    }

    /// Opens `path` on the first gateway, logs in as `user` at the IdP, and waits to be back.
    async fn log_in(&self, browser: &Browser, user: &str, path: &str) {
        browser.goto(&self.url(path)).await.unwrap();
        self.sign_in(browser, user, true).await;
        browser.wait_for_url(&self.url(path)).await.unwrap();
    }

    /// The events of the first gateway.
    fn events(&self) -> Vec<Value> {
        self.gateways[0].audit_events()
    }
}

/// The browser's session cookie (as stored), if any.
async fn session_cookie(browser: &Browser) -> Option<invoiceguard_testkit::StoredCookie> {
    browser
        .cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|cookie| cookie.name == "__Host-invoiceguard-session")
}

/// A GET with the session cookie `id`, as another client than the browser.
async fn get_with_session(world: &SessionWorld, gateway: usize, path: &str, id: &str) -> u16 {
    let ca = world.dir.path().join("ca.pem");
    let client = invoiceguard_testkit::TlsClient::new(&ca).unwrap();
    let request = http::Request::get(format!("{}{path}", world.gateways[gateway].url))
        .header("cookie", format!("__Host-invoiceguard-session={id}"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        )
        .body(http_body_util::Full::default())
        .unwrap();
    client.send(request).await.unwrap().status
}

/// The request ids a Sigma rule of `deploy/siem/rules` fires on in a gateway's trail.
fn fired(gateway: &GatewayProcess, rule: &str) -> Vec<String> {
    super::siem::run_rules(gateway)[rule]["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// The URL once the browser has left the IdP and the gateway's callback page (up to 10 s).
async fn settled_url(browser: &Browser) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.url().await.unwrap();
        if url.starts_with("https://") && !url.contains("/.invoiceguard/") {
            return url;
        }
        assert!(Instant::now() < deadline, "the browser stays at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the screenshots of a test run go (`docs/sessions.md` shows one).
fn screenshot_dir() -> PathBuf {
    let dir = invoiceguard_testkit::repo_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_through_the_idp_and_holds_a_host_only_secure_session() {
    let world = SessionWorld::start(1, "").await;
    let browser = Browser::start().await.unwrap();

    // A session id planted before the login (fixation): never honoured.
    browser
        .goto(&world.url("/.invoiceguard/session"))
        .await
        .unwrap();
    let planted = "planted-by-an-attacker-0123456789abcdefghijklmnop";
    browser
        .set_cookie(
            "__Host-invoiceguard-session",
            planted,
            serde_json::json!({"secure": true, "httpOnly": true}),
        )
        .await
        .unwrap();

    // A cookie of the application's own, which the upstream must still get.
    browser
        .set_cookie("theme", "dark", serde_json::json!({"secure": true}))
        .await
        .unwrap();

    // No session: the browser is sent to the IdP's real login form, and back to the page.
    browser
        .goto(&world.url("/invoices?status=draft"))
        .await
        .unwrap();
    browser.wait_for_url(&world.idp.issuer).await.unwrap();
    browser
        .screenshot(&screenshot_dir().join("session-login.png"))
        .await
        .unwrap();
    world.sign_in(&browser, "alice", true).await;
    browser
        .wait_for_url(&world.url("/invoices?status=draft"))
        .await
        .unwrap();
    let page = browser.text().await.unwrap();
    assert!(page.contains("INV-1"), "the invoices page: {page}");

    // The cookie as the browser keeps it: host-only, Secure, HttpOnly, Lax, Path=/, no expiry
    // (it ends with the browser), 256 random bits — and not the planted one.
    let cookie = session_cookie(&browser).await;
    assert!(cookie.is_some(), "no session cookie");
    let cookie = cookie.unwrap();
    assert!(cookie.secure && cookie.http_only, "{cookie:?}");
    assert_eq!(
        (cookie.same_site.as_str(), cookie.path.as_str()),
        ("Lax", "/")
    );
    assert_eq!(cookie.domain, "localhost", "host-only: {cookie:?}");
    assert_eq!(cookie.expiry, None, "{cookie:?}");
    assert_eq!(cookie.value.len(), 43, "{cookie:?}");
    assert_ne!(cookie.value, planted);
    assert_eq!(get_with_session(&world, 0, "/invoices", planted).await, 401);
    let not_readable = browser
        .script("return document.cookie;", serde_json::json!([]))
        .await
        .unwrap();
    assert!(
        !not_readable
            .as_str()
            .unwrap_or_default()
            .contains("invoiceguard-session"),
        "HttpOnly: scripts cannot read it"
    );

    // The upstream saw the same identity headers as for a token, and none of the gateway's
    // cookies (its own cookie passed).
    let journal = world.upstream.journal().await.unwrap();
    let seen = journal
        .iter()
        .rev()
        .find(|entry| entry["target"] == "/invoices?status=draft");
    assert!(seen.is_some(), "the upstream got no page request");
    let headers = seen.unwrap()["headers"].to_string();
    for expected in [
        r#"["x-invoiceguard-subject","alice"]"#,
        r#"["x-invoiceguard-client-id","invoiceguard-web"]"#,
        r#"["x-invoiceguard-mfa","true"]"#,
        r#"["cookie","theme=dark"]"#,
    ] {
        assert!(headers.contains(expected), "{expected} not in {headers}");
    }
    assert!(!headers.contains("invoiceguard-session"), "{headers}");
    assert!(!headers.contains("invoiceguard-login"), "{headers}");

    // The session endpoint says who.
    browser
        .goto(&world.url("/.invoiceguard/session"))
        .await
        .unwrap();
    browser
        .screenshot(&screenshot_dir().join("session-endpoint.png"))
        .await
        .unwrap();
    let session: Value = serde_json::from_str(&browser.text().await.unwrap()).unwrap();
    assert_eq!(session["subject"], "alice");
    assert_eq!(session["mfa"], true);
    assert_eq!(session["amr"], serde_json::json!(["pwd", "otp"]));

    // The trail: the redirect to log in, the login, the page, each with the session's hash.
    let events = world.events();
    let login = events
        .iter()
        .find(|e| e["action"] == "session:login" && e["decision"]["effect"] == "allow");
    assert!(login.is_some(), "no login event");
    let login = login.unwrap();
    assert_eq!(login["category"], "authentication");
    assert_eq!(login["actor"]["id"], "alice");
    assert_eq!(login["actor"]["auth_method"], "session");
    let hash = login["source"]["session"].as_str().unwrap_or_default();
    assert_eq!(hash.len(), 64);
    assert_ne!(hash, cookie.value, "the id itself is never written");
    assert!(!world.gateways[0].audit_text().contains(&cookie.value));
    let page_event = events
        .iter()
        .find(|e| e["action"] == "invoice:list" && e["outcome"]["status"] == 200);
    assert!(page_event.is_some(), "no invoice:list event");
    let page_event = page_event.unwrap();
    assert_eq!(page_event["source"]["session"], hash);
    assert_eq!(
        page_event["actor"]["roles"],
        serde_json::json!(["invoicing"])
    );
    let sent = events.iter().find(|e| {
        e["action"] == "invoice:list"
            && e["outcome"]["status"] == 302
            && e["decision"]["detail"] == "sent to log in: no session"
    });
    assert!(sent.is_some(), "the redirect to log in is not on the trail");

    // The cookie replayed by another client: served (`on_device_change = "audit"`), and
    // audited high with both devices named.
    let ca = world.dir.path().join("ca.pem");
    let client = invoiceguard_testkit::TlsClient::new(&ca).unwrap();
    let replay = http::Request::get(world.url("/invoices"))
        .header(
            "cookie",
            format!("__Host-invoiceguard-session={}", cookie.value),
        )
        .header("user-agent", "curl/8.0")
        .body(http_body_util::Full::default())
        .unwrap();
    let replayed = client.send(replay).await.unwrap();
    assert_eq!(replayed.status, 200);
    let moved = world
        .events()
        .into_iter()
        .find(|e| e["request_id"] == replayed.header("x-request-id"));
    assert!(moved.is_some(), "no event of the replayed request");
    let moved = moved.unwrap();
    assert_eq!(moved["severity"], "high");
    assert_eq!(moved["category"], "authentication");
    assert!(
        moved["decision"]["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("session used from another device: started on Chrome on Linux from 127.0.0.0/24, now curl on other"),
        "{}",
        moved["decision"]["detail"]
    );
    assert_eq!(
        fired(&world.gateways[0], "session-device-change.yml"),
        [moved["request_id"].as_str().unwrap()]
    );

    // RP-initiated logout: the session ends, the IdP's too, and the browser comes back.
    browser
        .goto(&world.url("/.invoiceguard/logout"))
        .await
        .unwrap();
    browser.wait_for_url(&world.idp.issuer).await.unwrap();
    browser
        .click("button[name=logout][value=yes]")
        .await
        .unwrap();
    browser
        .wait_for_url(&world.url("/.invoiceguard/logged-out"))
        .await
        .unwrap();
    assert_eq!(
        get_with_session(&world, 0, "/invoices", &cookie.value).await,
        401
    );
    let events = world.events();
    assert!(
        events.iter().any(|e| e["action"] == "session:logout"
            && e["source"]["session"] == hash
            && e["decision"]["detail"] == "session ended; sent to the IdP's end-session endpoint"),
        "no logout event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_operation_sends_the_browser_to_log_in_again_with_mfa() {
    let world = SessionWorld::start(1, "").await;
    let browser = Browser::start().await.unwrap();
    // A password-only login: the baseline wants MFA for invoices, so the page sends the
    // browser back to the IdP, asking for a multi-factor login (prompt=login, acr_values).
    browser.goto(&world.url("/invoices")).await.unwrap();
    world.sign_in(&browser, "carol", false).await;
    browser.wait_for("#mfa-asked").await.unwrap();
    let asked = browser.url().await.unwrap();
    assert!(asked.starts_with(&world.idp.issuer), "{asked}");
    let step_up = world
        .events()
        .into_iter()
        .find(|e| e["action"] == "invoice:list" && e["decision"]["reason"] == "step_up");
    assert!(step_up.is_some(), "no step-up event");
    let step_up = step_up.unwrap();
    assert_eq!(step_up["outcome"]["status"], 302);
    assert_eq!(step_up["actor"]["mfa"], false);
    assert!(
        asked.contains("prompt=login") || browser.text().await.unwrap().contains("multi-factor"),
        "{asked}"
    );
    // With the one-time code, the same page.
    world.sign_in(&browser, "carol", true).await;
    browser.wait_for_url(&world.url("/invoices")).await.unwrap();
    assert!(browser.text().await.unwrap().contains("INV-1"));
    // A change needing a step-up is not a navigation: a problem document, not a redirect.
    let answer = browser
        .script_async(
            "const done = arguments[arguments.length - 1];
             fetch('/exports', {method: 'POST', headers: {'content-type': 'application/json'},
                                body: JSON.stringify({limit: 400})})
               .then(r => r.json().then(b => done({status: r.status, body: b})));",
            serde_json::json!([]),
        )
        .await
        .unwrap();
    // A script's export after the fresh MFA login: allowed.
    assert_eq!(answer["status"], 201, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_timeouts_end_sessions_and_a_new_device_ends_one_when_configured() {
    let world = SessionWorld::start(
        1,
        "idle_timeout_s = 2\nabsolute_timeout_s = 5\non_device_change = \"end\"\nsame_site = \"strict\"\n",
    )
    .await;
    let browser = Browser::start().await.unwrap();

    // Used every second, the session still ends 5 s after the login (absolute). The cookie is
    // `SameSite=Strict` here: the login still lands on the page (the callback's own page moves
    // on from the gateway's origin, so the browser sends a Strict cookie with it).
    // The timeouts count whole seconds (rounded down): "5 s" may end 4 s after the login, and
    // "2 s" idle 1 s after the last use. So the session is used every half second for 2.5 s from
    // before the login (it is younger than that), then left until 5 s after the login was done.
    let started = Instant::now();
    world.log_in(&browser, "alice", "/invoices").await;
    let logged_in = Instant::now();
    assert!(browser.text().await.unwrap().contains("INV-1"));
    assert_eq!(session_cookie(&browser).await.unwrap().same_site, "Strict");
    let id = session_cookie(&browser).await.unwrap().value;
    loop {
        assert_eq!(get_with_session(&world, 0, "/invoices", &id).await, 200);
        if started.elapsed() >= Duration::from_millis(2500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(5300).saturating_sub(logged_in.elapsed())).await;
    browser.goto(&world.url("/invoices")).await.unwrap();
    // Logging in again at the IdP (prompt=login), not silently through its session.
    browser.wait_for("#username").await.unwrap();
    assert!(
        world.events().iter().any(
            |e| e["decision"]["detail"] == "sent to log in: session expired (absolute timeout)"
        )
    );

    // Unused for 2 s, a new session ends (idle).
    world.sign_in(&browser, "alice", true).await;
    browser.wait_for_url(&world.url("/invoices")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    browser.goto(&world.url("/invoices")).await.unwrap();
    browser.wait_for_url(&world.idp.issuer).await.unwrap();
    browser.wait_for("#username").await.unwrap();
    assert!(
        world
            .events()
            .iter()
            .any(|e| e["decision"]["detail"] == "sent to log in: session expired (idle timeout)")
    );

    // The cookie replayed by another client (not Chrome): the session ends, audited high.
    world.sign_in(&browser, "alice", true).await;
    browser.wait_for_url(&world.url("/invoices")).await.unwrap();
    let id = session_cookie(&browser).await.unwrap().value;
    let ca = world.dir.path().join("ca.pem");
    let client = invoiceguard_testkit::TlsClient::new(&ca).unwrap();
    let replay = http::Request::get(world.url("/invoices"))
        .header("cookie", format!("__Host-invoiceguard-session={id}"))
        .header("user-agent", "curl/8.0")
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(client.send(replay).await.unwrap().status, 401);
    assert_eq!(get_with_session(&world, 0, "/invoices", &id).await, 401);
    let events = world.events();
    let changed = events
        .iter()
        .find(|e| e["decision"]["detail"] == "device_changed");
    assert!(changed.is_some(), "no device-change event");
    let changed = changed.unwrap();
    assert_eq!(changed["severity"], "high");
    // The SIEM's rule fires on it, and on nothing else of this trail.
    assert_eq!(
        fired(&world.gateways[0], "session-device-change.yml"),
        [changed["request_id"].as_str().unwrap()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_posts_and_open_redirects_are_refused() {
    let world = SessionWorld::start(2, "").await;
    let browser = Browser::start().await.unwrap();
    world.log_in(&browser, "alice", "/invoices").await;
    let created_before = world
        .events()
        .iter()
        .filter(|e| e["action"] == "invoice:create")
        .count();

    // A form on another origin of the same site (the second replica's pages) posts to the first:
    // the browser sends the Lax cookie along, and the gateway refuses by Origin and Fetch Metadata.
    browser
        .goto(&format!("{}/invoices", world.gateways[1].url))
        .await
        .unwrap();
    let form = format!(
        "const f = document.createElement('form'); f.method = 'POST'; f.action = '{}';
         f.enctype = 'text/plain';
         const i = document.createElement('input'); i.name = '{{\"partner_id\":\"P-1\",\"amount\":9,\"x\":\"'; i.value = '\"}}';
         f.appendChild(i); document.body.appendChild(f); f.submit();",
        world.url("/invoices")
    );
    browser.script(&form, serde_json::json!([])).await.unwrap();
    browser.wait_for_url(&world.url("/invoices")).await.unwrap();
    let page = browser.text().await.unwrap();
    assert!(page.contains("cross-site-request"), "{page}");
    let refused = world
        .events()
        .into_iter()
        .find(|e| e["decision"]["reason"] == "cross_site");
    assert!(refused.is_some(), "no cross-site event");
    let refused = refused.unwrap();
    assert_eq!(refused["outcome"]["status"], 403);
    assert_eq!(refused["actor"]["id"], "alice");
    assert_eq!(
        refused["decision"]["detail"],
        "a state-changing request from another origin"
    );
    assert_eq!(
        fired(&world.gateways[0], "cross-site-refused.yml"),
        [refused["request_id"].as_str().unwrap()]
    );

    // From another site altogether (an opaque origin), the Lax cookie is not even sent.
    browser
        .goto(&format!(
            "data:text/html,<form id=f method=post action='{}'><input name=a value=b></form><script>f.submit()</script>",
            world.url("/invoices")
        ))
        .await
        .unwrap();
    browser.wait_for_url(&world.url("/invoices")).await.unwrap();
    let page = browser.text().await.unwrap();
    assert!(page.contains("unauthenticated"), "{page}");
    assert_eq!(
        world
            .events()
            .iter()
            .filter(|e| e["action"] == "invoice:create" && e["outcome"]["status"] == 201)
            .count(),
        0,
        "nothing was created (before: {created_before})"
    );

    // A return URL on another site: after the login, the browser stays on the gateway.
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/%2Fevil.example",
    ] {
        let login = format!(
            "{}?return_to={}",
            world.url("/.invoiceguard/login"),
            evil.bytes()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        );
        browser.goto(&login).await.unwrap();
        // Still logged in at the IdP: it sends the browser straight back, to `/`.
        let back = settled_url(&browser).await;
        assert_eq!(back, world.url("/"), "{evil}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idps_logout_and_a_revocation_end_sessions_on_every_replica_within_a_second() {
    let world = SessionWorld::start(2, "").await;
    let browser = Browser::start().await.unwrap();
    world.log_in(&browser, "alice", "/invoices").await;
    let id = session_cookie(&browser).await.unwrap().value;
    // The second replica knows the session (Redis).
    assert_eq!(get_with_session(&world, 1, "/invoices", &id).await, 200);

    // The person logs out at the IdP itself: the IdP tells the first replica (back-channel
    // logout), and the second refuses the session within a second.
    let end_session = format!("{}/session/end?client_id={WEB_CLIENT_ID}", world.idp.issuer);
    browser.goto(&end_session).await.unwrap();
    browser
        .click("button[name=logout][value=yes]")
        .await
        .unwrap();
    let confirmed = Instant::now();
    while get_with_session(&world, 1, "/invoices", &id).await != 401 {
        assert!(
            confirmed.elapsed() < Duration::from_secs(1),
            "the second replica still serves the session after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logout = world
        .events()
        .into_iter()
        .find(|e| e["action"] == "session:backchannel_logout");
    assert!(logout.is_some(), "no back-channel logout event");
    let detail = logout.unwrap()["decision"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.starts_with("1 session(s) of IdP session"),
        "{detail}"
    );
    assert!(detail.contains("of alice ended by"), "{detail}");

    // Logout tokens are checked as Back-Channel Logout 1.0 says; a replayed one is refused on
    // either replica (its jti is remembered in Redis).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let logout_token = |changes: Value| {
        let mut claims = serde_json::json!({
            "iss": world.idp.issuer, "aud": WEB_CLIENT_ID, "iat": now, "exp": now + 120,
            "jti": format!("jti-{now}"), "sub": "nobody",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let post = |replica: usize, token: String| {
        let url = format!(
            "{}/.invoiceguard/backchannel-logout",
            world.gateways[replica].url
        );
        let ca = world.dir.path().join("ca.pem");
        async move {
            let client = invoiceguard_testkit::TlsClient::new(&ca).unwrap();
            let request = http::Request::post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::Full::from(format!("logout_token={token}")))
                .unwrap();
            client.send(request).await.unwrap().status
        }
    };
    let header = serde_json::json!({"typ": "logout+jwt"});
    let good = world
        .idp
        .sign(header.clone(), logout_token(serde_json::json!({})), None)
        .await
        .unwrap();
    assert_eq!(post(1, good.clone()).await, 200);
    assert_eq!(post(0, good).await, 400, "a replayed logout token");
    for (why, changes, typ) in [
        (
            "another audience",
            serde_json::json!({"aud": "someone-else", "jti": "j1"}),
            "logout+jwt",
        ),
        (
            "a nonce",
            serde_json::json!({"nonce": "n", "jti": "j2"}),
            "logout+jwt",
        ),
        (
            "no event",
            serde_json::json!({"events": {}, "jti": "j3"}),
            "logout+jwt",
        ),
        (
            "neither sub nor sid",
            serde_json::json!({"sub": null, "jti": "j4"}),
            "logout+jwt",
        ),
        ("no jti", serde_json::json!({"jti": null}), "logout+jwt"),
        (
            "expired",
            serde_json::json!({"exp": now - 60, "jti": "j5"}),
            "logout+jwt",
        ),
        (
            "an access token's type",
            serde_json::json!({"jti": "j6"}),
            "at+jwt",
        ),
    ] {
        let token = world
            .idp
            .sign(serde_json::json!({"typ": typ}), logout_token(changes), None)
            .await
            .unwrap();
        assert_eq!(post(1, token).await, 400, "{why}");
    }
    let refused = world.gateways[1]
        .audit_events()
        .into_iter()
        .filter(|e| e["action"] == "session:backchannel_logout" && e["outcome"]["status"] == 400)
        .count();
    assert_eq!(refused, 7, "every refused logout token is on the trail");

    // Logged in again; an admin revokes the subject: the session ends on every replica.
    world.log_in(&browser, "alice", "/invoices").await;
    let id = session_cookie(&browser).await.unwrap().value;
    assert_eq!(get_with_session(&world, 1, "/invoices", &id).await, 200);
    let (ok, out) = run(std::process::Command::new(BINARY)
        .args(["revoke", "--config"])
        .arg(world.gateways[0].config_file())
        .args(["--subject", "alice", "--reason", "left the company"]));
    assert!(ok, "{out}");
    assert!(out.contains("\"sessions_ended\":1"), "{out}");
    assert_eq!(get_with_session(&world, 0, "/invoices", &id).await, 401);
    assert_eq!(get_with_session(&world, 1, "/invoices", &id).await, 401);

    // A flood of navigations without a session: each begins a login (a record in the store)
    // until the address has begun 60 in a minute, counted across replicas; then 429.
    let ca = world.dir.path().join("ca.pem");
    let client = invoiceguard_testkit::TlsClient::new(&ca).unwrap();
    let navigate = |replica: usize| {
        let request = http::Request::get(format!("{}/invoices", world.gateways[replica].url))
            .header("accept", "text/html")
            .body(http_body_util::Full::default())
            .unwrap();
        client.send(request)
    };
    let mut statuses = Vec::new();
    for n in 0..61 {
        statuses.push(navigate(n % 2).await.unwrap().status);
    }
    assert!(statuses.contains(&302), "{statuses:?}");
    let limited = navigate(0).await.unwrap();
    assert_eq!(limited.status, 429, "{statuses:?}");
    assert!(!limited.header("retry-after").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_by_the_idps_security_event_ends_on_every_replica() {
    let files = TempDir::new("sessions-ssf").unwrap();
    let (token, audience) = Idp::ssf_receiver().unwrap();
    let token_file = files.path().join("ssf-token");
    std::fs::write(&token_file, token).unwrap();
    let ssf = format!(
        "\n[ssf]\ntransmitter = \"{{issuer}}\"\naudience = \"{audience}\"\n\
         push_url = \"https://localhost:{{port}}/.invoiceguard/ssf/events\"\n\
         bearer_token_file = {token_file:?}\n"
    );
    let world = SessionWorld::start(2, &ssf).await;
    for gateway in &world.gateways {
        super::lifecycle::wait_verified(gateway).await;
    }
    let browser = Browser::start().await.unwrap();
    world.log_in(&browser, "alice", "/invoices").await;
    let id = session_cookie(&browser).await.unwrap().value;
    assert_eq!(get_with_session(&world, 1, "/invoices", &id).await, 200);

    // The IdP revokes alice's sessions (CAEP session-revoked, pushed to each replica's stream):
    // the browser session ends on both replicas within a second.
    let started = Instant::now();
    let sent = world
        .idp
        .ssf_emit(
            serde_json::json!({"event": "session-revoked", "subject": {"format": "complex",
            "user": {"format": "iss_sub", "iss": world.idp.issuer, "sub": "alice"}}}),
        )
        .await
        .unwrap();
    for delivery in sent["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["status"], 202, "{delivery}");
    }
    while get_with_session(&world, 1, "/invoices", &id).await != 401
        || get_with_session(&world, 0, "/invoices", &id).await != 401
    {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the session still served after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ended: u64 = world
        .gateways
        .iter()
        .flat_map(GatewayProcess::audit_events)
        .filter(|e| e["action"] == "ssf:session-revoked")
        .flat_map(|e| {
            e["lifecycle"]["acted"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|acted| {
            acted
                .as_str()
                .and_then(|a| a.strip_prefix("sessions_ended:"))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum();
    assert_eq!(ended, 1, "the one session ended once");

    // A new login is a new session, let in.
    world.log_in(&browser, "alice", "/invoices").await;
    let again = session_cookie(&browser).await.unwrap().value;
    assert_ne!(again, id);
    assert_eq!(get_with_session(&world, 1, "/invoices", &again).await, 200);
}
