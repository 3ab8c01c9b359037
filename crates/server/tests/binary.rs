//! The `tidewater` binary: `hash-password`, and a configuration reload on
//! `SIGHUP`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use tidewater::{Action, AuthRequest, Authorizer, Credentials};
use tidewater_auth::{AuthConfig, Authorization, UserConfig};

/// Bounds for what happens at once; never what a test asserts about.
const PATIENCE: Duration = Duration::from_secs(20);

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tidewater")
}

/// `tidewater hash-password`, with `stdin` and the extra arguments:
/// (success, stdout, stderr).
fn hash_password(stdin: &str, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(binary())
        .arg("hash-password")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("it ends");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

/// Whether `password` opens `user` whose hash is `phc`, by the auth crate.
async fn opens(phc: &str, password: &str) -> bool {
    let mut user = UserConfig::new("obs", "unused");
    user.password = None;
    user.password_hash = Some(phc.to_string());
    let user = user.permit(Action::Publish, None);
    let auth = Authorization::new(AuthConfig {
        users: vec![user],
        ..AuthConfig::default()
    })
    .expect("the hash is accepted as password_hash");
    let request = AuthRequest::new(Action::Publish, "test")
        .key(tidewater::StreamKey::parse("live/cam").expect("key"))
        .peer(([192, 0, 2, 7], 5000).into())
        .credentials(Credentials::UserPass {
            user: "obs".into(),
            pass: password.into(),
        });
    auth.authorize(&request).await.is_ok()
}

#[tokio::test]
async fn hash_password_prints_a_phc_string_that_password_hash_accepts() {
    let (ok, out, err) = hash_password("s3cret pass\n", &[]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    let phc = lines[0];
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(opens(phc, "s3cret pass").await);
    assert!(!opens(phc, "s3cret pass\n").await);
    assert!(!opens(phc, "wrong").await);

    // Without a final newline, with CRLF, and from --password.
    let (ok, out, _) = hash_password("other\r\n", &[]);
    assert!(ok);
    assert!(opens(out.trim(), "other").await);
    let (ok, out, _) = hash_password("", &["--password", "from-args"]);
    assert!(ok);
    assert!(opens(out.trim(), "from-args").await);
    // Two runs salt differently.
    let (_, again, _) = hash_password("s3cret pass", &[]);
    assert_ne!(again.trim(), phc);
    assert!(opens(again.trim(), "s3cret pass").await);
}

#[test]
fn hash_password_refuses_an_empty_password() {
    let (ok, out, err) = hash_password("\n", &[]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("empty"), "{err}");
}

/// A directory of its own under the system's temporary directory.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "tidewater-bin-{label}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server process, killed on drop if still running.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(config: &Path) -> Running {
        let mut command = Command::new(binary());
        // The test's own TIDEWATER_* variables (TIDEWATER_BIN, say) are not
        // settings: the server would refuse them.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_none_or(|n| n.starts_with("TIDEWATER")) {
                command.env_remove(&name);
            }
        }
        let mut child = command
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("server: {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// Waits for a log line containing `text`; returns it.
    fn wait_for(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {text:?}: {e}"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// `GET path` with Basic credentials: the status.
fn status(addr: SocketAddr, path: &str, user: &str, password: &str) -> u16 {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: tidewater\r\nAuthorization: Basic {credentials}\r\n\
         Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn config(cam_permissions: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[rtmp]\nlisten = \"127.0.0.1:0\"\n\
         [srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n[webrtc]\nudp_listen = \"127.0.0.1:0\"\n\
         [[auth.users]]\nuser = \"ops\"\npassword = \"ops-pw\"\npermissions = [{{ action = \"api\" }}]\n\
         [[auth.users]]\nuser = \"cam\"\npassword = \"cam-pw\"\npermissions = [{cam_permissions}]\n"
    )
}

#[cfg(unix)]
#[test]
fn sighup_reloads_auth_from_the_same_file_and_a_bad_file_changes_nothing() {
    let dir = TempDir::new("sighup");
    let file = dir.0.join("tidewater.toml");
    std::fs::write(&file, config("{ action = \"publish\" }")).expect("write");
    let server = Running::start(&file);
    let line = server.wait_for("http listening on ");
    let addr: SocketAddr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_eq!(status(addr, "/api/v1/streams", "ops", "ops-pw"), 200);
    assert_eq!(status(addr, "/api/v1/streams", "cam", "cam-pw"), 403);
    server.wait_for("api request refused");

    // cam gets the API, and a listener changes (reported, not applied).
    std::fs::write(
        &file,
        config("{ action = \"api\" }").replace("[srt]\n", "[srt]\nlatency_ms = 200\n"),
    )
    .expect("write");
    server.signal("HUP");
    server.wait_for("SIGHUP received");
    let reloaded = server.wait_for("configuration reloaded");
    assert!(reloaded.contains("applied [auth]"), "{reloaded}");
    let restart = server.wait_for("restart tidewater to apply");
    assert!(restart.contains("[srt]"), "{restart}");
    assert_eq!(status(addr, "/api/v1/streams", "cam", "cam-pw"), 200);

    // A bad file is logged and changes nothing.
    std::fs::write(&file, "[[auth.users]]\nuser = \"cam\"\npasword = \"x\"\n").expect("write");
    server.signal("HUP");
    let failed = server.wait_for("configuration reload failed");
    assert!(failed.contains("auth.users[0].pasword"), "{failed}");
    assert_eq!(status(addr, "/api/v1/streams", "cam", "cam-pw"), 200);
    assert_eq!(status(addr, "/api/v1/streams", "ops", "ops-pw"), 200);

    // Still a graceful stop.
    server.signal("TERM");
    let mut server = server;
    let deadline = std::time::Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(exit) = server.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(std::time::Instant::now() < deadline, "never stopped");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
