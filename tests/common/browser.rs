//! A real headless browser for the tests: Debian's Chromium driven by `chromedriver` over
//! WebDriver (HTTP + JSON, sent with curl like the other tests' HTTP calls), and a measure of
//! whether a screenshot is a picture or a blank page.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `curl` a WebDriver endpoint; the response's `value`, or a panic naming the command.
pub fn webdriver(method: &str, url: &str, body: Option<&Value>) -> Value {
    use std::io::Write;
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "60",
        "-X",
        method,
        "-H",
        "Content-Type: application/json",
    ]);
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    let mut child = cmd
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running curl");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(b) = body {
        stdin.write_all(b.to_string().as_bytes()).expect("writing the request");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"));
    if reply["value"].get("error").is_some() {
        panic!("{method} {url} failed: {}", reply["value"]);
    }
    reply["value"].clone()
}

/// A chromedriver process with one headless Chromium session; both end on drop.
pub struct Browser {
    base: String,
    session: String,
    driver: Child,
}

pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Browser {
    /// Fails (never skips) without Chromium or chromedriver, naming the packages.
    pub fn require() {
        for tool in ["chromium", "chromedriver"] {
            assert!(
                on_path(tool),
                "{tool} is not installed: the browser tests need Debian's Chromium and its driver \
                 (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
    }

    pub fn start() -> Self {
        Self::require();
        let port = super::free_port();
        let log = std::env::temp_dir().join(format!("mom-chromedriver-{}-{port}.log", std::process::id()));
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while super::http_get(&format!("{base}/status")).is_none() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {base} (log {})",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,1250", "--hide-scrollbars", "--force-device-scale-factor=1"
            ]}
        }}});
        let session = webdriver("POST", &format!("{base}/session"), Some(&caps))["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Self { base, session, driver }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", self.base, self.session)
    }

    pub fn open(&self, url: &str) {
        webdriver("POST", &self.url("url"), Some(&json!({"url": url})));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn run(&self, script: &str) -> Value {
        webdriver(
            "POST",
            &self.url("execute/sync"),
            Some(&json!({"script": script, "args": []})),
        )
    }

    /// Polls `script` until it returns something other than null/false, or panics naming `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.run(script);
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.run("return document.body.innerText");
                panic!("timed out after {timeout:?} waiting for {what}; the page says:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Browser console entries since the last call.
    pub fn console(&self) -> Vec<Value> {
        webdriver("POST", &self.url("se/log"), Some(&json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the first element matching the CSS `selector` (just its box, not the window).
    pub fn element_screenshot(&self, selector: &str) -> Vec<u8> {
        use base64::Engine as _;
        let found = webdriver(
            "POST",
            &self.url("element"),
            Some(&json!({"using": "css selector", "value": selector})),
        );
        let id = found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {found}"));
        let b64 = webdriver("GET", &self.url(&format!("element/{id}/screenshot")), None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 text"))
            .expect("base64 screenshot")
    }

    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = webdriver("GET", &self.url("screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 text"))
            .expect("base64 screenshot")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session quits Chromium (killing chromedriver alone would leave it running).
        let session = format!("{}/session/{}", self.base, self.session);
        let _ = Command::new("curl")
            .args(["-s", "--max-time", "10", "-X", "DELETE", &session])
            .output();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

pub fn severe(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// (distinct colours, share of pixels unlike the most common colour) of an RGB(A) PNG.
pub fn png_spread(bytes: &[u8]) -> (usize, f64, (u32, u32)) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG screenshot");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::<[u8; 3], usize>::new();
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        *counts.entry([px[0], px[1], px[2]]).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let top = counts.values().copied().max().unwrap_or(0);
    (
        counts.len(),
        1.0 - top as f64 / total.max(1) as f64,
        (info.width, info.height),
    )
}
