//! Rendering of scenario reports: the text a user reads (a verdict line per scenario, and for
//! failures the probes and truth tables side by side: expected, actual, diff, as the
//! Kubernetes e2e suite prints them), the golden form (every step in full, backend-agnostic,
//! byte-stable), and JSON.

use std::fmt::Write as _;

use serde_json::{json, Value};
use tabled::builder::Builder;
use tabled::settings::{Padding, Style};

use crate::engine::{MatrixCheck, ProbeCheck, ScenarioReport, StepOutcome};
use crate::verdict::Outcome;

fn outcome_text(r: &Result<Outcome, String>) -> String {
    match r {
        Ok(o) => o.to_string(),
        Err(e) => format!("error: {}", clip_values(e)),
    }
}

fn cell(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => ".",
        Some(false) => "X",
        None => "?",
    }
}

fn table(m: &MatrixCheck, f: impl Fn(usize, usize) -> String) -> String {
    let mut b = Builder::default();
    let mut header = vec![String::new()];
    header.extend(m.columns.iter().cloned());
    b.push_record(header);
    for (r, row) in m.rows.iter().enumerate() {
        let mut rec = vec![row.clone()];
        rec.extend((0..m.columns.len()).map(|c| f(r, c)));
        b.push_record(rec);
    }
    let mut t = b.build();
    t.with(Style::blank()).with(Padding::new(0, 1, 0, 0));
    t.to_string()
}

