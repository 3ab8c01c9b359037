//! `Authorization` as the server uses it: through the `Authorizer` trait, on
//! a manual clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tidewater_auth::{AuthConfig, Authorization, ManualClock, RefusalCause, hash_password};
use tidewater_core::{
    Action, AuthRequest, Authorizer, Credentials, DigestCredentials, Identity, Refusal,
    RefusalKind, StreamKey,
};

const LOOPBACK: &str = "127.0.0.1:50000";
const REMOTE: &str = "192.0.2.7:50000";
const REMOTE_V6: &str = "[2001:db8::7]:50000";

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(start()))
}

fn auth_at(toml_text: &str, clock: &Arc<ManualClock>) -> Authorization {
    let config: AuthConfig = toml::from_str(toml_text).expect("config");
    Authorization::with_clock(config, clock.clone()).expect("authorization")
}

fn auth(toml_text: &str) -> Authorization {
    auth_at(toml_text, &clock())
}

fn req(action: Action, path: Option<&str>, peer: &str) -> AuthRequest {
    let mut r = AuthRequest::new(action, "test").peer(peer.parse().expect("peer"));
    if let Some(p) = path {
        r = r.key(StreamKey::parse(p).expect("key"));
    }
    r
}

fn with_pass(r: AuthRequest, user: &str, pass: &str) -> AuthRequest {
    r.credentials(Credentials::UserPass {
        user: user.into(),
        pass: pass.into(),
    })
}

fn with_token(r: AuthRequest, token: &str) -> AuthRequest {
    r.credentials(Credentials::Token(token.into()))
}

async fn allowed(a: &Authorization, r: &AuthRequest) -> Identity {
    match a.authorize(r).await {
        Ok(id) => id,
        Err(e) => panic!("{r} refused: {e}"),
    }
}

