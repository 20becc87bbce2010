//! `verdict report --html`: the page is self-contained (no script, no network), renders in
//! headless Chromium without console errors, and its DOM holds what the report promises.
//! Chromium comes from Debian's `chromium` package (tools/test.sh installs it as root); when
//! it is missing the rendering part says SKIP loudly, and fails under
//! `VERDICT_REQUIRE_KERNEL=1` (CI installs it through tools/test.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::verdict;

fn tmp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("verdict-report-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs Chromium headless with `args` on the page, killing it after two minutes.
fn run_chromium(bin: &Path, profile: &Path, args: &[String]) -> (String, String) {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("starting chromium");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn html_report_is_self_contained_and_renders_in_chromium() {
    let dir = tmp_dir();
    let failing = dir.join("failing.yaml");
    std::fs::write(
        &failing,
        "name: wrong-matrix\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}, {name: x/b}]\nsteps:\n  - expect-matrix:\n      port: 80\n      protocol: TCP\n      table: |2\n            x/a x/b\n        x/a ?   X\n        x/b .   ?\n",
    )
    .unwrap();
    let page = dir.join("report.html");
    let args = [
        "report",
        "--html",
        page.to_str().unwrap(),
        "--backend",
        "oracle,model,rbpf",
        "--no-timings",
        "scenarios/cilium/deny-l4-beats-l3-allow.yaml",
        "scenarios/propagation/",
        failing.to_str().unwrap(),
    ];
    let o = verdict(&args);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no script, no stylesheet or image links, no address but SVG's namespace.
    assert!(!html.contains("<script"), "the page has no JavaScript");
    assert!(!html.contains("<link") && !html.contains("<img"));
    let addresses = html.matches("http").count();
    let svg_ns = html.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(
        addresses, svg_ns,
        "only the SVG namespace may name an address"
    );
    assert!(html.contains("<svg"), "propagation plots are inline SVG");
    // Deterministic with --no-timings.
    verdict(&args);
    assert_eq!(std::fs::read_to_string(&page).unwrap(), html);

    let Some(bin) = chromium() else {
        let msg = "SKIP rendering the HTML report in headless Chromium (no /usr/bin/chromium; tools/test.sh installs it as root)";
        println!("{msg}");
        eprintln!("{msg}");
        if std::env::var("VERDICT_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
            panic!("{msg}, and VERDICT_REQUIRE_KERNEL=1 requires it");
        }
        return;
    };
    let url = format!("file://{}", page.display());
    let (dom, log) = run_chromium(
        &bin,
        &dir.join("profile-dom"),
        &["--dump-dom".into(), url.clone()],
    );
    // No console errors (the page has no script; any error here is the page's fault).
    for l in log.lines() {
        assert!(
            !(l.contains("CONSOLE") || l.contains("Uncaught")),
            "console message: {l}"
        );
    }
    // The DOM as Chromium built it: the title, one section per scenario, every truth table
    // (expected plus one actual per backend), the failing cells marked, the plots.
    assert!(
        dom.contains("<h1>verdict report</h1>"),
        "{}",
        &dom[..dom.len().min(2000)]
    );
    let sections = dom.matches("<section id=\"s-").count();
    let files = 2 + std::fs::read_dir("scenarios/propagation").unwrap().count();
    assert_eq!(sections, files, "one section per scenario");
    assert!(dom.contains("id=\"s-wrong-matrix\""));
    assert!(dom.matches("<table class=\"truth\">").count() >= 4);
    assert!(
        dom.contains("class=\"allow wrong\""),
        "the failing cell is marked"
    );
    assert!(dom.contains("<svg"), "the plots are in the DOM");
    assert!(
        dom.contains("policy-verdict:L3-L4 INGRESS DENIED"),
        "the flows are shown"
    );
    // A screenshot of the rendered page: a PNG of the requested size.
    let shot = dir.join("report.png");
    run_chromium(
        &bin,
        &dir.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600".into(),
            url,
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1280, 1600));
    let _ = std::fs::remove_dir_all(&dir);
}
