//! `verdict report --html OUT SCENARIO...`: one self-contained HTML page for people: per
//! scenario its result, the truth tables (expected and each backend's actual, coloured, the
//! failing cells marked), the probes with every backend's verdict, the disagreements, the
//! flows, and for scenarios with `propagation:` (what `verdict churn --write-scenario`
//! writes) plots of the propagation delays and of the real compute time per control-plane
//! event (plotters, SVG inline).
//!
//! The page needs nothing else: the CSS is inline, the plots are inline SVG, there is no
//! JavaScript and no link to the network. Everything but the compute-time plot is a function
//! of the inputs (`--no-timings` leaves it out, and the page is then byte-identical across
//! runs).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use plotters::prelude::*;

use verdict_sim::conntrack::ConnPacket;
use verdict_sim::engine::{
    self, Backend, Change, FlowRecord, MatrixCheck, ProbeCheck, ScenarioReport, StepOutcome, World,
};
use verdict_sim::oracle::Flow;
use verdict_sim::report;
use verdict_sim::verdict::Outcome;

/// What `verdict report` takes.
#[derive(Clone, Debug)]
pub struct ReportArgs {
    pub html: PathBuf,
    pub backends: Vec<String>,
    pub paths: Vec<PathBuf>,
    /// Leave out real compute time (the page is then deterministic).
    pub no_timings: bool,
    /// Flow lines shown per scenario (the rest are counted).
    pub max_flows: usize,
}

/// Real time one backend spent per control-plane event (keyed by virtual instant).
type Timings = BTreeMap<String, BTreeMap<u64, Duration>>;

/// A backend with a stopwatch around its control-plane work.
struct Timed {
    inner: Box<dyn Backend>,
    log: Rc<RefCell<Timings>>,
}

impl Timed {
    fn record(&self, world: &World, change: &Change<'_>, t: Duration) {
        if matches!(change, Change::Initial | Change::Clock) {
            return;
        }
        *self
            .log
            .borrow_mut()
            .entry(self.inner.name().to_string())
            .or_default()
            .entry(world.clock_ns)
            .or_default() += t;
    }
}

impl Backend for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String> {
        let t = Instant::now();
        let r = self.inner.sync(world, change);
        self.record(world, change, t.elapsed());
        r
    }
    fn sync_due(
        &mut self,
        world: &World,
        change: &Change<'_>,
        due: &BTreeMap<String, u64>,
    ) -> Result<(), String> {
        let t = Instant::now();
        let r = self.inner.sync_due(world, change, due);
        self.record(world, change, t.elapsed());
        r
    }
    fn lags(&self) -> bool {
        self.inner.lags()
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        self.inner.probe(world, flow)
    }
    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String> {
        self.inner.packet(world, pkt)
    }
    fn proxy_rules(
        &mut self,
        world: &World,
        flow: &Flow,
        dir: verdict_sim::verdict::Direction,
        proxy_port: u16,
    ) -> Result<Vec<verdict_sim::proxy::ProxyRule>, String> {
        self.inner.proxy_rules(world, flow, dir, proxy_port)
    }
    fn proxy_upstream(&mut self, world: &World) -> Result<Outcome, String> {
        self.inner.proxy_upstream(world)
    }
    fn note_l7(&mut self, world: &World, l7: &verdict_sim::engine::L7Exchange<'_>) {
        self.inner.note_l7(world, l7)
    }
    fn take_flows(&mut self, world: &World) -> Vec<FlowRecord> {
        self.inner.take_flows(world)
    }
}

/// One scenario's results for the page.
pub struct Entry {
    pub report: ScenarioReport,
    /// Per backend, compute time per control-plane event (empty with `--no-timings`).
    pub timings: Timings,
}

