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

/// How failing truth tables are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// Print tables of any size in full (by default a table of more than [`FULL_TABLE_CELLS`]
    /// cells prints as a summary: the counts and the failing cells).
    pub full_tables: bool,
    /// Expected, actual and diff side by side instead of the Kubernetes e2e blocks.
    pub side_by_side: bool,
}

/// Tables with more cells than this print as a summary unless asked for in full.
pub const FULL_TABLE_CELLS: usize = 900;

/// Failing cells listed one per line under a table (the rest are counted).
pub const MAX_CELL_LINES: usize = 50;

/// A truth table as the Kubernetes e2e suite prints it (`TruthTable.PrettyPrint`,
/// test/e2e/network/netpol/truthtable.go): tab-separated, a `-` corner, `.` connected, `X`
/// not, `?` no value.
pub fn pretty_print(m: &MatrixCheck, cell: impl Fn(usize, usize) -> Option<bool>) -> String {
    let mut lines = vec![std::iter::once("-".to_string())
        .chain(m.columns.iter().cloned())
        .collect::<Vec<_>>()
        .join("\t")];
    for (r, row) in m.rows.iter().enumerate() {
        let mut line = vec![row.clone()];
        line.extend((0..m.columns.len()).map(|c| {
            match cell(r, c) {
                None => "?",
                Some(true) => ".",
                Some(false) => "X",
            }
            .to_string()
        }));
        lines.push(line.join("\t"));
    }
    lines.join("\n")
}

/// What one backend observed in a cell (`None` when it errored).
fn observed(m: &MatrixCheck, backend: usize, r: usize, c: usize) -> Option<bool> {
    match m.cells[r][c].results.get(backend).map(|(_, o)| o) {
        Some(Ok(o)) => Some(o.allowed),
        _ => None,
    }
}

/// `reachability: correct:N, incorrect:M, result=...` for one backend's observations, as
/// `Reachability.Summary` counts them: unchecked cells (`?` in the scenario, as the e2e suite
/// treats loopback) are ignored; a cell the backend could not decide is incorrect.
fn reachability_counts(m: &MatrixCheck, backend: usize) -> (usize, usize, usize) {
    let (mut right, mut wrong, mut ignored) = (0, 0, 0);
    for r in 0..m.rows.len() {
        for c in 0..m.columns.len() {
            match (m.expected[r][c], observed(m, backend, r, c)) {
                (None, _) => ignored += 1,
                (Some(e), Some(o)) if e == o => right += 1,
                _ => wrong += 1,
            }
        }
    }
    (right, wrong, ignored)
}

/// A failing (or disagreeing) truth table: the Kubernetes e2e `PrintSummary` blocks
/// (`reachability:` line, then `expected`, `observed` and `comparison`), one observed and
/// comparison per backend when the backends disagree; a summary with only the failing cells
/// when the table is large; or the side-by-side view.
pub fn matrix_report(m: &MatrixCheck, backends: &[String], opts: &TextOptions) -> String {
    let mut out = String::new();
    let cells = m.rows.len() * m.columns.len();
    let large = cells > FULL_TABLE_CELLS && !opts.full_tables;
    let disagree = m.checks().any(|c| c.disagreement());
    // Backends shown: all of them when they disagree, else the first for all.
    let shown: Vec<(usize, String)> = if disagree {
        backends.iter().cloned().enumerate().collect()
    } else {
        vec![(0, backends.join(","))]
    };
    if opts.side_by_side && !large {
        out.push_str(&matrix_tables(m, backends));
    } else {
        let (_, _, ignored) = reachability_counts(m, 0);
        if ignored > 0 {
            let _ = writeln!(
                out,
                "warning: the results of {ignored} pod->pod cases have been ignored"
            );
        }
        for (i, name) in &shown {
            let (right, wrong, _) = reachability_counts(m, *i);
            let suffix = if disagree {
                format!(" ({name})")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "reachability{suffix}: correct:{right}, incorrect:{wrong}, result={}",
                wrong == 0
            );
        }
        if large {
            let _ = writeln!(
                out,
                "{}x{} table ({cells} cells): only the failing cells are listed (--full-tables prints the tables)",
                m.rows.len(),
                m.columns.len()
            );
        } else {
            out.push('\n');
            let _ = write!(
                out,
                "expected:\n\n{}\n\n\n",
                pretty_print(m, |r, c| m.expected[r][c])
            );
            for (i, name) in &shown {
                let t = if disagree {
                    format!(" ({name})")
                } else {
                    String::new()
                };
                let _ = write!(
                    out,
                    "observed{t}:\n\n{}\n\n\n",
                    pretty_print(m, |r, c| observed(m, *i, r, c))
                );
                let _ = write!(
                    out,
                    "comparison{t}:\n\n{}\n\n\n",
                    pretty_print(m, |r, c| match (m.expected[r][c], observed(m, *i, r, c)) {
                        (Some(e), Some(o)) => Some(e == o),
                        (Some(_), None) => Some(false),
                        (None, _) => None,
                    })
                );
            }
        }
    }
    let bad: Vec<&ProbeCheck> = m
        .checks()
        .filter(|c| !c.failures().is_empty() || c.disagreement())
        .collect();
    for c in bad.iter().take(MAX_CELL_LINES) {
        let _ = writeln!(out, "{}", probe_detail(c));
    }
    if bad.len() > MAX_CELL_LINES {
        let _ = writeln!(
            out,
            "... and {} more failing cells",
            bad.len() - MAX_CELL_LINES
        );
    }
    out
}

/// The text report of one scenario: one line when it passes, details when it does not.
pub fn text(r: &ScenarioReport) -> String {
    text_with(r, &TextOptions::default())
}

/// [`text`] with the table options.
pub fn text_with(r: &ScenarioReport, opts: &TextOptions) -> String {
    let mut out = String::new();
    let status = if r.passed() { "PASS" } else { "FAIL" };
    // Unchecked cells (`?`) are still compared across backends.
    let unchecked = r.checks().filter(|c| c.expected.is_none()).count();
    let compared = if unchecked > 0 && r.backends.len() > 1 {
        format!(", {unchecked} unchecked compared across backends")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{status} {} ({}): {} steps, {} probes checked{compared} on {}",
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
                    let body = matrix_report(m, &r.backends, opts);
                    for line in body.lines() {
                        if line.is_empty() {
                            out.push('\n');
                        } else {
                            let _ = writeln!(out, "    {line}");
                        }
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
