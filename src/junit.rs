//! JUnit XML reports (`--junit FILE` on `run`, `diff` and `fuzz`), in the shape CI dashboards
//! read: the Jenkins / Maven Surefire format (the xunit plugin's `junit-10.xsd`):
//! `<testsuites>` of `<testsuite name tests failures errors skipped time>`, each of
//! `<testcase name classname time>` with at most one `<failure message type>`, `<error>` or
//! `<skipped>`, then `<system-out>`. `tests/junit.xsd` is that schema as tests check it.
//!
//! A failed expectation or a disagreement is a `<failure>`; a scenario that could not be
//! loaded or replayed is an `<error>` (the `verdict run` exit status 2 case).
//!
//! Determinism: everything but the `time` attributes is a function of the inputs. `time` is
//! the real time measured around each case (seconds, three decimals), which dashboards plot;
//! tests compare reports with the `time` attributes blanked.

use std::path::Path;

use anyhow::Context as _;
use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

/// How one test case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Passed,
    /// An assertion failed: an expectation, a golden file, backends that disagree.
    Failure {
        message: String,
        kind: String,
        text: String,
    },
    /// The case could not run: a scenario that does not load, a backend error.
    Error {
        message: String,
        kind: String,
        text: String,
    },
    Skipped {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TestCase {
    pub name: String,
    pub classname: String,
    /// Real seconds.
    pub time: f64,
    pub outcome: Outcome,
    /// What the case printed (the text report of a scenario).
    pub system_out: Option<String>,
}

impl TestCase {
    pub fn new(classname: &str, name: &str, time: f64, outcome: Outcome) -> TestCase {
        TestCase {
            name: name.to_string(),
            classname: classname.to_string(),
            time,
            outcome,
            system_out: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestSuite {
    pub name: String,
    pub cases: Vec<TestCase>,
    /// `<properties>`: the backends, the seed, ...
    pub properties: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    time: f64,
}

impl TestSuite {
    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.cases {
            c.tests += 1;
            c.time += t.time;
            match t.outcome {
                Outcome::Passed => {}
                Outcome::Failure { .. } => c.failures += 1,
                Outcome::Error { .. } => c.errors += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
            }
        }
        c
    }
}

/// Characters XML 1.0 cannot carry at all (control characters other than tab, newline and
/// carriage return): replaced, so a report is always well-formed.
fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

fn seconds(t: f64) -> String {
    format!("{t:.3}")
}

type W = Writer<Vec<u8>>;

fn start(w: &mut W, name: &str, attrs: &[(&str, String)]) -> std::io::Result<()> {
    let mut e = BytesStart::new(name);
    for (k, v) in attrs {
        e.push_attribute((*k, xml_safe(v).as_str()));
    }
    w.write_event(Event::Start(e))
}

fn empty(w: &mut W, name: &str, attrs: &[(&str, String)]) -> std::io::Result<()> {
    let mut e = BytesStart::new(name);
    for (k, v) in attrs {
        e.push_attribute((*k, xml_safe(v).as_str()));
    }
    w.write_event(Event::Empty(e))
}

fn end(w: &mut W, name: &str) -> std::io::Result<()> {
    w.write_event(Event::End(BytesEnd::new(name)))
}

/// Text as CDATA (readable in the file), or escaped text when it holds `]]>` itself.
fn cdata(w: &mut W, text: &str) -> std::io::Result<()> {
    let text = xml_safe(text);
    if text.contains("]]>") {
        w.write_event(Event::Text(BytesText::new(&text)))
    } else {
        w.write_event(Event::CData(BytesCData::new(text)))
    }
}

fn element_with_text(
    w: &mut W,
    name: &str,
    attrs: &[(&str, String)],
    text: &str,
) -> std::io::Result<()> {
    if text.is_empty() {
        return empty(w, name, attrs);
    }
    start(w, name, attrs)?;
    cdata(w, text)?;
    end(w, name)
}

/// The report as XML text.
pub fn render(name: &str, suites: &[TestSuite]) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail.
    let _ = write_all(&mut w, name, suites);
    let mut s = String::from_utf8_lossy(&w.into_inner()).into_owned();
    s.push('\n');
    s
}

fn write_all(w: &mut W, name: &str, suites: &[TestSuite]) -> std::io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut total = Counts::default();
    for s in suites {
        let c = s.counts();
        total.tests += c.tests;
        total.failures += c.failures;
        total.errors += c.errors;
        total.skipped += c.skipped;
        total.time += c.time;
    }
    start(
        w,
        "testsuites",
        &[
            ("name", name.to_string()),
            ("tests", total.tests.to_string()),
            ("failures", total.failures.to_string()),
            ("errors", total.errors.to_string()),
            ("skipped", total.skipped.to_string()),
            ("time", seconds(total.time)),
        ],
    )?;
    for (id, s) in suites.iter().enumerate() {
        let c = s.counts();
        start(
            w,
            "testsuite",
            &[
                ("name", s.name.clone()),
                ("tests", c.tests.to_string()),
                ("failures", c.failures.to_string()),
                ("errors", c.errors.to_string()),
                ("skipped", c.skipped.to_string()),
                ("time", seconds(c.time)),
                ("id", id.to_string()),
            ],
        )?;
        if !s.properties.is_empty() {
            start(w, "properties", &[])?;
            for (k, v) in &s.properties {
                empty(w, "property", &[("name", k.clone()), ("value", v.clone())])?;
            }
            end(w, "properties")?;
        }
        for t in &s.cases {
            let attrs = [
                ("name", t.name.clone()),
                ("classname", t.classname.clone()),
                ("time", seconds(t.time)),
            ];
            if t.outcome == Outcome::Passed && t.system_out.is_none() {
                empty(w, "testcase", &attrs)?;
                continue;
            }
            start(w, "testcase", &attrs)?;
            match &t.outcome {
                Outcome::Passed => {}
                Outcome::Failure {
                    message,
                    kind,
                    text,
                } => element_with_text(
                    w,
                    "failure",
                    &[("message", message.clone()), ("type", kind.clone())],
                    text,
                )?,
                Outcome::Error {
                    message,
                    kind,
                    text,
                } => element_with_text(
                    w,
                    "error",
                    &[("message", message.clone()), ("type", kind.clone())],
                    text,
                )?,
                Outcome::Skipped { message } => {
                    empty(w, "skipped", &[("message", message.clone())])?
                }
            }
            if let Some(out) = &t.system_out {
                element_with_text(w, "system-out", &[], out)?;
            }
            end(w, "testcase")?;
        }
        end(w, "testsuite")?;
    }
    end(w, "testsuites")
}

/// Writes the report to `path`.
pub fn write(path: &Path, name: &str, suites: &[TestSuite]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, render(name, suites))
        .with_context(|| format!("writing the JUnit report {}", path.display()))
}

