//! YAML read the way kubectl reads it, into trees that remember where every node is.
//!
//! Scenario files and manifests are parsed here into [`Node`] trees (saphyr's YAML parser
//! supplies the events), then handed to serde through [`de::NodeDeserializer`]. Owning the
//! tree is what lets the loader:
//! - read a manifest's `apiVersion` and `kind` before its `spec` whatever the key order (the
//!   typed pass needs the kind first; Cilium's own connectivity-check files put them last);
//! - report every error at `file:line:column` with its field path, including errors found
//!   after a value was read;
//! - expand anchors, aliases and merge keys (`<<: *a`, `<<: [*a, *b]`) with their positions;
//! - refuse duplicate keys everywhere (kubectl silently keeps the last one, which has hidden
//!   real mistakes: kubernetes/kubernetes#56847);
//! - resolve plain scalars with the YAML 1.1 rules kubectl uses (sigs.k8s.io/yaml, go-yaml
//!   v2: an unquoted `yes`, `on` or `y` is a boolean) inside manifests, and with YAML 1.2's
//!   core schema (as serde_yaml did) in the scenario format's own fields.
//!
//! Limits: at most [`MAX_DEPTH`] levels of nesting, and at most [`MIN_NODE_BUDGET`] plus two
//! per byte of input nodes after alias expansion (a guard against "billion laughs" inputs;
//! without aliases a stream never has more nodes than bytes).

pub mod de;
pub mod emit;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Nesting deeper than this is refused (serde_yaml had the same limit).
pub const MAX_DEPTH: usize = 128;
/// The node budget of a stream, counting every alias expansion, is this plus two per byte.
pub const MIN_NODE_BUDGET: usize = 100_000;

/// A position in the text: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One node of a document: where it starts, and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique (checked while parsing), merge keys are
    /// already expanded.
    Map(Vec<(Node, Node)>),
}

/// How a scalar was written: the style decides whether it is ever anything but a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>` block scalars.
    Block,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub style: Style,
    /// An explicit tag: the core ones as `!!str`, `!!int`, ...; others as written.
    pub tag: Option<String>,
}

/// Which rules turn a plain scalar into a null, a boolean or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// YAML 1.1 as go-yaml v2 resolves it (`resolve.go`), which is what `kubectl` and every
    /// Kubernetes client built on sigs.k8s.io/yaml read manifests with.
    Yaml11,
    /// YAML 1.2's core schema (what serde_yaml 0.9 read scenario files with).
    Core,
}

/// A scalar's value once resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl Resolved<'_> {
    /// The type name the Kubernetes API server uses for this value in errors.
    pub fn k8s_type(&self) -> &'static str {
        match self {
            Resolved::Null => "null",
            Resolved::Bool(_) => "boolean",
            Resolved::Int(_) => "integer",
            Resolved::Float(_) => "number",
            Resolved::Str(_) => "string",
        }
    }
}

impl Scalar {
    /// True for a plain scalar with no tag (the only kind whose type is inferred).
    pub fn is_plain(&self) -> bool {
        self.style == Style::Plain && self.tag.is_none()
    }

    /// Resolves the scalar: quoted and block scalars and `!!str` are strings; a core tag
    /// forces its type (text that does not fit it stays a string, and the caller's type check
    /// reports it); a plain scalar follows `schema`.
    pub fn resolve(&self, schema: Schema) -> Resolved<'_> {
        let text = self.text.as_str();
        match self.tag.as_deref() {
            None if self.style == Style::Plain => resolve_plain(text, schema),
            None => Resolved::Str(text),
            Some("!!null") => Resolved::Null,
            Some("!!bool") => match resolve_plain(text, schema) {
                b @ Resolved::Bool(_) => b,
                _ => Resolved::Str(text),
            },
            Some("!!int") => match resolve_plain(text, schema) {
                i @ Resolved::Int(_) => i,
                _ => Resolved::Str(text),
            },
            Some("!!float") => match resolve_plain(text, schema) {
                Resolved::Int(i) => Resolved::Float(i as f64),
                f @ Resolved::Float(_) => f,
                _ => Resolved::Str(text),
            },
            // `!!str`, the non-specific `!`, and application tags (go-yaml keeps their text).
            Some(_) => Resolved::Str(text),
        }
    }
}