/// Places blocks of text next to each other, each under its title.
fn side_by_side(blocks: &[(&str, String)]) -> String {
    let cols: Vec<Vec<String>> = blocks
        .iter()
        .map(|(title, body)| {
            let mut lines = vec![title.to_string()];
            lines.extend(body.lines().map(str::to_string));
            lines
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .map(|c| c.iter().map(|l| l.chars().count()).max().unwrap_or(0))
        .collect();
    let height = cols.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    for i in 0..height {
        let mut line = String::new();
        for (c, col) in cols.iter().enumerate() {
            let text = col.get(i).map(String::as_str).unwrap_or("");
            line.push_str(text);
            if c + 1 < cols.len() {
                line.push_str(&" ".repeat(widths[c] - text.chars().count() + 4));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The actual table of one backend (by index in the report's backend list).
fn actual(m: &MatrixCheck, backend: usize) -> impl Fn(usize, usize) -> String + '_ {
    move |r, c| match m.cells[r][c].results.get(backend).map(|(_, o)| o) {
        Some(Ok(o)) => cell(Some(o.allowed)).to_string(),
        _ => "!".to_string(),
    }
}

/// Expected, actual (per backend) and diff tables side by side.
pub fn matrix_tables(m: &MatrixCheck, backends: &[String]) -> String {
    let mut blocks = vec![(
        "expected".to_string(),
        table(m, |r, c| cell(m.expected[r][c]).to_string()),
    )];
    if m.checks().any(|c| c.disagreement()) {
        for (i, b) in backends.iter().enumerate() {
            blocks.push((format!("actual ({b})"), table(m, actual(m, i))));
        }
    } else {
        // The backends agree: one actual table.
        blocks.push((
            format!("actual ({})", backends.join(",")),
            table(m, actual(m, 0)),
        ));
    }
    blocks.push((
        "diff".to_string(),
        table(m, |r, c| {
            let failed = !m.cells[r][c].failures().is_empty();
            let disagree = m.cells[r][c].disagreement();
            match (failed, disagree) {
                (true, _) => "X".into(),
                (false, true) => "D".into(),
                _ => ".".into(),
            }
        }),
    ));
    let refs: Vec<(&str, String)> = blocks
        .iter()
        .map(|(t, b)| (t.as_str(), b.clone()))
        .collect();
    side_by_side(&refs)
}

/// ` (transient: node-2 pending until 3s)` for a probe in a propagation window.
fn transient_suffix(p: &ProbeCheck) -> String {
    p.transient
        .as_ref()
        .map(|t| format!(" ({})", t.note()))
        .unwrap_or_default()
}

/// In a propagation window where the datapaths differ from the eventual answer:
/// `datapath <outcome>, eventual <outcome>`.
fn transient_verdict(p: &ProbeCheck) -> Option<String> {
    if !p.transient_disagreement() {
        return None;
    }
    let show = |o: Option<crate::verdict::Outcome>| o.map(|o| o.to_string()).unwrap_or("-".into());
    Some(format!(
        "datapath {}, eventual {}",
        show(p.merged_group(true)),
        show(p.merged_group(false))
    ))
}

fn probe_detail(p: &ProbeCheck) -> String {
    let mut s = format!(
        "{}: expected {}",
        p.label(),
        p.expected
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or("-".into())
    );
    for (b, r) in &p.results {
        let _ = write!(s, "; {b}: {}", outcome_text(r));
    }
    s
}

/// The text report of one scenario: one line when it passes, details when it does not.
pub fn text(r: &ScenarioReport) -> String {
    let mut out = String::new();
    let status = if r.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "{status} {} ({}): {} steps, {} probes checked on {}",
        r.name,
        r.file.display(),
        r.steps.len(),
        r.probe_count(),
        r.backends.join(",")
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error: {}", clip_values(e));
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    for s in &r.steps {
        match &s.outcome {
            StepOutcome::Probes(ps) => {
                for p in ps {
                    if !p.failures().is_empty() {
                        let _ = writeln!(
                            out,
                            "  step {} {}: FAILED {}",
                            s.index,
                            s.kind,
                            probe_detail(p)
                        );
                    } else if p.disagreement() {
                        let _ = writeln!(
                            out,
                            "  step {} {}: DISAGREEMENT {}",
                            s.index,
                            s.kind,
                            probe_detail(p)
                        );
                    } else if p.transient_disagreement() {
                        let _ = writeln!(
                            out,
                            "  step {} {}: TRANSIENT {}{}",
                            s.index,
                            s.kind,
                            probe_detail(p),
                            transient_suffix(p)
                        );
                    }
                }
            }
            StepOutcome::Matrix(m) => {
                let failed = m.failed();
                let disagree = m.checks().any(|c| c.disagreement());
                if failed || disagree {
                    let what = if failed { "FAILED" } else { "DISAGREEMENT" };
                    let _ = writeln!(
                        out,
                        "  step {} expect-matrix {}/{}: {what}",
                        s.index, m.port, m.protocol
                    );
                    for line in matrix_tables(m, &r.backends).lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                    for c in m
                        .checks()
                        .filter(|c| !c.failures().is_empty() || c.disagreement())
                    {
                        let _ = writeln!(out, "    {}", probe_detail(c));
                    }
                }
            }
            StepOutcome::Change(_) => {}
        }
    }
    out
}

/// The golden form: every step and every probe's agreed outcome, independent of which
/// backends ran (as long as they agree), so the file only changes when behaviour does.
pub fn golden(r: &ScenarioReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario: {}", r.name);
    if let Some(e) = &r.error {
        let _ = writeln!(out, "error: {}", clip_values(e));
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for s in &r.steps {
        match &s.outcome {
            StepOutcome::Change(c) => {
                let _ = writeln!(out, "step {} {}: {c}", s.index, s.kind);
            }
            StepOutcome::Probes(ps) => {
                let _ = writeln!(out, "step {} {}:", s.index, s.kind);
                for p in ps {
                    let verdict = match (p.disagreement(), transient_verdict(p), p.merged()) {
                        (false, Some(t), _) => t,
                        (false, None, Some(o)) => o.to_string(),
                        _ => format!("DISAGREEMENT {}", probe_detail(p)),
                    };
                    let status = if p.failures().is_empty() {
                        "ok"
                    } else {
                        "FAILED"
                    };
                    let _ = writeln!(
                        out,
                        "  {}: {verdict} (expected {}: {status}){}",
                        p.label(),
                        p.expected
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or("-".into()),
                        transient_suffix(p)
                    );
                }
            }
            StepOutcome::Matrix(m) => {
                let status = if m.failed() { "FAILED" } else { "ok" };
                let _ = writeln!(
                    out,
                    "step {} expect-matrix {}/{}: {status}",
                    s.index, m.port, m.protocol
                );
                // In a propagation window a cell shows what the datapaths did (`T` marks a
                // cell that differs from the eventual answer, detailed below).
                let t = table(m, |r, c| {
                    let p = &m.cells[r][c];
                    match (p.disagreement(), p.transient_disagreement(), p.merged()) {
                        (false, true, _) => "T".to_string(),
                        (false, false, Some(o)) => cell(Some(o.allowed)).to_string(),
                        _ => "D".to_string(),
                    }
                });
                for line in t.lines() {
                    let _ = writeln!(out, "  {}", line.trim_end());
                }
                for c in m.checks() {
                    if let Some(t) = transient_verdict(c) {
                        let _ = writeln!(out, "  {}: {t}{}", c.label(), transient_suffix(c));
                    } else if let (Some(o), false) = (c.merged(), c.allowed_plainly()) {
                        let _ = writeln!(out, "  {}: {o}{}", c.label(), transient_suffix(c));
                    }
                }
            }
        }
    }
    out
}

impl ProbeCheck {
    /// True for a matrix cell that needs no detail line in the golden file: allowed, or the
    /// self cells nobody checks.
    fn allowed_plainly(&self) -> bool {
        self.expected.is_none() || self.merged().is_some_and(|o| o.allowed)
    }
}

fn outcome_json(o: &Outcome) -> Value {
    json!({
        "verdict": if o.allowed { "allow" } else { "deny" },
        "reason": o.reason.map(|r| r.hubble_name()),
        "drop_code": o.reason.map(|r| r.code()),
        "direction": o.direction.map(|d| d.to_string()),
        "match": o.match_type.map(|m| m.to_string()),
    })
}

fn expectation_json(e: &crate::engine::Expectation) -> Value {
    json!({
        "verdict": if e.allow { "allow" } else { "deny" },
        "reason": e.reason.map(|r| r.hubble_name()),
        "drop_code": e.reason.map(|r| r.code()),
        "direction": e.direction.map(|d| d.to_string()),
        "match": e.match_type.map(|m| m.to_string()),
    })
}

fn probe_json(p: &ProbeCheck) -> Value {
    let results: serde_json::Map<String, Value> = p
        .results
        .iter()
        .map(|(b, r)| {
            (
                b.clone(),
                match r {
                    Ok(o) => outcome_json(o),
                    Err(e) => json!({"error": clip_values(e)}),
                },
            )
        })
        .collect();
    let mut o = serde_json::Map::new();
    if let Some(c) = &p.context {
        o.insert("connection".into(), json!(c));
    }
    o.insert("from".into(), json!(p.from));
    o.insert("to".into(), json!(p.to));
    o.insert("protocol".into(), json!(p.protocol.to_string()));
    // An ICMP probe's number is its type, not a port.
    if p.protocol.is_icmp() {
        o.insert("icmp_type".into(), json!(p.port));
    } else {
        o.insert("port".into(), json!(p.port));
    }
    o.insert(
        "expected".into(),
        p.expected.as_ref().map_or(Value::Null, expectation_json),
    );
    o.insert("ok".into(), json!(p.failures().is_empty()));
    o.insert("disagreement".into(), json!(p.disagreement()));
    o.insert("results".into(), Value::Object(results));
    let mut v = Value::Object(o);
    if let (Some(t), Value::Object(o)) = (&p.transient, &mut v) {
        let pending: Vec<Value> = t
            .pending
            .iter()
            .map(|(n, due)| json!({"node": n, "until_ns": due}))
            .collect();
        o.insert(
            "transient".into(),
            json!({
                "pending": pending,
                "eventual_backends": t.eventual,
                "differs_from_eventual": p.transient_disagreement(),
            }),
        );
    }
    v
}

/// The JSON form of a report (one object per scenario).
pub fn json(r: &ScenarioReport) -> Value {
    let steps: Vec<Value> = r
        .steps
        .iter()
        .map(|s| match &s.outcome {
            StepOutcome::Change(c) => json!({"step": s.index, "kind": s.kind, "change": c}),
            StepOutcome::Probes(ps) => {
                json!({"step": s.index, "kind": s.kind, "probes": ps.iter().map(probe_json).collect::<Vec<_>>()})
            }
            StepOutcome::Matrix(m) => json!({
                "step": s.index,
                "kind": s.kind,
                "port": m.port,
                "protocol": m.protocol.to_string(),
                "ok": !m.failed(),
                "probes": m.checks().filter(|c| c.expected.is_some()).map(probe_json).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({
        "name": r.name,
        "file": r.file.display().to_string(),
        "backends": r.backends,
        "passed": r.passed(),
        "probes": r.probe_count(),
        "failures": r.failure_count(),
        "disagreements": r.disagreement_count(),
        "error": r.error.as_deref().map(clip_values),
        "notes": r.notes,
        "steps": steps,
    })
}

/// Longest part of a user-supplied value an error message echoes.
pub const CLIP: usize = 200;

/// `s`, cut to [`CLIP`] characters with a note of how much was left out.
pub fn clip(s: &str) -> String {
    let n = s.chars().count();
    if n <= CLIP {
        return s.to_string();
    }
    let head: String = s.chars().take(CLIP).collect();
    format!("{head}… ({} more characters)", n - CLIP)
}

/// A message with every overlong value in it clipped ([`clip`]): a quoted value (`"..."`,
/// `` `...` ``, `'...'`) or a run of non-blank characters longer than [`CLIP`]. Error texts
/// come from many layers (serde_yaml, the manifest checks, the engine), and any of them may
/// echo a bad value in full; this is applied where they are printed.
pub fn clip_values(msg: &str) -> String {
    let chars: Vec<char> = msg.chars().collect();
    let mut out = String::with_capacity(msg.len().min(4096));
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '`' | '\'') {
            if let Some(len) = chars[i + 1..].iter().position(|&d| d == c) {
                if len > CLIP {
                    let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                    out.push(c);
                    out.push_str(&clip(&inner));
                    out.push(c);
                    i += len + 2;
                    continue;
                }
            }
        }
        if !c.is_whitespace() {
            let len = chars[i..]
                .iter()
                .position(|d| d.is_whitespace())
                .unwrap_or(chars.len() - i);
            if len > CLIP {
                let run: String = chars[i..i + len].iter().collect();
                out.push_str(&clip(&run));
                i += len;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The failing probe groups of a report, for one test case each in a JUnit report: every
/// step with a failed expectation or a disagreement, as `(title, detail)` (`step 3
/// expect-matrix 80/TCP`, then the failing cells or probes, one per line).
pub fn failing_groups(r: &ScenarioReport) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in &r.steps {
        let (title, checks): (String, Vec<&ProbeCheck>) = match &s.outcome {
            StepOutcome::Probes(ps) => {
                (format!("step {} {}", s.index, s.kind), ps.iter().collect())
            }
            StepOutcome::Matrix(m) => (
                format!("step {} expect-matrix {}/{}", s.index, m.port, m.protocol),
                m.checks().collect(),
            ),
            StepOutcome::Change(_) => continue,
        };
        let bad: Vec<String> = checks
            .iter()
            .filter(|c| !c.failures().is_empty() || c.disagreement())
            .map(|c| {
                let what = if c.failures().is_empty() {
                    "DISAGREEMENT"
                } else {
                    "FAILED"
                };
                format!("{what} {}", probe_detail(c))
            })
            .collect();
        if !bad.is_empty() {
            out.push((title, bad.join("\n")));
        }
    }
    out
}