/// HTML text escaping.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An HTML id from a scenario name.
fn anchor(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("s-{s}")
}

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
.pass { color: #137333; font-weight: 600; } .fail { color: #c5221f; font-weight: 600; }
table { border-collapse: collapse; margin: 0.3em 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; font-size: 0.85em; }
th { background: #f3f3f3; text-align: left; }
table.truth td { text-align: center; min-width: 1.4em; font-family: ui-monospace, monospace; }
td.allow { background: #d7f2dd; } td.deny { background: #f8d6d3; } td.unchecked { background: #eee; color: #777; }
td.error { background: #ffe28a; }
td.wrong { outline: 3px solid #c5221f; outline-offset: -3px; font-weight: 700; }
td.disagree { outline: 3px dashed #b06000; outline-offset: -3px; }
.tables { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.tables figure { margin: 0; } figcaption { font-size: 0.85em; font-weight: 600; margin-bottom: 0.2em; }
tr.wrong td { background: #fce8e6; } tr.disagree td { background: #fef7e0; }
tr.transient td { background: #e8f0fe; }
pre.flows { font-size: 0.75em; background: #f8f8f8; padding: 0.6em; overflow-x: auto; max-height: 30em; }
.summary td.num { text-align: right; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.note { color: #555; font-size: 0.85em; }
";

/// The class of a cell whose value is `v`.
fn cell_class(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "allow",
        Some(false) => "deny",
        None => "unchecked",
    }
}

fn mark(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => ".",
        Some(false) => "X",
        None => "?",
    }
}

/// One truth table: `value(r, c)` gives the cell, `extra(r, c)` extra classes and a title.
fn truth_table(
    m: &MatrixCheck,
    caption: &str,
    value: impl Fn(usize, usize) -> Option<bool>,
    extra: impl Fn(usize, usize) -> (&'static str, String),
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><figcaption>{}</figcaption><table class=\"truth\"><tr><th>-</th>",
        esc(caption)
    );
    for c in &m.columns {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr>");
    for (r, row) in m.rows.iter().enumerate() {
        let _ = write!(s, "<tr><th>{}</th>", esc(row));
        for c in 0..m.columns.len() {
            let v = value(r, c);
            let (more, title) = extra(r, c);
            let _ = write!(
                s,
                "<td class=\"{}{}\" title=\"{}\">{}</td>",
                cell_class(v),
                more,
                esc(&title),
                mark(v)
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("</table></figure>");
    s
}

fn outcome_text(r: &Result<Outcome, String>) -> String {
    match r {
        Ok(o) => o.to_string(),
        Err(e) => format!("error: {}", report::clip_values(e)),
    }
}

/// Tables of one matrix step: expected, then each backend's actual.
fn matrix_html(m: &MatrixCheck, backends: &[String]) -> String {
    let mut s = String::from("<div class=\"tables\">");
    s.push_str(&truth_table(
        m,
        "expected",
        |r, c| m.expected[r][c],
        |_, _| ("", String::new()),
    ));
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&truth_table(
            m,
            &format!("actual ({b})"),
            |r, c| match m.cells[r][c].results.get(i).map(|(_, o)| o) {
                Some(Ok(o)) => Some(o.allowed),
                _ => None,
            },
            |r, c| {
                let p = &m.cells[r][c];
                let title = p
                    .results
                    .get(i)
                    .map(|(_, o)| format!("{}: {}", p.label(), outcome_text(o)))
                    .unwrap_or_default();
                let failed = p.failures().contains(&b.as_str());
                let class = match (&p.results.get(i).map(|(_, o)| o), failed, p.disagreement()) {
                    (Some(Err(_)), _, _) => " error wrong",
                    (_, true, _) => " wrong",
                    (_, false, true) => " disagree",
                    _ => "",
                };
                (class, title)
            },
        ));
    }
    s.push_str("</div>");
    s
}

/// The probes of one `expect`/`connect`/`send` step.
fn probes_html(ps: &[ProbeCheck], backends: &[String]) -> String {
    let mut s = String::from("<table class=\"probes\"><tr><th>probe</th><th>expected</th>");
    let windows = ps.iter().any(|p| p.transient.is_some());
    for b in backends {
        let _ = write!(s, "<th>{}</th>", esc(b));
    }
    if windows {
        s.push_str("<th>propagation window</th>");
    }
    s.push_str("</tr>");
    for p in ps {
        let class = if !p.failures().is_empty() {
            " class=\"wrong\""
        } else if p.disagreement() {
            " class=\"disagree\""
        } else if p.transient_disagreement() {
            " class=\"transient\""
        } else {
            ""
        };
        let expected = p
            .expected
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or("-".into());
        let _ = write!(
            s,
            "<tr{class}><td>{}</td><td>{}</td>",
            esc(&p.label()),
            esc(&expected)
        );
        for b in backends {
            let r = p
                .results
                .iter()
                .find(|(n, _)| n == b)
                .map(|(_, r)| outcome_text(r))
                .unwrap_or("-".into());
            let _ = write!(s, "<td>{}</td>", esc(&r));
        }
        if windows {
            let note = p.transient.as_ref().map(|t| t.note()).unwrap_or_default();
            let _ = write!(s, "<td class=\"note\">{}</td>", esc(&note));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// An inline SVG histogram of propagation delays (virtual ms).
fn delay_plot(r: &ScenarioReport) -> Option<String> {
    let delays: Vec<u64> = r
        .steps
        .iter()
        .flat_map(|s| s.deliveries.iter())
        .map(|d| (d.due_ns - d.issued_ns) / 1_000_000)
        .collect();
    if delays.is_empty() {
        return None;
    }
    let max = delays.iter().copied().max().unwrap_or(0);
    let bucket = (max / 20).max(1);
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for d in &delays {
        *counts.entry(d / bucket * bucket).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 300)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "propagation delay per change and node ({} deliveries)",
                    delays.len()
                ),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0u64..max + bucket, 0u32..top + top / 10 + 1)
            .ok()?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("delay (virtual ms)")
            .y_desc("deliveries")
            .draw()
            .ok()?;
        // One bar per bucket, drawn as rectangles (never narrower than the bucket).
        chart
            .draw_series(counts.iter().map(|(b, n)| {
                Rectangle::new(
                    [(*b, 0u32), (*b + bucket, *n)],
                    RGBColor(66, 133, 244).filled(),
                )
            }))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

/// An inline SVG plot of real compute time per control-plane event, one line per backend.
fn compute_plot(t: &Timings) -> Option<String> {
    let series: Vec<(&String, Vec<f64>)> = t
        .iter()
        .map(|(b, per)| (b, per.values().map(|d| d.as_secs_f64() * 1e3).collect()))
        .filter(|(_, v): &(&String, Vec<f64>)| !v.is_empty())
        .collect();
    if series.is_empty() {
        return None;
    }
    let n = series.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(0.001);
    const COLOURS: [RGBColor; 5] = [
        RGBColor(66, 133, 244),
        RGBColor(219, 68, 55),
        RGBColor(15, 157, 88),
        RGBColor(244, 160, 0),
        RGBColor(120, 60, 180),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 300)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption("compute time per control-plane event", ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0usize..n.max(2), 0f64..top * 1.1)
            .ok()?;
        chart
            .configure_mesh()
            .x_desc("event")
            .y_desc("real ms")
            .draw()
            .ok()?;
        for (i, (b, v)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    v.iter().enumerate().map(|(x, y)| (x, *y)),
                    colour.stroke_width(2),
                ))
                .ok()?
                .label(b.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            // Points too: a run with one event has no line to draw.
            chart
                .draw_series(
                    v.iter()
                        .enumerate()
                        .map(|(x, y)| Circle::new((x, *y), 3, colour.filled())),
                )
                .ok()?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

/// The flows of the first datapath backend that saw any, as compact lines.
fn flow_lines(r: &ScenarioReport) -> (String, Vec<String>) {
    let Some(backend) = r
        .steps
        .iter()
        .flat_map(|s| s.flows.iter().map(|(b, _)| b.clone()))
        .next()
    else {
        return (String::new(), Vec::new());
    };
    let lines = r
        .steps
        .iter()
        .flat_map(|s| s.flows.iter())
        .filter(|(b, _)| *b == backend)
        .flat_map(|(_, f)| f.iter().map(|f| f.compact.clone()))
        .collect();
    (backend, lines)
}

/// The whole page.
pub fn render(entries: &[Entry], backends: &[String], max_flows: usize) -> String {
    let mut h = String::new();
    let passed = entries.iter().filter(|e| e.report.passed()).count();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>verdict report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    );
    let _ = writeln!(
        h,
        "<h1>verdict report</h1>\n<p>{} scenarios on {}: <span class=\"{}\">{passed} passed, {} failed</span></p>",
        entries.len(),
        esc(&backends.join(",")),
        if passed == entries.len() { "pass" } else { "fail" },
        entries.len() - passed
    );
    h.push_str("<table class=\"summary\"><tr><th>scenario</th><th>result</th><th>steps</th><th>probes</th><th>failed</th><th>disagreements</th></tr>\n");
    for e in entries {
        let r = &e.report;
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{}\">{}</a></td><td class=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            anchor(&r.name),
            esc(&r.name),
            if r.passed() { "pass" } else { "fail" },
            if r.passed() { "PASS" } else { "FAIL" },
            r.steps.len(),
            r.probe_count(),
            r.failure_count(),
            r.disagreement_count()
        );
    }
    h.push_str("</table>\n");
    for e in entries {
        let r = &e.report;
        let _ = writeln!(
            h,
            "<section id=\"{}\" class=\"scenario\">\n<h2>{} <span class=\"{}\">{}</span></h2>\n<p class=\"note\">{} &middot; {} steps, {} probes on {}</p>",
            anchor(&r.name),
            esc(&r.name),
            if r.passed() { "pass" } else { "fail" },
            if r.passed() { "PASS" } else { "FAIL" },
            esc(&r.file.display().to_string()),
            r.steps.len(),
            r.probe_count(),
            esc(&r.backends.join(","))
        );
        if let Some(err) = &r.error {
            let _ = writeln!(
                h,
                "<p class=\"fail\">error: {}</p>",
                esc(&report::clip_values(err))
            );
        }
        let disagreeing: Vec<&ProbeCheck> = r.checks().filter(|c| c.disagreement()).collect();
        if !disagreeing.is_empty() {
            let _ = writeln!(h, "<h3>disagreements ({})</h3>", disagreeing.len());
            let owned: Vec<ProbeCheck> = disagreeing.iter().map(|c| (*c).clone()).collect();
            h.push_str(&probes_html(&owned, &r.backends));
        }
        for s in &r.steps {
            match &s.outcome {
                StepOutcome::Change(c) => {
                    let _ = writeln!(
                        h,
                        "<h3>step {} {}</h3><p class=\"note\">{}</p>",
                        s.index,
                        s.kind,
                        esc(c)
                    );
                }
                StepOutcome::Probes(ps) => {
                    let _ = writeln!(h, "<h3>step {} {}</h3>", s.index, s.kind);
                    h.push_str(&probes_html(ps, &r.backends));
                }
                StepOutcome::Matrix(m) => {
                    let status = if m.failed() { "FAILED" } else { "ok" };
                    let _ = writeln!(
                        h,
                        "<h3>step {} expect-matrix {}/{}: <span class=\"{}\">{status}</span></h3>",
                        s.index,
                        m.port,
                        m.protocol,
                        if m.failed() { "fail" } else { "pass" }
                    );
                    h.push_str(&matrix_html(m, &r.backends));
                }
            }
        }
        let delays = delay_plot(r);
        let compute = compute_plot(&e.timings);
        if delays.is_some() || compute.is_some() {
            h.push_str("<h3>propagation and compute time</h3><div class=\"plots\">");
            for svg in [delays, compute].into_iter().flatten() {
                h.push_str("<figure class=\"plot\">");
                // The SVG backend writes a standalone document; drop its XML declaration.
                h.push_str(svg.trim_start_matches(|c| c != '<').trim_start());
                h.push_str("</figure>");
            }
            h.push_str("</div>");
        }
        let (backend, lines) = flow_lines(r);
        if !lines.is_empty() {
            let _ = write!(
                h,
                "<details class=\"flows\"><summary>{} flows ({}), as <code>hubble observe</code> prints them</summary><pre class=\"flows\">",
                lines.len(),
                esc(&backend)
            );
            for l in lines.iter().take(max_flows) {
                h.push_str(&esc(l));
                h.push('\n');
            }
            if lines.len() > max_flows {
                let _ = writeln!(h, "... and {} more", lines.len() - max_flows);
            }
            h.push_str("</pre></details>\n");
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// `verdict report`: runs the scenarios and writes the page; 0 when every scenario passed,
/// 1 when one failed, 2 when one could not be loaded or replayed.
pub fn run(a: &ReportArgs) -> Result<u8> {
    let files = crate::scenario_files(&a.paths)?;
    if files.is_empty() {
        anyhow::bail!("no scenario files (*.yaml, *.yml) found");
    }
    let progress = crate::progress::Progress::new(files.len() as u64, "scenarios");
    let mut entries = Vec::new();
    for f in &files {
        progress.message(&f.display().to_string());
        let log: Rc<RefCell<Timings>> = Rc::default();
        let timed = !a.no_timings;
        let factory = |name: &str| -> Result<Box<dyn Backend>, String> {
            let inner = crate::backends::factory(name)?;
            Ok(if timed {
                Box::new(Timed {
                    inner,
                    log: log.clone(),
                })
            } else {
                inner
            })
        };
        let report = engine::run_file(f, &a.backends, &factory);
        let has_propagation = report.steps.iter().any(|s| !s.deliveries.is_empty());
        let timings = if has_propagation {
            log.take()
        } else {
            Timings::new()
        };
        progress.inc(&report.name);
        entries.push(Entry { report, timings });
    }
    progress.finish();
    let page = render(&entries, &a.backends, a.max_flows);
    write_page(&a.html, &page)?;
    let failed = entries.iter().filter(|e| !e.report.passed()).count();
    let errors = entries.iter().filter(|e| e.report.error.is_some()).count();
    println!(
        "wrote {}: {} scenarios, {} passed, {failed} failed",
        a.html.display(),
        entries.len(),
        entries.len() - failed
    );
    Ok(if errors > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    })
}

fn write_page(path: &Path, page: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))
}
