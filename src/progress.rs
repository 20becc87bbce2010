//! Progress on stderr for commands that can run for more than a couple of seconds (`run` over
//! many files, `fuzz`, `churn`, `diff --pcap`, `report`): an indicatif bar when stderr is a
//! terminal, nothing at all otherwise, so piped and CI output stays byte-identical.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar that draws only on a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `len` units of work called `unit` (`scenarios`, `cases`, `events`, `packets`).
    pub fn new(len: u64, unit: &str) -> Progress {
        Progress::with_target(len, unit, std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], drawing only when `draw` (tests pass `false`).
    pub fn with_target(len: u64, unit: &str, draw: bool) -> Progress {
        if !draw || len == 0 {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} {{wide_msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar: Some(bar) }
    }

    /// Whether anything is drawn.
    pub fn visible(&self) -> bool {
        self.bar.is_some()
    }

    /// One more unit done; `msg` says which (a scenario's name, a case number).
    pub fn inc(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
            b.inc(1);
        }
    }

    /// Sets the message without moving.
    pub fn message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }

    /// Prints a line above the bar (or nowhere when there is no bar).
    pub fn println(&self, line: &str) {
        if let Some(b) = &self.bar {
            b.println(line);
        }
    }

    /// Runs `f` with the bar hidden, so what `f` prints to the terminal is not drawn over.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
