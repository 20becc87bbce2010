//! [`ManifestError`]: a parse or validation error with its file, document, line, column and
//! field path, built from the located YAML reader's errors (`crate::yaml`).

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

    /// A file that could not be read (not a regular file, too large, an I/O error).
    pub fn read(file: &Path, message: String) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            document: 0,
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read file: {message}"),
        }
    }

    /// A deserialization error of the located YAML reader.
    pub fn from_node_error(file: &Path, document: usize, err: &crate::yaml::de::Error) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            document,
            line: err.mark().map(|m| m.line),
            column: err.mark().map(|m| m.column),
            field: err.path().to_string(),
            message: err.message().to_string(),
        }
    }

    /// A YAML syntax or structure error.
    pub fn from_yaml_error(file: &Path, err: &crate::yaml::YamlError) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            document: err.document,
            line: Some(err.mark.line),
            column: Some(err.mark.column),
            field: err.path.clone(),
            message: err.message.clone(),
        }
    }
}