/// A JUnit classname from a file path: `scenarios/cilium/x.yaml` -> `scenarios.cilium.x`
/// (dashboards show the part before the last dot as the package).
pub fn classname(path: &Path) -> String {
    let s = path.with_extension("").display().to_string();
    s.trim_start_matches("./")
        .replace(['/', '\\'], ".")
        .trim_matches('.')
        .to_string()
}

/// A suite name from a file path: its directory (`scenarios/cilium`), or `.`.
pub fn suite_of(path: &Path) -> String {
    path.parent()
        .map(|p| p.display().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".to_string())
}

/// Groups cases into suites by `suite_of`, in first-seen order.
pub fn group(cases: Vec<(String, TestCase)>, properties: &[(String, String)]) -> Vec<TestSuite> {
    let mut suites: Vec<TestSuite> = Vec::new();
    for (suite, case) in cases {
        match suites.iter_mut().find(|s| s.name == suite) {
            Some(s) => s.cases.push(case),
            None => suites.push(TestSuite {
                name: suite,
                cases: vec![case],
                properties: properties.to_vec(),
            }),
        }
    }
    suites
}

/// A report read back from its XML ([`parse`]): the `<testsuites>` name and the suites.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub name: String,
    pub suites: Vec<TestSuite>,
}

/// Reads a report as [`render`] writes it (`verdict merge` combines sharded reports). The
/// counts and times of `<testsuites>` and `<testsuite>` are not kept: [`render`] computes
/// them from the cases. Whitespace between elements is layout; text inside `<failure>`,
/// `<error>` and `<system-out>` is kept as written.
pub fn parse(text: &str) -> anyhow::Result<Report> {
    use anyhow::bail;
    use quick_xml::Reader;
    let mut r = Reader::from_str(text);
    let mut report = Report::default();
    let mut seen_root = false;
    // The element whose text is being collected, and that text.
    let mut collecting: Option<(String, String)> = None;
    let attrs = |e: &BytesStart<'_>| -> anyhow::Result<Vec<(String, String)>> {
        e.attributes()
            .map(|a| {
                let a = a?;
                Ok((
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    a.unescape_value()?.into_owned(),
                ))
            })
            .collect()
    };
    let get =
        |a: &[(String, String)], k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    loop {
        let pos = r.buffer_position();
        let ev = r
            .read_event()
            .with_context(|| format!("byte {pos}: not well-formed XML"))?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let a = attrs(&e).with_context(|| format!("byte {pos}: <{name}> attributes"))?;
                let need = |k: &str| {
                    get(&a, k).with_context(|| format!("byte {pos}: <{name}> has no {k} attribute"))
                };
                match name.as_str() {
                    "testsuites" => {
                        seen_root = true;
                        report.name = get(&a, "name").unwrap_or_default();
                    }
                    "testsuite" => report.suites.push(TestSuite {
                        name: need("name")?,
                        ..Default::default()
                    }),
                    "properties" => {}
                    "property" => {
                        let s = report.suites.last_mut().with_context(|| {
                            format!("byte {pos}: <property> outside a <testsuite>")
                        })?;
                        s.properties.push((need("name")?, need("value")?));
                    }
                    "testcase" => {
                        let time = need("time")?;
                        let time: f64 = time.parse().ok().with_context(|| {
                            format!("byte {pos}: <testcase time={time:?}>: not a number of seconds")
                        })?;
                        let s = report.suites.last_mut().with_context(|| {
                            format!("byte {pos}: <testcase> outside a <testsuite>")
                        })?;
                        s.cases.push(TestCase::new(
                            &need("classname")?,
                            &need("name")?,
                            time,
                            Outcome::Passed,
                        ));
                    }
                    "failure" | "error" | "skipped" | "system-out" => {
                        let case = report
                            .suites
                            .last_mut()
                            .and_then(|s| s.cases.last_mut())
                            .with_context(|| {
                                format!("byte {pos}: <{name}> outside a <testcase>")
                            })?;
                        let message = get(&a, "message").unwrap_or_default();
                        let kind = get(&a, "type").unwrap_or_default();
                        match name.as_str() {
                            "failure" => {
                                case.outcome = Outcome::Failure {
                                    message,
                                    kind,
                                    text: String::new(),
                                }
                            }
                            "error" => {
                                case.outcome = Outcome::Error {
                                    message,
                                    kind,
                                    text: String::new(),
                                }
                            }
                            "skipped" => case.outcome = Outcome::Skipped { message },
                            _ => case.system_out = Some(String::new()),
                        }
                        if !empty {
                            collecting = Some((name, String::new()));
                        }
                    }
                    other => {
                        bail!("byte {pos}: <{other}>: not an element of a verdict JUnit report")
                    }
                }
            }
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if let Some((what, text)) = collecting.take_if(|(w, _)| *w == name) {
                    let case = report
                        .suites
                        .last_mut()
                        .and_then(|s| s.cases.last_mut())
                        .context("an element outside a <testcase>")?;
                    match (&mut case.outcome, what.as_str()) {
                        (Outcome::Failure { text: t, .. }, "failure")
                        | (Outcome::Error { text: t, .. }, "error") => *t = text,
                        (_, "system-out") => case.system_out = Some(text),
                        _ => {}
                    }
                }
            }
            Event::Text(t) => {
                if let Some((_, buf)) = &mut collecting {
                    buf.push_str(&t.xml10_content()?);
                }
            }
            Event::CData(t) => {
                if let Some((_, buf)) = &mut collecting {
                    buf.push_str(&t.xml10_content()?);
                }
            }
            Event::GeneralRef(g) => {
                if let Some((_, buf)) = &mut collecting {
                    if let Some(c) = g.resolve_char_ref()? {
                        buf.push(c);
                    } else {
                        let name = g.decode()?;
                        let v = quick_xml::escape::resolve_predefined_entity(&name)
                            .with_context(|| format!("byte {pos}: unknown entity &{name};"))?;
                        buf.push_str(v);
                    }
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !seen_root {
        bail!("no <testsuites> element: not a JUnit report");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_escaping_and_cdata() {
        let suites = vec![TestSuite {
            name: "s".into(),
            properties: vec![("backends".into(), "oracle,model".into())],
            cases: vec![
                TestCase::new("a.b", "ok", 0.5, Outcome::Passed),
                TestCase {
                    system_out: Some("out ]]> here\u{1}".into()),
                    ..TestCase::new(
                        "a.b",
                        "bad <&\">",
                        0.25,
                        Outcome::Failure {
                            message: "1 < 2 & \"q\"".into(),
                            kind: "expectation".into(),
                            text: "detail".into(),
                        },
                    )
                },
                TestCase::new(
                    "a.c",
                    "err",
                    0.0,
                    Outcome::Error {
                        message: "no".into(),
                        kind: "input".into(),
                        text: String::new(),
                    },
                ),
            ],
        }];
        let x = render("verdict run", &suites);
        assert!(
            x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{x}"
        );
        assert!(
            x.contains(r#"<testsuites name="verdict run" tests="3" failures="1" errors="1" skipped="0" time="0.750">"#),
            "{x}"
        );
        assert!(x.contains(r#"name="bad &lt;&amp;&quot;&gt;""#), "{x}");
        assert!(
            x.contains(r#"message="1 &lt; 2 &amp; &quot;q&quot;""#),
            "{x}"
        );
        assert!(
            x.contains("<system-out>out ]]&gt; here\u{fffd}</system-out>"),
            "{x}"
        );
        assert!(
            x.contains(r#"<property name="backends" value="oracle,model"/>"#),
            "{x}"
        );
        assert!(x.contains(r#"<error message="no" type="input"/>"#), "{x}");
    }

    #[test]
    fn classnames_from_paths() {
        assert_eq!(
            classname(Path::new("scenarios/cilium/deny.yaml")),
            "scenarios.cilium.deny"
        );
        assert_eq!(
            suite_of(Path::new("scenarios/cilium/deny.yaml")),
            "scenarios/cilium"
        );
        assert_eq!(suite_of(Path::new("x.yaml")), ".");
    }

    /// What `render` writes, `parse` reads back: rendering it again gives the same bytes.
    #[test]
    fn parse_reads_back_what_render_writes() {
        let suites = vec![
            TestSuite {
                name: "s".into(),
                properties: vec![("backends".into(), "oracle,model".into())],
                cases: vec![
                    TestCase::new("a.b", "ok", 0.5, Outcome::Passed),
                    TestCase {
                        system_out: Some("out ]]> here & <there>\n  indented\n".into()),
                        ..TestCase::new(
                            "a.b",
                            "bad <&\">",
                            0.25,
                            Outcome::Failure {
                                message: "1 < 2 & \"q\"".into(),
                                kind: "expectation".into(),
                                text: "line 1\n  line 2".into(),
                            },
                        )
                    },
                    TestCase::new(
                        "a.c",
                        "err",
                        0.0,
                        Outcome::Error {
                            message: "no".into(),
                            kind: "input".into(),
                            text: String::new(),
                        },
                    ),
                    TestCase::new(
                        "a.c",
                        "skip",
                        0.0,
                        Outcome::Skipped {
                            message: "why".into(),
                        },
                    ),
                ],
            },
            TestSuite {
                name: "t".into(),
                properties: Vec::new(),
                cases: vec![TestCase {
                    system_out: Some("x".into()),
                    ..TestCase::new("t", "only", 1.0, Outcome::Passed)
                }],
            },
        ];
        let x = render("verdict run", &suites);
        let back = parse(&x).unwrap();
        assert_eq!(back.name, "verdict run");
        assert_eq!(back.suites, suites);
        assert_eq!(render(&back.name, &back.suites), x);
        assert!(parse("<a/>").is_err());
        assert!(parse("<testsuites><testsuite").is_err());
        assert!(parse("plain text").is_err());
    }
}
