use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use tidewater::{DuplicatePublish, Request, StreamKey, StreamPolicy};

use super::*;

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn parse(file: &str, vars: &[(&str, &str)]) -> Result<Config> {
    Config::layered(Some((file, Path::new("test.toml"))), env(vars))
}

fn parse_ok(file: &str, vars: &[(&str, &str)]) -> Config {
    match parse(file, vars) {
        Ok(config) => config,
        Err(e) => panic!("config refused: {e}"),
    }
}

/// The error's one-line text; panics if the configuration was accepted.
fn refused(file: &str, vars: &[(&str, &str)]) -> String {
    match parse(file, vars) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "not one line: {text}");
            text
        }
    }
}

fn key(text: &str) -> StreamKey {
    StreamKey::parse(text).expect("valid key")
}

#[test]
fn defaults_need_no_file() {
    let config = Config::load(None, env(&[("PATH", "/bin"), ("HOME", "/root")])).expect("defaults");
    assert_eq!(config, Config::default());
    assert_eq!(config.http.listen, "0.0.0.0:8888".parse().expect("addr"));
    assert_eq!(config.log.level, "info");
    assert!(config.defaults.allows_unknown_apps());
    assert!(config.apps.is_empty());
    let spec = config.default_spec().expect("valid");
    assert_eq!(spec.policy, StreamPolicy::default());
    assert_eq!(spec.max_publishers, 0);
    assert_eq!(spec.duplicate, DuplicatePublish::Reject);
}

#[test]
fn example_file_matches_the_built_in_defaults() {
    let example = include_str!("../../tidewater.toml");
    let config = Config::from_toml_str(example).expect("the example parses");
    let (ours, builtin) = (
        config.default_spec().expect("valid"),
        Config::default().default_spec().expect("valid"),
    );
    assert_eq!(config.http, Config::default().http);
    assert_eq!(config.rtmp, Config::default().rtmp);
    assert_eq!(config.rtmps, Config::default().rtmps);
    assert_eq!(config.log, Config::default().log);
    assert_eq!(config.web, Config::default().web);
    assert_eq!(config.record, Config::default().record);
    // `push = []` in [defaults] is the built-in "no pushes".
    assert!(config.push_routes().expect("valid").is_empty());
    assert!(Config::default().push_routes().expect("valid").is_empty());
    assert!(config.rtmps.server_tls().expect("valid").is_none());
    assert_eq!(
        config.defaults.allows_unknown_apps(),
        Config::default().defaults.allows_unknown_apps()
    );
    assert_eq!(ours.policy, builtin.policy);
    assert_eq!(ours.max_publishers, builtin.max_publishers);
    assert_eq!(ours.duplicate, builtin.duplicate);
    assert!(config.apps.is_empty(), "the example's apps are comments");
    // Every policy key is spelled out in the example.
    assert_eq!(config.defaults.policy().set_keys().len(), 9);
    assert!(config.defaults.max_publishers.is_some() && config.defaults.duplicate.is_some());
}

#[test]
fn the_example_apps_parse_when_uncommented() {
    let example = include_str!("../../tidewater.toml");
    // From the first commented-out [apps.…] section on, uncomment the lines
    // that are TOML (a `[section]` or a `key = value`), not the prose.
    let start = example.find("# [apps.").expect("an example app section");
    let is_toml = |line: &str| {
        line.starts_with('[')
            || line.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
    };
    let uncommented: String = example[start..]
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_toml(rest) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = Config::from_toml_str(&uncommented).expect("the commented examples are valid");
    let live = &config.app_specs().expect("valid")["live"];
    assert_eq!(live.max_publishers, 10);
    assert_eq!(live.duplicate, DuplicatePublish::TakeOver);
    assert_eq!(live.policy_for("lobby").gop_frames, 4096);
    let routes = config.push_routes().expect("valid");
    let targets = |k: &str| routes.targets(&key(k)).to_vec();
    assert_eq!(targets("live/cam1")[0].url.host, "backup.example");
    assert_eq!(targets("live/cam1")[0].url.stream, None);
    assert!(targets("live/lobby")[0].url.secure);
    assert!(targets("other/x").is_empty());
}