fn resolve_plain(text: &str, schema: Schema) -> Resolved<'_> {
    match schema {
        Schema::Yaml11 => resolve_yaml11(text),
        Schema::Core => resolve_core(text),
    }
}

/// go-yaml v2 `resolve()`: a table of fixed words, then (for text starting with a digit or a
/// sign) integers in Go's `ParseInt(s, 0, 64)` syntax with `_` removed, then YAML-style
/// floats; text starting with `.` may be a float. Timestamps stay strings (go-yaml keeps
/// them as strings when decoding into an `interface{}`, as sigs.k8s.io/yaml does).
fn resolve_yaml11(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false)
        }
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first == b'.' {
        return match text.parse::<f64>() {
            Ok(f) if is_yaml_float(text) => Resolved::Float(f),
            _ => Resolved::Str(text),
        };
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return Resolved::Str(text);
    }
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(i) = parse_go_int(&plain) {
        return Resolved::Int(i);
    }
    if is_yaml_float(&plain) {
        if let Ok(f) = plain.parse::<f64>() {
            return Resolved::Float(f);
        }
    }
    Resolved::Str(text)
}

/// Go's `strconv.ParseInt(s, 0, 64)` / `ParseUint(s, 0, 64)`: an optional sign, then `0x`,
/// `0o`, `0b` or a leading `0` (octal) prefix, or decimal.
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = u64::from_str_radix(digits, radix).ok()? as i128;
    let v = if neg { -v } else { v };
    // ParseInt's range, or ParseUint's for non-negative values.
    (v >= i64::MIN as i128).then_some(v)
}

/// go-yaml v2's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// YAML 1.2 core schema (what serde_yaml 0.9 resolved).
fn resolve_core(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let (neg, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let parsed = if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()
    } else if let Some(o) = body.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()
    } else if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()
    } else if !body.is_empty() && body.bytes().all(|c| c.is_ascii_digit()) {
        body.parse::<i128>().ok()
    } else {
        None
    };
    if let Some(v) = parsed.filter(|_| !body.starts_with(['+', '-'])) {
        return Resolved::Int(if neg { -v } else { v });
    }
    if is_yaml_float(text) {
        if let Ok(f) = text.parse::<f64>() {
            return Resolved::Float(f);
        }
    }
    Resolved::Str(text)
}

impl Node {
    /// The text of a scalar node.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar node that resolves to a string (under YAML 1.1).
    pub fn as_str(&self) -> Option<&str> {
        match self.as_scalar()?.resolve(Schema::Yaml11) {
            Resolved::Str(s) => Some(s),
            _ => None,
        }
    }

    /// True for a null scalar (`~`, `null`, empty) or an empty document.
    pub fn is_null(&self) -> bool {
        matches!(
            self.as_scalar().map(|s| s.resolve(Schema::Yaml11)),
            Some(Resolved::Null)
        )
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The entry of a mapping whose key is the scalar `key`.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_scalar().is_some_and(|s| s.text == key))
            .map(|(k, v)| (k, v))
    }

    /// The value of a mapping's `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The node at a dotted path with `[i]` indexes, as errors print them
    /// (`steps[3].expect[0]`); `""` is the node itself.
    pub fn at_path(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        let mut rest = path;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']')?;
                let index: usize = after[..end].parse().ok()?;
                node = node.as_seq()?.get(index)?;
                rest = &after[end + 1..];
            } else {
                let rest_key = rest.strip_prefix('.').unwrap_or(rest);
                let end = rest_key.find(['.', '[']).unwrap_or(rest_key.len());
                node = node.get(&rest_key[..end])?;
                rest = &rest_key[end..];
            }
        }
        Some(node)
    }

    /// Counts the nodes of the tree (for the expansion budget).
    fn count(&self) -> usize {
        match &self.value {
            Value::Scalar(_) => 1,
            Value::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Value::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.count() + v.count())
                    .sum::<usize>()
            }
        }
    }
}

