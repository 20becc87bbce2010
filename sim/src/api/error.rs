//! [`ManifestError`]: a parse or validation error with its file, document, line, column and
//! field path, built from serde_yaml's error.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a manifest file was rejected.
///
/// Displayed as `file:line:col: document N: field: message`; the parts that are unknown
/// (no line for an IO error, no field for a document-level error) are left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file (0 when not about one document).
    pub document: usize,
    /// 1-based line in the file (absolute, not within the document).
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// Dotted field path, e.g. `spec.ingress[0].toPorts[0].ports[0].port`; empty for the
    /// document itself.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if self.document > 0 {
            write!(f, "document {}: ", self.document)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl ManifestError {
    /// An error reading `file`.
    pub fn io(file: &Path, err: &std::io::Error) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            document: 0,
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read file: {err}"),
        }
    }

    /// Splits serde_yaml's error into location, field path and message.
    ///
    /// serde_yaml 0.9 prints `<path>: <message> at line L column C`, where the path is left
    /// out at the document root and the location when it is line 1 column 1. Its marks count
    /// from the start of the input, so lines are absolute in a multi-document file.
    pub fn from_yaml(file: &Path, document: usize, err: &serde_yaml::Error) -> Self {
        let (line, column) = match err.location() {
            Some(loc) => (Some(loc.line()), Some(loc.column())),
            None => (None, None),
        };
        let (field, message) = split_yaml_message(&err.to_string(), line, column);
        ManifestError {
            file: file.to_path_buf(),
            document,
            line,
            column,
            field,
            message,
        }
    }
}

/// Returns `(field, message)` from serde_yaml's rendered error.
pub(crate) fn split_yaml_message(
    rendered: &str,
    line: Option<usize>,
    column: Option<usize>,
) -> (String, String) {
    let mut msg = rendered.to_string();
    if let (Some(l), Some(c)) = (line, column) {
        let suffix = format!(" at line {l} column {c}");
        if let Some(pos) = msg.find(&suffix) {
            msg.replace_range(pos..pos + suffix.len(), "");
        }
    }
    // The path is the text before the first ": " when it looks like one: no whitespace and
    // no quotes (messages such as "invalid type: ..." have a space before their colon).
    let mut field = String::new();
    if let Some(pos) = msg.find(": ") {
        let head = &msg[..pos];
        if !head.is_empty()
            && !head
                .chars()
                .any(|c| c.is_whitespace() || c == '`' || c == '"' || c == '\'')
        {
            field = head.to_string();
            msg = msg[pos + 2..].to_string();
        }
    }
    // An unknown field is reported at its parent; name the field itself.
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            let name = &rest[..end];
            field = if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
        }
    }
    (field, msg)
}