async fn refused(a: &Authorization, r: &AuthRequest) -> Refusal {
    match a.authorize(r).await {
        Ok(id) => panic!("{r} allowed as {id}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn defaults_allow_publish_api_and_metrics_from_loopback_and_read_from_anywhere() {
    let a = Authorization::defaults();
    assert!(!a.is_configured());
    for peer in [LOOPBACK, "[::1]:1", "[::ffff:127.0.0.1]:1"] {
        for action in Action::ALL {
            let path = action.has_stream().then_some("live/cam1");
            allowed(&a, &req(action, path, peer)).await;
        }
    }
    for peer in [REMOTE, REMOTE_V6] {
        allowed(&a, &req(Action::Read, Some("live/cam1"), peer)).await;
        allowed(&a, &req(Action::Playback, Some("live/cam1"), peer)).await;
        for (action, path) in [
            (Action::Publish, Some("live/cam1")),
            (Action::Api, None),
            (Action::Metrics, None),
        ] {
            let r = req(action, path, peer);
            let e = refused(&a, &r).await;
            assert_eq!(e.kind(), RefusalKind::Forbidden);
            assert!(e.reason().contains("loopback only"), "{e}");
        }
    }
    // Credentials change nothing.
    let r = with_pass(req(Action::Publish, Some("live/a"), REMOTE), "u", "p");
    refused(&a, &r).await;
    // No peer address is not loopback.
    let mut r =
        AuthRequest::new(Action::Publish, "test").key(StreamKey::parse("live/a").expect("key"));
    refused(&a, &r).await;
    r.action = Action::Read;
    allowed(&a, &r).await;
}

#[tokio::test]
async fn refusal_reasons_name_the_missing_permission_and_the_setting() {
    let a = Authorization::defaults();
    let r = req(Action::Publish, Some("live/cam1"), REMOTE);
    let e = refused(&a, &r).await;
    assert_eq!(
        format!("{r} refused: {e}"),
        "publish live/cam1 from 192.0.2.7 refused: anonymous publish is allowed from loopback \
         only (no [auth] is configured); add [[auth.users]] with user, password and \
         permissions = [{ action = \"publish\", path = \"live/*\" }]"
    );
    let e = refused(&a, &req(Action::Metrics, None, REMOTE)).await;
    assert!(
        e.reason()
            .ends_with("permissions = [{ action = \"metrics\" }]"),
        "{e}"
    );

    let a = auth(
        r#"
        [[users]]
        user = "alice"
        password = "pw"
        ips = ["192.0.2.0/24"]
        permissions = [{ action = "read", path = "live/*" }]
        "#,
    );
    let e = refused(
        &a,
        &with_pass(
            req(Action::Publish, Some("live/cam1"), REMOTE),
            "alice",
            "pw",
        ),
    )
    .await;
    assert_eq!(e.kind(), RefusalKind::Forbidden);
    assert_eq!(
        e.reason(),
        "user \"alice\" has no permission to publish live/cam1; add { action = \"publish\", \
         path = \"live/*\" } to the permissions of [[auth.users]] user = \"alice\""
    );
    let e = refused(
        &a,
        &with_pass(
            req(Action::Read, Some("live/cam1"), "198.51.100.1:1"),
            "alice",
            "pw",
        ),
    )
    .await;
    assert_eq!(e.kind(), RefusalKind::Forbidden);
    assert_eq!(
        e.reason(),
        "user \"alice\" may not connect from 198.51.100.1; add the address to ips of \
         [[auth.users]] user = \"alice\""
    );
    let e = refused(&a, &req(Action::Api, None, REMOTE)).await;
    assert_eq!(e.kind(), RefusalKind::MissingCredentials);
    assert!(e.reason().contains("{ action = \"api\" }"), "{e}");
    assert!(e.reason().contains("user = \"any\""), "{e}");
    // No secret ever: the wrong password is not repeated.
    let e = refused(
        &a,
        &with_pass(
            req(Action::Read, Some("live/cam1"), REMOTE),
            "alice",
            "hunter2",
        ),
    )
    .await;
    assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
    assert!(!e.reason().contains("hunter2"), "{e}");
    // An unknown user reads the same as a wrong password.
    let unknown = refused(
        &a,
        &with_pass(req(Action::Read, Some("live/cam1"), REMOTE), "bob", "pw"),
    )
    .await;
    assert_eq!(
        unknown.reason().replace("bob", "alice"),
        e.reason().to_string()
    );
}

#[tokio::test]
async fn configured_users_replace_the_defaults() {
    let a = auth(
        r#"
        [[users]]
        user = "obs"
        password = "s3cret"
        permissions = [{ action = "publish", path = "live/*" }]
        "#,
    );
    assert!(a.is_configured());
    // Not even loopback may publish or read anonymously now.
    for (action, path) in [
        (Action::Publish, Some("live/a")),
        (Action::Read, Some("live/a")),
        (Action::Api, None),
    ] {
        let e = refused(&a, &req(action, path, LOOPBACK)).await;
        assert_eq!(e.kind(), RefusalKind::MissingCredentials, "{action}");
    }
    let id = allowed(
        &a,
        &with_pass(
            req(Action::Publish, Some("live/a"), REMOTE),
            "obs",
            "s3cret",
        ),
    )
    .await;
    assert_eq!(id, Identity::named("obs"));
    refused(
        &a,
        &with_pass(
            req(Action::Publish, Some("other/a"), REMOTE),
            "obs",
            "s3cret",
        ),
    )
    .await;
    refused(
        &a,
        &with_pass(req(Action::Read, Some("live/a"), REMOTE), "obs", "s3cret"),
    )
    .await;
}

#[tokio::test]
async fn hashed_passwords_and_ip_restrictions() {
    let phc = hash_password("correct horse").expect("hash");
    let a = auth(&format!(
        r#"
        [[users]]
        user = "cam"
        password_hash = "{phc}"
        ips = ["192.0.2.0/24", "2001:db8::/32"]
        permissions = [{{ action = "publish", path = "cams/cam?" }}]
        "#
    ));
    for peer in [REMOTE, REMOTE_V6, "[::ffff:192.0.2.9]:1"] {
        allowed(
            &a,
            &with_pass(
                req(Action::Publish, Some("cams/cam1"), peer),
                "cam",
                "correct horse",
            ),
        )
        .await;
    }
    refused(
        &a,
        &with_pass(
            req(Action::Publish, Some("cams/cam12"), REMOTE),
            "cam",
            "correct horse",
        ),
    )
    .await;
    let e = refused(
        &a,
        &with_pass(
            req(Action::Publish, Some("cams/cam1"), LOOPBACK),
            "cam",
            "correct horse",
        ),
    )
    .await;
    assert!(e.reason().contains("may not connect from 127.0.0.1"), "{e}");
    let e = refused(
        &a,
        &with_pass(
            req(Action::Publish, Some("cams/cam1"), REMOTE),
            "cam",
            "wrong horse",
        ),
    )
    .await;
    assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
    assert_eq!(a.stats().refused(RefusalCause::AddressNotAllowed), 1);
    assert_eq!(a.stats().refused(RefusalCause::InvalidCredentials), 1);
    assert_eq!(a.stats().refused(RefusalCause::NotPermitted), 1);
    assert_eq!(a.stats().allowed, 3);
}

#[tokio::test]
async fn the_anonymous_user_any_grants_to_everyone() {
    let a = auth(
        r#"
        [[users]]
        user = "any"
        ips = ["192.0.2.0/24"]
        permissions = [{ action = "read", path = "public/*" }, { action = "metrics" }]

        [[users]]
        user = "admin"
        password = "pw"
        permissions = [{ action = "api" }]
        "#,
    );
    assert!(a.allows_anonymous(
        Action::Read,
        Some(&StreamKey::parse("public/x").expect("k")),
        Some("192.0.2.1".parse().expect("ip"))
    ));
    assert!(!a.allows_anonymous(
        Action::Read,
        Some(&StreamKey::parse("private/x").expect("k")),
        Some("192.0.2.1".parse().expect("ip"))
    ));
    assert!(!a.allows_anonymous(
        Action::Read,
        Some(&StreamKey::parse("public/x").expect("k")),
        Some("198.51.100.1".parse().expect("ip"))
    ));
    assert_eq!(
        allowed(&a, &req(Action::Read, Some("public/x"), REMOTE)).await,
        Identity::anonymous()
    );
    allowed(&a, &req(Action::Metrics, None, REMOTE)).await;
    refused(&a, &req(Action::Read, Some("private/x"), REMOTE)).await;
    let e = refused(&a, &req(Action::Read, Some("public/x"), "198.51.100.1:1")).await;
    assert!(
        e.reason().contains("ips of [[auth.users]] user = \"any\""),
        "{e}"
    );
    // A user has the anonymous rights too.
    let id = allowed(
        &a,
        &with_pass(req(Action::Read, Some("public/x"), REMOTE), "admin", "pw"),
    )
    .await;
    assert_eq!(id, Identity::named("admin"));
    allowed(
        &a,
        &with_pass(req(Action::Api, None, "198.51.100.1:1"), "admin", "pw"),
    )
    .await;
    // Wrong credentials are refused even where anonymous access is allowed.
    refused(
        &a,
        &with_pass(req(Action::Read, Some("public/x"), REMOTE), "admin", "nope"),
    )
    .await;
}

#[tokio::test]
async fn config_errors_name_their_setting() {
    for (text, key) in [
        (
            "[[users]]\nuser = \"a\"\npassword = \"p\"\npermissions = [{ action = \"read\", path = \"live\" }]",
            "auth.users[0].permissions[0].path",
        ),
        (
            "[[users]]\nuser = \"a\"\npassword = \"p\"\npermissions = [{ action = \"metrics\", path = \"live/*\" }]",
            "auth.users[0].permissions[0].path",
        ),
        (
            "[[users]]\nuser = \"a\"\npassword_hash = \"nope\"",
            "auth.users[0].password_hash",
        ),
        ("[jwt]\nsecret = \"a\"\njwks_file = \"/x\"", "auth.jwt"),
        (
            "[jwt]\njwks_url = \"https://example.invalid/jwks\"",
            "auth.jwt.jwks_url",
        ),
        ("[http]\nurl = \"ftp://127.0.0.1/\"", "auth.http.url"),
        ("token_secret = \"short\"", "auth.token_secret"),
        (
            "[jwt]\njwks_file = \"/nonexistent/jwks.json\"",
            "auth.jwt.jwks_file",
        ),
    ] {
        if (text.contains("[jwt]") && !cfg!(feature = "jwt"))
            || (text.contains("jwks_url") && !cfg!(feature = "http"))
            || (text.contains("[http]") && !cfg!(feature = "http"))
        {
            continue;
        }
        let config: AuthConfig = toml::from_str(text).expect(text);
        let e = Authorization::new(config).expect_err(text);
        assert!(e.to_string().starts_with(key), "{text}: {e}");
    }
}

#[tokio::test]
async fn reload_applies_to_the_next_request_and_keeps_read_tokens() {
    let a = Authorization::defaults();
    let key = StreamKey::parse("live/a").expect("key");
    let token = a.sign_read_token(&key, Duration::from_secs(60));
    allowed(&a, &req(Action::Publish, Some("live/a"), LOOPBACK)).await;
    let config: AuthConfig = toml::from_str(
        "[[users]]\nuser = \"u\"\npassword = \"p\"\npermissions = [{ action = \"publish\" }]",
    )
    .expect("config");
    let engine_side = a.clone();
    a.reload(config).expect("reload");
    refused(
        &engine_side,
        &req(Action::Publish, Some("live/a"), LOOPBACK),
    )
    .await;
    allowed(
        &engine_side,
        &with_pass(req(Action::Publish, Some("live/a"), LOOPBACK), "u", "p"),
    )
    .await;
    allowed(
        &engine_side,
        &with_token(req(Action::Read, Some("live/a"), REMOTE), &token),
    )
    .await;
    // A bad configuration leaves the previous one.
    let bad: AuthConfig = toml::from_str("[[users]]\nuser = \"x\"").expect("config");
    assert!(a.reload(bad).is_err());
    allowed(
        &a,
        &with_pass(req(Action::Publish, Some("live/a"), LOOPBACK), "u", "p"),
    )
    .await;
}

#[tokio::test]
async fn signed_read_tokens_round_trip_and_expire() {
    let clock = clock();
    let a = auth_at(
        "[[users]]\nuser = \"viewer\"\npassword = \"pw\"\npermissions = [{ action = \"read\" }]",
        &clock,
    );
    let key = StreamKey::parse("live/a").expect("key");
    let token = a.sign_read_token_for(&key, Duration::from_secs(30), &Identity::named("viewer"));
    let info = a.verify_read_token(&key, &token).expect("valid");
    assert_eq!(info.user.as_deref(), Some("viewer"));
    // As a bearer token or as ?token=, for read and playback of that stream only.
    let id = allowed(
        &a,
        &with_token(req(Action::Read, Some("live/a"), REMOTE), &token),
    )
    .await;
    assert_eq!(id, Identity::named("viewer"));
    allowed(
        &a,
        &req(Action::Playback, Some("live/a"), REMOTE).query(format!("token={token}")),
    )
    .await;
    let e = refused(
        &a,
        &with_token(req(Action::Read, Some("live/b"), REMOTE), &token),
    )
    .await;
    assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
    let e = refused(
        &a,
        &with_token(req(Action::Publish, Some("live/a"), REMOTE), &token),
    )
    .await;
    assert_eq!(e.kind(), RefusalKind::Forbidden);
    clock.advance(Duration::from_secs(30));
    let e = refused(
        &a,
        &with_token(req(Action::Read, Some("live/a"), REMOTE), &token),
    )
    .await;
    assert!(e.reason().contains("expired"), "{e}");
    assert!(a.verify_read_token(&key, &token).is_none());
    // Another process (another random key) does not accept it.
    let other = Authorization::defaults();
    assert!(
        other
            .verify_read_token(&key, &a.sign_read_token(&key, Duration::from_secs(30)))
            .is_none()
    );
    // Two servers with one token_secret do.
    let shared = "token_secret = \"0123456789abcdef0123\"\n[[users]]\nuser = \"any\"\npermissions = [{ action = \"api\" }]";
    let (s1, s2) = (auth_at(shared, &clock), auth_at(shared, &clock));
    let t = s1.sign_read_token(&key, Duration::from_secs(30));
    allowed(
        &s2,
        &with_token(req(Action::Read, Some("live/a"), REMOTE), &t),
    )
    .await;
}

#[tokio::test]
async fn digest_with_nonces_of_this_server() {
    use md5::{Digest as _, Md5};
    fn h(parts: &[&str]) -> String {
        let d = Md5::digest(parts.join(":").as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
    let clock = clock();
    let phc = hash_password("pw").expect("hash");
    let a = auth_at(
        &format!(
            r#"
            realm = "cams"
            [[users]]
            user = "cam"
            password = "pw"
            permissions = [{{ action = "publish" }}]
            [[users]]
            user = "hashed"
            password_hash = "{phc}"
            permissions = [{{ action = "publish" }}]
            "#
        ),
        &clock,
    );
    assert_eq!(a.realm(), "cams");
    let digest = |user: &str, password: &str, nonce: &str| {
        let ha1 = h(&[user, "cams", password]);
        let ha2 = h(&["ANNOUNCE", "rtsp://127.0.0.1:8554/live/a"]);
        let response = h(&[&ha1, nonce, "00000001", "abcd", "auth", &ha2]);
        Credentials::Digest(Box::new(DigestCredentials {
            user: user.into(),
            realm: "cams".into(),
            nonce: nonce.into(),
            uri: "rtsp://127.0.0.1:8554/live/a".into(),
            method: "ANNOUNCE".into(),
            response,
            algorithm: None,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("abcd".into()),
        }))
    };
    let nonce = a.digest_nonce();
    let r = req(Action::Publish, Some("live/a"), REMOTE);
    assert_eq!(
        allowed(&a, &r.clone().credentials(digest("cam", "pw", &nonce))).await,
        Identity::named("cam")
    );
    let e = refused(&a, &r.clone().credentials(digest("cam", "nope", &nonce))).await;
    assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
    // A hashed password cannot be checked by Digest, and says so.
    let e = refused(&a, &r.clone().credentials(digest("hashed", "pw", &nonce))).await;
    assert!(e.reason().contains("plain password"), "{e}");
    // A nonce of someone else, or too old.
    let e = refused(
        &a,
        &r.clone()
            .credentials(digest("cam", "pw", "dcd98b7102dd2f0e8b11d0f600bfb0c093")),
    )
    .await;
    assert!(e.reason().contains("nonce"), "{e}");
    clock.advance(Duration::from_secs(301));
    let e = refused(&a, &r.clone().credentials(digest("cam", "pw", &nonce))).await;
    assert!(e.reason().contains("stale"), "{e}");
}

#[tokio::test]
async fn failed_attempts_are_rate_limited_per_address() {
    let clock = clock();
    let a = auth_at(
        r#"
        [[users]]
        user = "u"
        password = "right"
        permissions = [{ action = "publish" }]
        [rate_limit]
        max_failures = 3
        window_s = 60
        ban_s = 30
        "#,
        &clock,
    );
    let r = req(Action::Publish, Some("live/a"), REMOTE);
    for _ in 0..3 {
        refused(&a, &with_pass(r.clone(), "u", "wrong")).await;
    }
    let e = refused(&a, &with_pass(r.clone(), "u", "right")).await;
    assert_eq!(e.kind(), RefusalKind::RateLimited);
    assert_eq!(
        e.reason(),
        "too many failed attempts from 192.0.2.7; refused for 30 s more (auth.rate_limit)"
    );
    // Missing credentials and missing permissions are not failures.
    let other = req(Action::Publish, Some("live/a"), "192.0.2.8:1");
    for _ in 0..5 {
        refused(&a, &other).await;
    }
    allowed(&a, &with_pass(other, "u", "right")).await;
    clock.advance(Duration::from_secs(30));
    allowed(&a, &with_pass(r, "u", "right")).await;
    let stats = a.stats();
    assert_eq!(stats.refused(RefusalCause::RateLimited), 1);
    assert_eq!(stats.refused(RefusalCause::InvalidCredentials), 3);
    assert_eq!(stats.refused(RefusalCause::AnonymousNotAllowed), 5);
    assert_eq!(stats.allowed, 2);
}

#[tokio::test]
async fn the_engine_asks_it_and_reports_the_refusal_line() {
    use tidewater_core::{AppSpec, Engine, Request};
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .authorizer(Authorization::defaults())
        .build()
        .expect("engine");
    let key = StreamKey::parse("live/cam1").expect("key");
    let err = engine
        .open_publish(Request::new(key.clone(), "rtmp").peer(REMOTE.parse().expect("peer")))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().starts_with(
            "publish live/cam1 from 192.0.2.7 refused: anonymous publish is allowed from loopback only"
        ),
        "{err}"
    );
    match err {
        tidewater_core::Error::Unauthorized { refusal, .. } => {
            assert_eq!(refusal.kind(), RefusalKind::Forbidden);
        }
        other => panic!("{other:?}"),
    }
    let session = engine
        .open_publish(Request::new(key, "rtmp").peer(LOOPBACK.parse().expect("peer")))
        .await
        .expect("loopback publishes");
    session.finish().await;
}

#[cfg(feature = "jwt")]
mod jwt {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "a-long-enough-hs256-secret-for-tests";

    fn hs256(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
        )
        .expect("encode")
    }

    fn now_s() -> u64 {
        start()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("epoch")
            .as_secs()
    }

    fn claims(exp_in: i64) -> serde_json::Value {
        json!({
            "sub": "alice",
            "iss": "https://issuer.example",
            "aud": "tidewater",
            "exp": now_s() as i64 + exp_in,
            "tidewater_permissions": [
                { "action": "publish", "path": "live/*" },
                { "action": "api" }
            ]
        })
    }

    fn config(extra: &str) -> String {
        format!("[jwt]\nsecret = \"{SECRET}\"\n{extra}")
    }

    #[tokio::test]
    async fn hs256_valid_expired_wrong_secret() {
        let clock = clock();
        let a = auth_at(&config(""), &clock);
        let token = hs256(claims(60), SECRET);
        let r = with_token(req(Action::Publish, Some("live/a"), REMOTE), &token);
        assert_eq!(allowed(&a, &r).await, Identity::named("alice"));
        allowed(
            &a,
            &req(Action::Api, None, REMOTE).query(format!("token={token}")),
        )
        .await;
        let e = refused(
            &a,
            &with_token(req(Action::Publish, Some("other/a"), REMOTE), &token),
        )
        .await;
        assert_eq!(e.kind(), RefusalKind::Forbidden);
        assert_eq!(
            e.reason(),
            "the token of \"alice\" has no permission to publish other/a; its \
             tidewater_permissions claim needs {\"action\": \"publish\", \"path\": \"other/*\"}"
        );
        let e = refused(
            &a,
            &with_token(
                req(Action::Publish, Some("live/a"), REMOTE),
                &hs256(claims(60), "another-secret-of-someone-else"),
            ),
        )
        .await;
        assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
        assert!(e.reason().contains("signature"), "{e}");
        // exp, with the default 30 s of leeway, on the authorizer's clock.
        clock.advance(Duration::from_secs(60 + 30));
        allowed(&a, &r).await;
        clock.advance(Duration::from_secs(1));
        let e = refused(&a, &r).await;
        assert_eq!(e.reason(), "invalid token: expired (exp)");
        let mut no_exp = claims(0);
        no_exp.as_object_mut().expect("object").remove("exp");
        let e = refused(
            &a,
            &with_token(req(Action::Api, None, REMOTE), &hs256(no_exp, SECRET)),
        )
        .await;
        assert!(e.reason().contains("no exp"), "{e}");
        // Garbage is an invalid token, not a crash.
        refused(&a, &with_token(req(Action::Api, None, REMOTE), "a.b.c")).await;
        let e = refused(&a, &with_token(req(Action::Api, None, REMOTE), "opaque")).await;
        assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
        assert!(a.stats().refused(RefusalCause::InvalidToken) >= 4);
    }

    #[tokio::test]
    async fn audience_and_issuer() {
        let a = auth(&config(
            "audience = \"tidewater\"\nissuer = \"https://issuer.example\"",
        ));
        let r = |t: &str| with_token(req(Action::Api, None, REMOTE), t);
        allowed(&a, &r(&hs256(claims(60), SECRET))).await;
        let mut wrong_aud = claims(60);
        wrong_aud["aud"] = json!("someone-else");
        let e = refused(&a, &r(&hs256(wrong_aud, SECRET))).await;
        assert_eq!(
            e.reason(),
            "invalid token: aud is not \"tidewater\" (auth.jwt.audience)"
        );
        let mut wrong_iss = claims(60);
        wrong_iss["iss"] = json!("https://evil.example");
        let e = refused(&a, &r(&hs256(wrong_iss, SECRET))).await;
        assert_eq!(
            e.reason(),
            "invalid token: iss is not \"https://issuer.example\" (auth.jwt.issuer)"
        );
        let mut no_iss = claims(60);
        no_iss.as_object_mut().expect("object").remove("iss");
        let e = refused(&a, &r(&hs256(no_iss, SECRET))).await;
        assert_eq!(e.reason(), "invalid token: claim iss is missing");
        let mut no_aud = claims(60);
        no_aud.as_object_mut().expect("object").remove("aud");
        refused(&a, &r(&hs256(no_aud, SECRET))).await;
        // Without a configured audience, a token's aud is not checked.
        allowed(&auth(&config("")), &r(&hs256(claims(60), SECRET))).await;
    }

    #[tokio::test]
    async fn a_bad_permissions_claim_is_an_invalid_token() {
        let a = auth(&config(""));
        let mut c = claims(60);
        c["tidewater_permissions"] = json!([{ "action": "fly" }]);
        let e = refused(
            &a,
            &with_token(req(Action::Api, None, REMOTE), &hs256(c, SECRET)),
        )
        .await;
        assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
        let mut c = claims(60);
        c["tidewater_permissions"] = json!([{ "action": "read", "path": "nopath" }]);
        let e = refused(
            &a,
            &with_token(req(Action::Read, Some("live/a"), REMOTE), &hs256(c, SECRET)),
        )
        .await;
        assert!(e.reason().contains("tidewater_permissions[0].path"), "{e}");
    }

    /// An ES256 key pair: the signing key and its public JWK.
    pub(crate) struct EcKey {
        pub(crate) signing: EncodingKey,
        pub(crate) jwk: serde_json::Value,
        pub(crate) kid: String,
    }

    pub(crate) fn es256_key(kid: &str) -> EcKey {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        EcKey {
            signing: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
            kid: kid.into(),
        }
    }

    pub(crate) fn es256(key: &EcKey, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        encode(&header, &claims, &key.signing).expect("encode")
    }

    pub(crate) fn jwks(keys: &[&EcKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tidewater-auth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn write_jwks(path: &std::path::Path, text: &str, modified: SystemTime) {
        std::fs::write(path, text).expect("write");
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(modified))
            .expect("mtime");
    }

    #[tokio::test]
    async fn es256_from_a_jwks_file_that_is_rotated() {
        let dir = scratch("rotate");
        let path = dir.join("jwks.json");
        let (one, two) = (es256_key("one"), es256_key("two"));
        write_jwks(&path, &jwks(&[&one]), start());
        let clock = clock();
        let a = auth_at(
            &format!("[jwt]\njwks_file = {:?}", path.display().to_string()),
            &clock,
        );
        let t1 = es256(&one, claims(600));
        let t2 = es256(&two, claims(600));
        let r = |t: &str| with_token(req(Action::Publish, Some("live/a"), REMOTE), t);
        assert_eq!(allowed(&a, &r(&t1)).await, Identity::named("alice"));
        let e = refused(&a, &r(&t2)).await;
        assert_eq!(
            e.reason(),
            "invalid token: no ES256 key with kid \"two\" in auth.jwt.jwks_file"
        );

        // Rotate: the file is looked at again at most once a second.
        write_jwks(&path, &jwks(&[&two]), start() + Duration::from_secs(10));
        refused(&a, &r(&t2)).await;
        clock.advance(Duration::from_secs(1));
        allowed(&a, &r(&t2)).await;
        refused(&a, &r(&t1)).await;

        // A broken file keeps the keys that worked.
        write_jwks(&path, "{ not json", start() + Duration::from_secs(20));
        clock.advance(Duration::from_secs(1));
        allowed(&a, &r(&t2)).await;
        // ... until a good one replaces it.
        write_jwks(
            &path,
            &jwks(&[&one, &two]),
            start() + Duration::from_secs(30),
        );
        clock.advance(Duration::from_secs(1));
        allowed(&a, &r(&t1)).await;
        allowed(&a, &r(&t2)).await;

        // HS256 tokens are not accepted against a public key set.
        let e = refused(&a, &r(&hs256(claims(600), SECRET))).await;
        assert!(e.reason().contains("public keys"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(all(feature = "http", feature = "jwt"))]
mod http {
    use super::*;
    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use serde_json::Value;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone, Default)]
    struct Seen {
        hook_calls: Arc<AtomicUsize>,
        bodies: Arc<Mutex<Vec<Value>>>,
        jwks: Arc<Mutex<String>>,
        jwks_calls: Arc<AtomicUsize>,
    }

    async fn hook(State(s): State<Seen>, Json(body): Json<Value>) -> StatusCode {
        s.hook_calls.fetch_add(1, Ordering::SeqCst);
        s.bodies.lock().expect("lock").push(body.clone());
        match (
            body["user"].as_str(),
            body["password"].as_str(),
            body["token"].as_str(),
        ) {
            (Some("hooked"), Some("pw"), _) => StatusCode::NO_CONTENT,
            (_, _, Some("hook-token")) => StatusCode::OK,
            (Some(_), _, _) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }

    async fn serve() -> (std::net::SocketAddr, Seen) {
        let seen = Seen::default();
        let app = axum::Router::new()
            .route("/auth", post(hook))
            .route(
                "/slow",
                post(|| async {
                    std::future::pending::<()>().await;
                    StatusCode::OK
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Seen>| async move {
                    s.jwks_calls.fetch_add(1, Ordering::SeqCst);
                    s.jwks.lock().expect("lock").clone()
                }),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn the_hook_allows_refuses_and_is_cached() {
        let (addr, seen) = serve().await;
        let clock = clock();
        let a = auth_at(
            &format!(
                r#"
                [[users]]
                user = "local"
                password = "pw"
                permissions = [{{ action = "read" }}]
                [http]
                url = "http://{addr}/auth"
                cache_ms = 5000
                "#
            ),
            &clock,
        );
        let r =
            with_pass(req(Action::Publish, Some("live/a"), REMOTE), "hooked", "pw").id("session-1");
        assert_eq!(allowed(&a, &r).await, Identity::named("hooked"));
        {
            let bodies = seen.bodies.lock().expect("lock");
            let b = &bodies[0];
            assert_eq!(b["user"], "hooked");
            assert_eq!(b["password"], "pw");
            assert_eq!(b["ip"], "192.0.2.7");
            assert_eq!(b["action"], "publish");
            assert_eq!(b["path"], "live/a");
            assert_eq!(b["protocol"], "test");
            assert_eq!(b["id"], "session-1");
            assert!(b["token"].is_null());
        }
        // Cached, even for another session id; not after cache_ms.
        allowed(&a, &r.clone().id("session-2")).await;
        assert_eq!(seen.hook_calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_millis(5000));
        allowed(&a, &r).await;
        assert_eq!(seen.hook_calls.load(Ordering::SeqCst), 2);

        // Refusals: wrong password (401), no credentials (403).
        let e = refused(
            &a,
            &with_pass(req(Action::Publish, Some("live/a"), REMOTE), "hooked", "no"),
        )
        .await;
        assert_eq!(e.kind(), RefusalKind::InvalidCredentials);
        assert_eq!(
            e.reason(),
            "the auth hook (auth.http.url) answered 401 to publish live/a"
        );
        let e = refused(&a, &req(Action::Publish, Some("live/a"), REMOTE)).await;
        assert_eq!(e.kind(), RefusalKind::MissingCredentials);
        // Tokens the server does not know go to the hook.
        allowed(
            &a,
            &req(Action::Api, None, REMOTE).query("token=hook-token"),
        )
        .await;
        // Users of the config are decided locally.
        allowed(
            &a,
            &with_pass(req(Action::Read, Some("live/a"), REMOTE), "local", "pw"),
        )
        .await;
        refused(
            &a,
            &with_pass(req(Action::Read, Some("live/a"), REMOTE), "local", "no"),
        )
        .await;
        assert_eq!(seen.hook_calls.load(Ordering::SeqCst), 5);
        assert_eq!(a.stats().refused(RefusalCause::HookRefused), 2);
    }

    #[tokio::test]
    async fn a_hook_that_does_not_answer_refuses() {
        let (addr, _) = serve().await;
        let a = auth(&format!(
            "[http]\nurl = \"http://{addr}/slow\"\ntimeout_ms = 200"
        ));
        let e = refused(
            &a,
            &with_pass(req(Action::Read, Some("live/a"), REMOTE), "u", "p"),
        )
        .await;
        assert_eq!(e.kind(), RefusalKind::Unavailable);
        assert!(e.reason().contains("within 200 ms"), "{e}");
        // Nothing listens there.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let a = auth(&format!("[http]\nurl = \"http://{gone}/auth\""));
        let e = refused(&a, &req(Action::Read, Some("live/a"), REMOTE)).await;
        assert_eq!(e.kind(), RefusalKind::Unavailable);
        assert_eq!(a.stats().refused(RefusalCause::Unavailable), 1);
    }

    #[tokio::test]
    async fn jwks_url_is_fetched_and_refreshed() {
        use super::jwt::{es256, es256_key, jwks};
        let (addr, seen) = serve().await;
        let (one, two) = (es256_key("one"), es256_key("two"));
        *seen.jwks.lock().expect("lock") = jwks(&[&one]);
        let clock = clock();
        let a = auth_at(
            &format!("[jwt]\njwks_url = \"http://{addr}/jwks\"\njwks_refresh_s = 60"),
            &clock,
        );
        assert_eq!(
            seen.jwks_calls.load(Ordering::SeqCst),
            0,
            "fetched on first use"
        );
        let exp = start()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("epoch")
            .as_secs()
            + 3600;
        let claims = serde_json::json!({ "sub": "svc", "exp": exp, "tidewater_permissions": [{ "action": "metrics" }] });
        let r = |t: &str| with_token(req(Action::Metrics, None, REMOTE), t);
        let (t1, t2) = (es256(&one, claims.clone()), es256(&two, claims));
        allowed(&a, &r(&t1)).await;
        allowed(&a, &r(&t1)).await;
        assert_eq!(seen.jwks_calls.load(Ordering::SeqCst), 1);

        // The set rotates at the source: an unknown kid fetches again, at most every 10 s.
        *seen.jwks.lock().expect("lock") = jwks(&[&two]);
        clock.advance(Duration::from_secs(5));
        refused(&a, &r(&t2)).await;
        assert_eq!(seen.jwks_calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(5));
        allowed(&a, &r(&t2)).await;
        assert_eq!(seen.jwks_calls.load(Ordering::SeqCst), 2);
        // And every jwks_refresh_s anyway.
        clock.advance(Duration::from_secs(60));
        refused(&a, &r(&t1)).await;
        assert_eq!(seen.jwks_calls.load(Ordering::SeqCst), 3);

        // A source that fails keeps the keys it gave.
        *seen.jwks.lock().expect("lock") = "oops".into();
        clock.advance(Duration::from_secs(61));
        allowed(&a, &r(&t2)).await;
        assert_eq!(seen.jwks_calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn jwks_url_that_never_answered_is_unavailable() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let a = auth(&format!("[jwt]\njwks_url = \"http://{gone}/jwks\""));
        let key = super::jwt::es256_key("k");
        let t = super::jwt::es256(&key, serde_json::json!({ "exp": 4_000_000_000u64 }));
        let e = refused(&a, &with_token(req(Action::Api, None, REMOTE), &t)).await;
        assert_eq!(e.kind(), RefusalKind::Unavailable);
    }
}