#[test]
fn push_lists_inherit_and_errors_name_the_key() {
    let config = parse_ok(
        r#"
        [defaults]
        push = ["rtmp://everything.example/all"]
        [apps.live]
        push = ["rtmp://a.example/live", "rtmps://b.example/live/x?key=1"]
        [apps.live.streams.quiet]
        push = []
        [apps.other]
        "#,
        &[],
    );
    let routes = config.push_routes().expect("valid");
    let hosts = |k: &str| {
        routes
            .targets(&key(k))
            .iter()
            .map(|t| t.url.host.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(hosts("live/cam"), ["a.example", "b.example"]);
    assert!(hosts("live/quiet").is_empty());
    assert_eq!(hosts("other/cam"), ["everything.example"]);
    assert_eq!(hosts("unnamed/cam"), ["everything.example"]);

    let e = refused(
        "[apps.live]\npush = [\"rtmp://ok/live\", \"http://x/live?token=s3cret\"]\n",
        &[],
    );
    assert!(e.contains("apps.live.push[1]"), "{e}");
    assert!(e.contains("rtmp:// or rtmps://"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
    let e = refused(
        "[defaults]\npush = [\"rtmps://x/live\"]\npush_ca_file = \"/nonexistent/ca.pem\"\n",
        &[],
    );
    assert!(e.contains("defaults.push_ca_file"), "{e}");
    let e = refused("", &[("TIDEWATER_APPS__LIVE__PUSH", "[\"rtmp://\"]")]);
    assert!(
        e.contains("apps.live.push[0]") && e.contains("TIDEWATER_APPS__LIVE__PUSH"),
        "{e}"
    );
    let e = refused("[rtmps]\ncert = \"/nonexistent/cert.pem\"\n", &[]);
    assert!(e.contains("rtmps.key"), "{e}");
    let e = refused(
        "[rtmps]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
        &[],
    );
    assert!(
        e.contains("rtmps.cert") && e.contains("/nonexistent/cert.pem"),
        "{e}"
    );
    let e = refused("[rtmp]\npush_retry_max_ms = 100\n", &[]);
    assert!(e.contains("rtmp.push_retry_max_ms"), "{e}");
}

#[test]
fn apps_inherit_defaults_and_streams_inherit_their_app() {
    let config = parse_ok(
        r#"
        [defaults]
        max_lag_ms = 2000
        max_publishers = 4
        duplicate = "take_over"

        [apps.live]
        ring_frames = 8192
        max_publishers = 2

        [apps.live.streams.lobby]
        gop_frames = 4000
        idle_timeout_ms = 1500

        [apps.vod]
        "#,
        &[],
    );
    let specs = config.app_specs().expect("valid");
    let kernel = StreamPolicy::default();

    let live = &specs["live"];
    assert_eq!(live.max_publishers, 2);
    assert_eq!(
        live.duplicate,
        DuplicatePublish::TakeOver,
        "inherited from [defaults]"
    );
    assert_eq!(live.policy.ring_frames, 8192);
    assert_eq!(
        live.policy.max_lag,
        Duration::from_secs(2),
        "inherited from [defaults]"
    );
    assert_eq!(live.policy.gop_frames, kernel.gop_frames);

    let lobby = live.policy_for("lobby");
    assert_eq!(lobby.gop_frames, 4000);
    assert_eq!(lobby.idle_timeout, Duration::from_millis(1500));
    assert_eq!(lobby.ring_frames, 8192, "inherited from [apps.live]");
    assert_eq!(
        lobby.max_lag,
        Duration::from_secs(2),
        "inherited from [defaults]"
    );
    assert_eq!(live.policy_for("other"), &live.policy);

    let vod = &specs["vod"];
    assert_eq!(vod.max_publishers, 4);
    assert_eq!(vod.policy.ring_frames, kernel.ring_frames);

    let unknown = config.default_spec().expect("valid");
    assert_eq!(unknown.max_publishers, 4);
    assert_eq!(unknown.policy.max_lag, Duration::from_secs(2));
}

#[test]
fn env_values_are_toml_scalars_with_a_string_fallback() {
    use toml::Value;
    assert_eq!(env_value("3"), Value::Integer(3));
    assert_eq!(env_value("true"), Value::Boolean(true));
    assert_eq!(env_value("1.5"), Value::Float(1.5));
    assert_eq!(env_value("\"123\""), Value::String("123".into()));
    assert_eq!(
        env_value("127.0.0.1:9000"),
        Value::String("127.0.0.1:9000".into())
    );
    assert_eq!(env_value("take_over"), Value::String("take_over".into()));
    assert_eq!(
        env_value("info,tidewater_core=debug"),
        Value::String("info,tidewater_core=debug".into())
    );
    assert_eq!(env_value(""), Value::String(String::new()));
    // No smuggling of extra keys or sections through a value.
    assert_eq!(
        env_value("1\nother = 2"),
        Value::String("1\nother = 2".into())
    );
    assert_eq!(env_value("{ a = 1 }"), Value::String("{ a = 1 }".into()));
}

#[test]
fn env_overrides_any_key_and_beats_the_file() {
    let file = r#"
        [http]
        listen = "127.0.0.2:7000"
        [log]
        level = "warn"
        [apps.live]
        max_publishers = 1
    "#;
    let config = parse_ok(
        file,
        &[
            ("TIDEWATER_HTTP__LISTEN", "127.0.0.1:9000"),
            ("TIDEWATER_LOG__LEVEL", "info,tidewater_core=debug"),
            ("TIDEWATER_APPS__LIVE__MAX_PUBLISHERS", "3"),
            ("TIDEWATER_APPS__LIVE__STREAMS__CAM1__GOP_FRAMES", "512"),
            ("TIDEWATER_APPS__NEWS__DUPLICATE", "take_over"),
            ("TIDEWATER_DEFAULTS__ALLOW_UNKNOWN_APPS", "false"),
            ("TIDEWATER_DEFAULTS__IDLE_TIMEOUT_MS", "2500"),
            ("TIDEWATER_CONFIG", "/elsewhere.toml"),
            ("TIDEWATERISH", "not ours"),
            ("PATH", "/usr/bin"),
        ],
    );
    assert_eq!(config.http.listen, "127.0.0.1:9000".parse().expect("addr"));
    assert_eq!(config.log.level, "info,tidewater_core=debug");
    assert!(!config.defaults.allows_unknown_apps());
    let specs = config.app_specs().expect("valid");
    assert_eq!(specs["live"].max_publishers, 3);
    assert_eq!(specs["live"].policy_for("cam1").gop_frames, 512);
    assert_eq!(
        specs["live"].policy.idle_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(
        specs["news"].duplicate,
        DuplicatePublish::TakeOver,
        "an app created by the environment alone"
    );
}

#[test]
fn env_without_a_file_applies_over_the_defaults() {
    let config = Config::load(None, env(&[("TIDEWATER_HTTP__LISTEN", "[::1]:0")])).expect("valid");
    assert_eq!(config.http.listen, "[::1]:0".parse().expect("addr"));
    assert_eq!(config.log, LogConfig::default());
}

/// A file, environment variables, and what the error must mention.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn errors_name_the_key_and_where_it_came_from() {
    let cases: &[Case] = &[
        (
            "[http]\nlistne = \"127.0.0.1:1\"",
            &[],
            &[
                "http.listne",
                "unknown key",
                "expected one of `listen`",
                "in test.toml",
            ],
        ),
        (
            "[rtmp]\nchunk_size = 64",
            &[],
            &["rtmp.chunk_size", "invalid value 64", "128..=16777215"],
        ),
        (
            "[rtmp]\nlistne = \"0.0.0.0:1935\"",
            &[],
            &["rtmp.listne", "unknown key"],
        ),
        (
            "[http]\nlisten = 8888",
            &[],
            &[
                "http.listen",
                "invalid type: integer `8888`",
                "in test.toml",
            ],
        ),
        (
            "[http]\nlisten = \"localhost\"",
            &[],
            &["http.listen", "in test.toml"],
        ),
        (
            "[log]\nlevel = \"verbose\"",
            &[],
            &["log.level", "\"verbose\" is not a level"],
        ),
        (
            "[log]\nlevel = \"info,x=loud\"",
            &[],
            &["log.level", "invalid filter"],
        ),
        (
            "[defaults]\nring_frames = 10",
            &[],
            &[
                "defaults.ring_frames",
                "invalid value 10",
                "ring_frames must be at least",
            ],
        ),
        (
            "[defaults]\nmax_publishers = -1",
            &[],
            &["defaults.max_publishers", "invalid value: integer `-1`"],
        ),
        (
            "[defaults]\nduplicate = \"maybe\"",
            &[],
            &[
                "defaults.duplicate",
                "unknown variant `maybe`",
                "`take_over`",
            ],
        ),
        (
            "[defaults]\nallow_unknown_apps = false",
            &[],
            &["defaults.allow_unknown_apps", "no [apps.NAME] section"],
        ),
        (
            "[defaults]\nallow_unknown_apps = \"yes\"",
            &[],
            &["defaults.allow_unknown_apps", "expected a boolean"],
        ),
        (
            "[apps.live]\nmax_lag_ms = 0",
            &[],
            &["apps.live.max_lag_ms", "invalid value 0", "positive"],
        ),
        (
            "[apps.live]\nallow_unknown_apps = true",
            &[],
            &["apps.live.allow_unknown_apps", "unknown key"],
        ),
        (
            "[apps.live]\nmax_skips = 5000000000",
            &[],
            &["apps.live.max_skips", "expected u32"],
        ),
        (
            "[apps.\"a b\"]",
            &[],
            &["apps.\"a b\"", "invalid application name"],
        ),
        (
            "[apps.live.streams.cam]\ngop_frames = 100000",
            &[],
            &[
                "apps.live.streams.cam.gop_frames",
                "invalid value 100000",
                "must not exceed the ring",
            ],
        ),
        (
            "[apps.live.streams.cam]\nduplicate = \"reject\"",
            &[],
            &["apps.live.streams.cam.duplicate", "unknown key"],
        ),
        (
            "[apps.live.streams.\"..\"]",
            &[],
            &["apps.live.streams.\"..\"", "invalid stream name"],
        ),
        ("apps = []", &[], &["apps", "invalid type: sequence"]),
        (
            "",
            &[("TIDEWATER_APPS__LIVE__MAX_PUBLISHERS", "lots")],
            &[
                "apps.live.max_publishers",
                "invalid type: string \"lots\"",
                "set by TIDEWATER_APPS__LIVE__MAX_PUBLISHERS",
            ],
        ),
        (
            "[apps.live]\nmax_publishers = 2",
            &[("TIDEWATER_APPS__LIVE__RING_FRAMES", "1")],
            &[
                "apps.live.ring_frames",
                "invalid value 1",
                "set by TIDEWATER_APPS__LIVE__RING_FRAMES",
            ],
        ),
        (
            "",
            &[("TIDEWATER_HTTP__LISTNE", "x")],
            &[
                "http.listne",
                "unknown key",
                "set by TIDEWATER_HTTP__LISTNE",
            ],
        ),
        (
            "",
            &[("TIDEWATER_HTTP_LISTEN", "127.0.0.1:1")],
            &["TIDEWATER_HTTP_LISTEN", "double underscore"],
        ),
        (
            "",
            &[("TIDEWATER_HTTP__", "x")],
            &["TIDEWATER_HTTP__", "not a setting"],
        ),
        (
            "",
            &[("TIDEWATER_BIN", "/x")],
            &["TIDEWATER_BIN", "not a setting"],
        ),
        (
            "",
            &[("TIDEWATER_HTTP__LISTEN__PORT", "1")],
            &["http.listen", "set by TIDEWATER_HTTP__LISTEN__PORT"],
        ),
        (
            "[http]\nlisten = \"127.0.0.1:1\"",
            &[("TIDEWATER_HTTP__LISTEN__PORT", "1")],
            &[
                "TIDEWATER_HTTP__LISTEN__PORT",
                "http.listen is a value, not a section",
            ],
        ),
        ("[apps.live\n", &[], &["test.toml", "line 1", "column"]),
        (
            "[http]\nlisten = \"a\"\nlisten = \"b\"",
            &[],
            &["test.toml", "line 3", "duplicate key"],
        ),
    ];
    for (file, vars, expected) in cases {
        let text = refused(file, vars);
        for part in *expected {
            assert!(
                text.contains(part),
                "{file:?} {vars:?}: {text:?} does not mention {part:?}"
            );
        }
    }
}

#[test]
fn a_missing_file_is_named() {
    let path = std::env::temp_dir().join(format!("tidewater-missing-{}.toml", std::process::id()));
    let err = Config::load(Some(&path), env(&[])).expect_err("missing file");
    assert!(matches!(err, Error::ReadConfig { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn loads_a_file_from_disk() {
    let dir = std::env::temp_dir().join(format!("tidewater-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("tidewater.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:0\"\n[apps.live]\nmax_publishers = 7\n",
    )
    .expect("write");
    let loaded = Config::load(Some(&path), env(&[("TIDEWATER_LOG__LEVEL", "debug")]));
    std::fs::remove_dir_all(&dir).expect("clean up");
    let config = loaded.expect("valid");
    assert_eq!(config.http.listen.port(), 0);
    assert_eq!(config.apps["live"].max_publishers, Some(7));
    assert_eq!(config.log.level, "debug");
}

#[tokio::test(start_paused = true)]
async fn per_stream_overrides_reach_the_engine() {
    let config = parse_ok(
        "[apps.live]\nidle_timeout_ms = 60000\n[apps.live.streams.quick]\nidle_timeout_ms = 1000\n",
        &[],
    );
    let engine = config.build_engine().expect("engine");
    let quick = engine
        .open_publish(Request::new(key("live/quick"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await
        .expect("publish quick");
    let slow = engine
        .open_publish(Request::new(key("live/slow"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await
        .expect("publish slow");
    let other = engine
        .open_publish(Request::new(key("other/slow"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await
        .expect("publish other");

    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        engine.reap_idle(),
        1,
        "only live/quick has a 1 s idle timeout"
    );
    assert!(engine.stream(&key("live/quick")).is_none());
    assert!(engine.stream(&key("live/slow")).is_some());
    assert!(engine.stream(&key("other/slow")).is_some());

    // The app's 60 s against the kernel default (30 s) of unnamed apps.
    tokio::time::advance(Duration::from_secs(40)).await;
    assert_eq!(engine.reap_idle(), 1, "other/slow has the default 30 s");
    assert!(engine.stream(&key("live/slow")).is_some());
    assert!(engine.stream(&key("other/slow")).is_none());
    drop((quick, slow, other));
}

#[tokio::test]
async fn app_settings_from_the_environment_reach_the_engine() {
    let config = parse_ok(
        "[defaults]\nallow_unknown_apps = false\n[apps.news]\n",
        &[
            ("TIDEWATER_APPS__LIVE__MAX_PUBLISHERS", "1"),
            ("TIDEWATER_APPS__NEWS__DUPLICATE", "take_over"),
        ],
    );
    let engine = config.build_engine().expect("engine");

    let _first = engine
        .open_publish(Request::new(key("live/a"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await
        .expect("first publisher");
    let second = engine
        .open_publish(Request::new(key("live/b"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await;
    assert!(
        matches!(
            second,
            Err(tidewater::Error::PublisherLimit { limit: 1, .. })
        ),
        "{second:?}"
    );

    let _news = engine
        .open_publish(Request::new(key("news/x"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await
        .expect("news");
    let taken = engine
        .open_publish(Request::new(key("news/x"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await;
    assert!(taken.is_ok(), "duplicate = take_over: {taken:?}");
    let dup = engine
        .open_publish(Request::new(key("live/a"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await;
    assert!(
        matches!(dup, Err(tidewater::Error::AlreadyPublishing { .. })),
        "live rejects duplicates: {dup:?}"
    );

    let unknown = engine
        .open_publish(Request::new(key("elsewhere/x"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await;
    assert!(
        matches!(unknown, Err(tidewater::Error::UnknownApp { .. })),
        "allow_unknown_apps = false: {unknown:?}"
    );
}

#[tokio::test]
async fn unknown_apps_are_accepted_by_default() {
    let engine = Config::default().build_engine().expect("engine");
    let session = engine
        .open_publish(Request::new(key("anything/x"), "test").peer(([127, 0, 0, 1], 5000).into()))
        .await;
    assert!(session.is_ok(), "{session:?}");
}

#[test]
fn the_rtmp_chunk_size_rule_is_the_librarys() {
    // The library announces and builds chunks up to 24 bits (0xffffff):
    // the server used to stop at 65536.
    for ok in [128, 65_536, 65_537, 16_777_215] {
        let config = parse_ok(&format!("[rtmp]\nchunk_size = {ok}\n"), &[]);
        let worker = config.rtmp.worker_config().expect("valid");
        assert_eq!(worker.chunk_size, ok);
        assert_eq!(worker.validate(), Ok(()));
        assert_eq!(config.rtmp.push_config().expect("valid").chunk_size, ok);
    }
    for bad in [100, 16_777_216] {
        let e = refused(&format!("[rtmp]\nchunk_size = {bad}\n"), &[]);
        assert_eq!(
            e,
            format!(
                "invalid configuration: rtmp.chunk_size: invalid value {bad}: \
                 chunk_size must be 128..=16777215 (in test.toml)"
            )
        );
    }
    let e = refused("", &[("TIDEWATER_RTMP__CHUNK_SIZE", "100")]);
    assert!(
        e.contains("rtmp.chunk_size") && e.contains("set by TIDEWATER_RTMP__CHUNK_SIZE"),
        "{e}"
    );
}

#[test]
fn protocol_sections_report_their_crates_rules_at_the_key() {
    let cases: &[Case] = &[
        (
            "[rtmp]\nwrite_timeout_ms = 0",
            &[],
            &[
                "rtmp.write_timeout_ms",
                "invalid value 0",
                "must be positive",
                "in test.toml",
            ],
        ),
        (
            "[rtmp]\ncoalesce_ms = 1001",
            &[],
            &["rtmp.coalesce_ms", "invalid value 1001", "at most 1s"],
        ),
        (
            "[rtmp]\npush_connect_timeout_ms = 0",
            &[],
            &["rtmp.push_connect_timeout_ms", "invalid value 0"],
        ),
        (
            "[rtmp]\npush_retry_max_ms = 100",
            &[],
            &[
                "rtmp.push_retry_max_ms",
                "invalid value 100",
                "at least backoff.initial",
            ],
        ),
        (
            "[srt]\nlatency_ms = 60001",
            &[],
            &["srt.latency_ms", "invalid value 60001", "at most 60s"],
        ),
        (
            "",
            &[("TIDEWATER_SRT__READ_TIMEOUT_MS", "0")],
            &[
                "srt.read_timeout_ms",
                "set by TIDEWATER_SRT__READ_TIMEOUT_MS",
            ],
        ),
        (
            "[[srt.encryption]]\npath = \"live\"\npassphrase = \"0123456789\"\n\
             [[srt.encryption]]\npath = \"x\"\npassphrase = \"s3cret\"\n",
            &[],
            &[
                "srt.encryption[1].passphrase",
                "10 to 79 bytes",
                "in test.toml",
            ],
        ),
        (
            "[[srt.encryption]]\npath = \"live\"\npassphrase = \"0123456789\"\nkey_length = 20\n",
            &[],
            &[
                "srt.encryption[0].key_length",
                "invalid value 20",
                "16, 24 or 32",
            ],
        ),
        (
            "[hls]\nwindow = 2",
            &[],
            &[
                "hls.window",
                "invalid value 2",
                "at least 3 segments",
                "in test.toml",
            ],
        ),
        (
            "[hls]\npart_ms = 1500",
            &[],
            &[
                "hls.part_ms",
                "invalid value 1500",
                "half the segment target",
            ],
        ),
        (
            "[hls]\nalways_on = [\"nokey\"]",
            &[],
            &["hls.always_on[0]", "invalid stream key", "in test.toml"],
        ),
        (
            "[dash]\nwindow = 1",
            &[],
            &[
                "dash.window",
                "invalid value 1",
                "2 to 1000",
                "in test.toml",
            ],
        ),
        (
            "",
            &[("TIDEWATER_DASH__SEGMENT_MS", "100")],
            &[
                "dash.segment_ms",
                "invalid value 100",
                "set by TIDEWATER_DASH__SEGMENT_MS",
            ],
        ),
    ];
    for (file, vars, expected) in cases {
        let text = refused(file, vars);
        for part in *expected {
            assert!(
                text.contains(part),
                "{file:?} {vars:?}: {text:?} does not mention {part:?}"
            );
        }
        assert!(!text.contains("s3cret"), "{text}");
    }
    // A disabled section is not checked.
    parse_ok(
        "[dash]\nenabled = false\nwindow = 1\n[hls]\nenabled = false\nwindow = 1\n",
        &[],
    );
}

#[test]
fn rtmp_connection_limits_and_handshake_timeout_are_mapped_and_checked_at_the_key() {
    let config = parse_ok(
        "[rtmp]\nhandshake_timeout_ms = 2500\nmax_connections = 50\n\
         max_connections_per_ip = 3\nmax_connections_per_loopback_ip = 7\n",
        &[],
    );
    let worker = config.rtmp.worker_config().expect("valid");
    assert_eq!(worker.handshake_timeout, Duration::from_millis(2500));
    assert_eq!(
        (
            worker.max_connections,
            worker.max_connections_per_ip,
            worker.max_connections_per_loopback_ip
        ),
        (50, 3, 7)
    );
    let default = Config::default().rtmp.worker_config().expect("valid");
    assert_eq!(
        default.handshake_timeout,
        tidewater::rtmp::DEFAULT_HANDSHAKE_TIMEOUT
    );
    assert_eq!(
        (
            default.max_connections,
            default.max_connections_per_ip,
            default.max_connections_per_loopback_ip
        ),
        (20_000, 200, 2000)
    );
    let env = parse_ok("", &[("TIDEWATER_RTMP__MAX_CONNECTIONS_PER_IP", "9")]);
    assert_eq!(env.rtmp.max_connections_per_ip, 9);
    for (file, key) in [
        (
            "[rtmp]\nhandshake_timeout_ms = 0\n",
            "rtmp.handshake_timeout_ms",
        ),
        ("[rtmp]\nmax_connections = 0\n", "rtmp.max_connections"),
        (
            "[rtmp]\nmax_connections_per_ip = 0\n",
            "rtmp.max_connections_per_ip",
        ),
        (
            "[rtmp]\nmax_connections_per_loopback_ip = 0\n",
            "rtmp.max_connections_per_loopback_ip",
        ),
    ] {
        let text = refused(file, &[]);
        for part in [key, "invalid value 0", "in test.toml"] {
            assert!(text.contains(part), "{text:?} does not mention {part:?}");
        }
    }
}

#[test]
fn hls_player_idle_timeout_is_mapped_and_its_rule_reported_at_the_key() {
    let config = parse_ok("[hls]\nplayer_idle_timeout_ms = 45000\n", &[]);
    let hls = config.hls.hls_config().expect("valid").expect("enabled");
    assert_eq!(hls.player_idle_timeout, std::time::Duration::from_secs(45));
    let default = Config::default()
        .hls
        .hls_config()
        .expect("valid")
        .expect("enabled");
    assert_eq!(
        default.player_idle_timeout,
        tidewater::hls::DEFAULT_PLAYER_IDLE_TIMEOUT
    );
    let text = refused("[hls]\nplayer_idle_timeout_ms = 5000\n", &[]);
    for part in [
        "hls.player_idle_timeout_ms",
        "invalid value 5000",
        "twice the maximum segment",
        "in test.toml",
    ] {
        assert!(text.contains(part), "{text:?} does not mention {part:?}");
    }
}

#[test]
fn dash_player_idle_timeout_is_mapped_and_its_rule_reported_at_the_key() {
    let config = parse_ok("[dash]\nplayer_idle_timeout_ms = 45000\n", &[]);
    let dash = config.dash.dash_config().expect("valid").expect("enabled");
    assert_eq!(dash.player_idle_timeout, std::time::Duration::from_secs(45));
    let default = Config::default()
        .dash
        .dash_config()
        .expect("valid")
        .expect("enabled");
    assert_eq!(
        default.player_idle_timeout,
        tidewater::dash::DEFAULT_PLAYER_IDLE_TIMEOUT
    );
    for (file, vars) in [
        ("[dash]\nplayer_idle_timeout_ms = 3000\n", &[][..]),
        (
            "[dash]\nsegment_ms = 10000\n",
            &[("TIDEWATER_DASH__PLAYER_IDLE_TIMEOUT_MS", "9000")][..],
        ),
    ] {
        let text = refused(file, vars);
        for part in [
            "dash.player_idle_timeout_ms",
            "invalid value",
            "at least segment_target",
        ] {
            assert!(text.contains(part), "{text:?} does not mention {part:?}");
        }
    }
}

#[test]
fn srt_connection_limits_and_handshake_timeout_are_mapped_and_checked_at_the_key() {
    let config = parse_ok(
        "[srt]\nhandshake_timeout_ms = 2500\nmax_connections = 50\n\
         max_connections_per_ip = 3\nmax_connections_per_loopback_ip = 7\n",
        &[],
    );
    let worker = config.srt.worker_config().expect("valid").expect("enabled");
    assert_eq!(worker.handshake_timeout, Duration::from_millis(2500));
    assert_eq!(
        (
            worker.max_connections,
            worker.max_connections_per_ip,
            worker.max_connections_per_loopback_ip
        ),
        (50, 3, 7)
    );
    let default = Config::default()
        .srt
        .worker_config()
        .expect("valid")
        .expect("enabled");
    assert_eq!(
        default.handshake_timeout,
        tidewater::srt::DEFAULT_HANDSHAKE_TIMEOUT
    );
    assert_eq!(
        (
            default.max_connections,
            default.max_connections_per_ip,
            default.max_connections_per_loopback_ip
        ),
        (20_000, 200, 2000)
    );
    let env = parse_ok("", &[("TIDEWATER_SRT__MAX_CONNECTIONS_PER_IP", "9")]);
    assert_eq!(env.srt.max_connections_per_ip, 9);
    for (file, key, value) in [
        (
            "[srt]\nhandshake_timeout_ms = 0\n",
            "srt.handshake_timeout_ms",
            "0",
        ),
        (
            "[srt]\nhandshake_timeout_ms = 60001\n",
            "srt.handshake_timeout_ms",
            "60001",
        ),
        ("[srt]\nmax_connections = 0\n", "srt.max_connections", "0"),
        (
            "[srt]\nmax_connections_per_ip = 0\n",
            "srt.max_connections_per_ip",
            "0",
        ),
        (
            "[srt]\nmax_connections_per_loopback_ip = 0\n",
            "srt.max_connections_per_loopback_ip",
            "0",
        ),
    ] {
        let text = refused(file, &[]);
        for part in [key, &format!("invalid value {value}"), "in test.toml"] {
            assert!(text.contains(part), "{text:?} does not mention {part:?}");
        }
    }
}

#[test]
fn the_example_auth_https_and_http_limits_are_the_defaults() {
    let example = include_str!("../../tidewater.toml");
    let config = Config::from_toml_str(example).expect("the example parses");
    assert_eq!(config.auth, Config::default().auth);
    assert_eq!(config.https, Config::default().https);
    assert_eq!(config.http.header_read_timeout_ms, 10_000);
    assert_eq!(config.http.max_connections, 20_000);
    assert_eq!(config.https.listen, "0.0.0.0:8443".parse().expect("addr"));
    assert!(!config.auth.config().is_configured());
    assert!(config.https.tls_files().expect("valid").is_none());
}

#[test]
fn auth_https_and_http_limit_errors_name_the_key_and_where_it_came_from() {
    let cases: &[Case] = &[
        (
            "[[auth.users]]\nuser = \"a\"\npasword = \"x\"",
            &[],
            &["auth.users[0].pasword", "unknown key", "in test.toml"],
        ),
        (
            "[[auth.users]]\nuser = \"a\"\npermissions = [{ action = \"write\" }]",
            &[],
            &["auth.users[0].permissions[0].action", "in test.toml"],
        ),
        (
            "[[auth.users]]\nuser = \"a\"\npassword_hash = \"not-a-hash\"",
            &[],
            &["auth.users[0].password_hash", "in test.toml"],
        ),
        (
            "",
            &[("TIDEWATER_AUTH__TOKEN_SECRET", "tiny-secret")],
            &[
                "auth.token_secret",
                "shorter than 16",
                "set by TIDEWATER_AUTH__TOKEN_SECRET",
            ],
        ),
        (
            "[auth]\ncolour = 1",
            &[],
            &["auth.colour", "unknown key", "in test.toml"],
        ),
        (
            "[https]\ncert = \"/nonexistent/cert.pem\"",
            &[],
            &["https.key", "missing"],
        ),
        (
            "[https]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"",
            &[],
            &["https.cert", "/nonexistent/cert.pem", "in test.toml"],
        ),
        (
            "[http]\nheader_read_timeout_ms = 0",
            &[],
            &[
                "http.header_read_timeout_ms",
                "invalid value 0",
                "in test.toml",
            ],
        ),
        (
            "",
            &[("TIDEWATER_HTTP__MAX_CONNECTIONS", "0")],
            &[
                "http.max_connections",
                "invalid value 0",
                "set by TIDEWATER_HTTP__MAX_CONNECTIONS",
            ],
        ),
    ];
    for (file, vars, expected) in cases {
        let text = refused(file, vars);
        for part in *expected {
            assert!(
                text.contains(part),
                "{file:?} {vars:?}: {text:?} does not mention {part:?}"
            );
        }
        assert!(!text.contains("tiny-secret"), "a secret in {text}");
    }
}

#[test]
fn auth_keys_come_from_the_file_and_the_environment() {
    let config = parse_ok(
        "[[auth.users]]\nuser = \"obs\"\npassword = \"pw\"\n\
         permissions = [{ action = \"publish\", path = \"live/*\" }]\n",
        &[
            ("TIDEWATER_AUTH__JWT__SECRET", "0123456789abcdef"),
            ("TIDEWATER_AUTH__REALM", "studio"),
        ],
    );
    let auth = config.auth.config();
    assert!(auth.is_configured());
    assert_eq!(auth.users[0].user, "obs");
    assert_eq!(auth.realm, "studio");
    let jwt = auth.jwt.as_ref().expect("jwt from the environment");
    assert_eq!(
        jwt.secret.as_ref().map(|s| s.expose()),
        Some("0123456789abcdef")
    );
    // The whole list from one variable.
    let config = parse_ok(
        "",
        &[(
            "TIDEWATER_AUTH__USERS",
            "[{ user = \"ops\", password = \"pw\", permissions = [{ action = \"api\" }] }]",
        )],
    );
    assert_eq!(config.auth.config().users[0].user, "ops");
    // Secrets stay out of the configuration's Debug (the binary logs it).
    assert!(!format!("{config:?}").contains("0123456789abcdef"));
}

#[test]
fn changed_sections_name_what_differs() {
    let a = parse_ok("", &[]);
    assert!(a.changed_sections(&a).is_empty());
    let b = parse_ok(
        "[http]\nlisten = \"127.0.0.1:1\"\n[[auth.users]]\nuser = \"any\"\n\
         permissions = [{ action = \"read\" }]\n[apps.live]\nmax_publishers = 2\n",
        &[],
    );
    assert_eq!(a.changed_sections(&b), ["http", "apps", "auth"]);
}

#[tokio::test]
async fn the_engine_asks_the_configured_authorizer() {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 5000).into();
    let remote: std::net::SocketAddr = ([192, 0, 2, 7], 5000).into();
    // No [auth]: anonymous publish from loopback only.
    let engine = Config::default().build_engine().expect("engine");
    assert!(
        engine
            .open_publish(Request::new(key("live/a"), "test").peer(loopback))
            .await
            .is_ok()
    );
    let refused = engine
        .open_publish(Request::new(key("live/b"), "test").peer(remote))
        .await;
    assert!(
        matches!(refused, Err(tidewater::Error::Unauthorized { .. })),
        "{refused:?}"
    );
    // With users, a loopback peer needs credentials too.
    let config = parse_ok(
        "[[auth.users]]\nuser = \"obs\"\npassword = \"pw\"\n\
         permissions = [{ action = \"publish\", path = \"live/*\" }]\n",
        &[],
    );
    let engine = config.build_engine().expect("engine");
    let anonymous = engine
        .open_publish(Request::new(key("live/c"), "test").peer(loopback))
        .await;
    assert!(
        matches!(anonymous, Err(tidewater::Error::Unauthorized { .. })),
        "{anonymous:?}"
    );
    let obs = tidewater::Credentials::UserPass {
        user: "obs".into(),
        pass: "pw".into(),
    };
    assert!(
        engine
            .open_publish(
                Request::new(key("live/c"), "test")
                    .peer(remote)
                    .credentials(obs)
            )
            .await
            .is_ok()
    );
}

#[test]
fn max_readers_is_inherited_from_defaults_and_overridden_per_app() {
    let config = parse_ok(
        "[defaults]\nmax_readers = 5\n[apps.live]\nmax_readers = 2\n[apps.vod]\n",
        &[],
    );
    let specs = config.app_specs().expect("specs");
    assert_eq!(specs["live"].max_readers, 2);
    assert_eq!(specs["vod"].max_readers, 5);
    assert_eq!(config.default_spec().expect("spec").max_readers, 5);
    assert_eq!(
        Config::default().default_spec().expect("spec").max_readers,
        0
    );
}

#[test]
fn cors_origins_are_checked_at_their_keys() {
    let config = parse_ok(
        "[http]\ncors_origins = [\"https://player.example\"]\napi_cors_origins = [\"*\"]\n",
        &[],
    );
    assert_eq!(config.http.cors().outputs, ["https://player.example"]);
    assert_eq!(config.http.cors().api, ["*"]);
    assert_eq!(Config::default().http.cors().outputs, ["*"]);
    assert!(Config::default().http.cors().api.is_empty());
    for bad in ["player.example", "https://player.example/", "ftp://x"] {
        let text = refused(&format!("[http]\ncors_origins = [\"{bad}\"]\n"), &[]);
        assert!(text.contains("http.cors_origins"), "{text}");
    }
}