/// A YAML syntax or structure error, located.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message} at line {} column {}", if .path.is_empty() { String::new() } else { format!("{}: ", .path) }, .mark.line, .mark.column)]
pub struct YamlError {
    pub mark: Mark,
    /// The field path of the offending node where known (a duplicate key), else empty.
    pub path: String,
    /// 1-based index of the document the error is in.
    pub document: usize,
    pub message: String,
}

/// One document of a stream. `root` is `None` for an empty document (nothing, or only
/// comments, or a null).
#[derive(Clone, Debug)]
pub struct Document {
    pub root: Option<Node>,
    /// 1-based index in the stream.
    pub index: usize,
    /// Where the document starts.
    pub mark: Mark,
}

fn mark_of(span: &Span) -> Mark {
    Mark {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

fn tag_name(tag: &saphyr_parser::Tag) -> String {
    if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

struct Builder {
    docs: Vec<Document>,
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, Node>,
    nodes: usize,
    max_nodes: usize,
    doc_mark: Mark,
    document: usize,
    root: Option<Node>,
}

impl Builder {
    fn err(&self, mark: Mark, message: impl Into<String>) -> YamlError {
        YamlError {
            mark,
            path: String::new(),
            document: self.document.max(1),
            message: message.into(),
        }
    }

    /// The field path of the node being built on top of the stack.
    fn path(&self) -> String {
        let mut out = String::new();
        for f in &self.stack {
            match f {
                Frame::Seq { items, .. } => out.push_str(&format!("[{}]", items.len())),
                Frame::Map { key, .. } => {
                    let k = key
                        .as_ref()
                        .and_then(Node::as_scalar)
                        .map_or("", |s| s.text.as_str());
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
            }
        }
        out
    }

    fn budget(&mut self, n: usize, mark: Mark) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > self.max_nodes {
            return Err(self.err(
                mark,
                format!("more than {} nodes after expanding aliases", self.max_nodes),
            ));
        }
        Ok(())
    }

    /// A finished node goes into its parent (or becomes the document's root).
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    if !matches!(node.value, Value::Scalar(_)) {
                        let mark = node.mark;
                        return Err(self.err(
                            mark,
                            "a mapping key must be a scalar (Kubernetes objects are JSON, whose keys are strings)",
                        ));
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, mark: Mark) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(mark, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.budget(1, mark)?;
        self.stack.push(frame);
        Ok(())
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), YamlError> {
        let mark = mark_of(&span);
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                self.document += 1;
                self.doc_mark = mark;
                self.root = None;
            }
            Event::DocumentEnd => {
                let root = self.root.take().filter(|r| !r.is_null());
                self.docs.push(Document {
                    root,
                    index: self.document,
                    mark: self.doc_mark,
                });
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(self.err(mark, "alias to an anchor that is not defined before it"));
                };
                self.budget(node.count(), mark)?;
                self.push(node, 0)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.budget(1, mark)?;
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    _ => Style::Block,
                };
                let node = Node {
                    mark,
                    value: Value::Scalar(Scalar {
                        text: text.into_owned(),
                        style,
                        tag: tag.map(|t| tag_name(&t)),
                    }),
                };
                self.push(node, anchor)?;
            }
            Event::SequenceStart(anchor, _) => self.open(
                Frame::Seq {
                    mark,
                    anchor,
                    items: Vec::new(),
                },
                mark,
            )?,
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    mark,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                },
                mark,
            )?,
            Event::SequenceEnd => {
                let Some(Frame::Seq {
                    mark,
                    anchor,
                    items,
                }) = self.stack.pop()
                else {
                    return Err(self.err(mark, "unbalanced sequence end"));
                };
                self.push(
                    Node {
                        mark,
                        value: Value::Seq(items),
                    },
                    anchor,
                )?;
            }
            Event::MappingEnd => {
                let Some(Frame::Map {
                    mark,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                else {
                    return Err(self.err(mark, "unbalanced mapping end"));
                };
                let entries = self.finish_map(entries)?;
                self.push(
                    Node {
                        mark,
                        value: Value::Map(entries),
                    },
                    anchor,
                )?;
            }
        }
        Ok(())
    }

    /// Expands merge keys and refuses duplicate keys.
    ///
    /// Merge follows the YAML merge-key spec (yaml.org/type/merge.html): a key written in the
    /// mapping wins over a merged one wherever it is written, and among merged mappings the
    /// earlier one wins. Merged entries take the place of their `<<` entry.
    fn finish_map(&self, entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, YamlError> {
        let is_merge = |k: &Node| {
            k.as_scalar().is_some_and(|s| {
                s.text == "<<" && (s.is_plain() || s.tag.as_deref() == Some("!!merge"))
            })
        };
        let mut own: HashSet<&str> = HashSet::new();
        let mut first_at: BTreeMap<&str, Mark> = BTreeMap::new();
        let mut has_merge = false;
        for (k, _) in &entries {
            if is_merge(k) {
                has_merge = true;
                continue;
            }
            let text = k.as_scalar().map_or("", |s| s.text.as_str());
            if let Some(first) = first_at.get(text) {
                let parent = self.path();
                let mut e = self.err(
                    k.mark,
                    format!(
                        "duplicate key {text:?} (first at line {} column {}; kubectl would silently keep only the last one)",
                        first.line, first.column
                    ),
                );
                e.path = if parent.is_empty() {
                    text.to_string()
                } else {
                    format!("{parent}.{text}")
                };
                return Err(e);
            }
            first_at.insert(text, k.mark);
            own.insert(text);
        }
        if !has_merge {
            return Ok(entries);
        }
        let mut seen: HashSet<String> = own.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            if !is_merge(&k) {
                out.push((k, v));
                continue;
            }
            let sources: Vec<&Node> = match &v.value {
                Value::Map(_) => vec![&v],
                Value::Seq(items) if items.iter().all(|i| i.as_map().is_some()) => {
                    items.iter().collect()
                }
                _ => {
                    return Err(self.err(
                        v.mark,
                        "a merge key (<<) takes a mapping or a list of mappings",
                    ))
                }
            };
            for src in sources {
                for (mk, mv) in src.as_map().unwrap_or_default() {
                    let text = mk.as_scalar().map_or("", |s| s.text.as_str());
                    if seen.insert(text.to_string()) {
                        out.push((mk.clone(), mv.clone()));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Parses every document of a YAML stream.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut b = Builder {
        docs: Vec::new(),
        stack: Vec::new(),
        anchors: BTreeMap::new(),
        nodes: 0,
        max_nodes: MIN_NODE_BUDGET.saturating_add(text.len().saturating_mul(2)),
        doc_mark: Mark { line: 1, column: 1 },
        document: 0,
        root: None,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(item) = parser.next_event() {
        match item {
            Ok((ev, span)) => b.event(ev, span)?,
            Err(e) => {
                let m = e.marker();
                return Err(YamlError {
                    mark: Mark {
                        line: m.line(),
                        column: m.col() + 1,
                    },
                    path: String::new(),
                    document: b.document.max(1),
                    message: e.info().to_string(),
                });
            }
        }
    }
    Ok(b.docs)
}

/// Parses a stream that must hold exactly one document (`None` when it is empty).
pub fn parse_one(text: &str) -> Result<Option<Node>, YamlError> {
    let mut docs = parse_stream(text)?;
    if docs.len() > 1 {
        let d = &docs[1];
        return Err(YamlError {
            mark: d.mark,
            path: String::new(),
            document: d.index,
            message: "expected one YAML document, found a second one".into(),
        });
    }
    Ok(docs.pop().and_then(|d| d.root))
}

#[cfg(test)]
mod tests;
