//! Writing [`Node`] trees back as YAML, byte-stable: block style, two-space indents, short
//! all-scalar mappings and sequences in flow style, and a scalar plain only when it reads
//! back as the same string under both YAML 1.1 (kubectl) and the core schema.

use super::{Mark, Node, Resolved, Scalar, Schema, Style, Value};

impl Node {
    fn new(value: Value) -> Node {
        Node {
            mark: Mark::default(),
            value,
        }
    }

    /// A string scalar (quoted on output when it would otherwise read as something else).
    pub fn string(text: impl Into<String>) -> Node {
        let text = text.into();
        let style = if is_safe_plain(&text) {
            Style::Plain
        } else {
            Style::DoubleQuoted
        };
        Node::new(Value::Scalar(Scalar {
            text,
            style,
            tag: None,
        }))
    }

    /// A plain scalar whose text is written as is (numbers, booleans).
    pub fn plain(text: impl Into<String>) -> Node {
        Node::new(Value::Scalar(Scalar {
            text: text.into(),
            style: Style::Plain,
            tag: None,
        }))
    }

    /// A multi-line string written as a literal block scalar (`|2`) where it is a mapping's
    /// value and reads back unchanged that way (else double-quoted), so tables stay readable.
    pub fn block(text: impl Into<String>) -> Node {
        Node::new(Value::Scalar(Scalar {
            text: text.into(),
            style: Style::Block,
            tag: None,
        }))
    }

    pub fn seq(items: Vec<Node>) -> Node {
        Node::new(Value::Seq(items))
    }

    pub fn map(entries: Vec<(&str, Node)>) -> Node {
        Node::new(Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Node::string(k), v))
                .collect(),
        ))
    }

    /// A mapping with keys that are not `&'static`-friendly (labels).
    pub fn map_owned(entries: Vec<(String, Node)>) -> Node {
        Node::new(Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Node::string(k), v))
                .collect(),
        ))
    }
}

/// Whether `text` can be written as a plain scalar and read back as the same string.
pub fn is_safe_plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace() {
        return false;
    }
    if text.ends_with(char::is_whitespace) || text.ends_with(':') {
        return false;
    }
    if text.contains(": ") || text.contains(" #") || text.chars().any(|c| c.is_control()) {
        return false;
    }
    let s = Scalar {
        text: text.to_string(),
        style: Style::Plain,
        tag: None,
    };
    matches!(s.resolve(Schema::Yaml11), Resolved::Str(_))
        && matches!(s.resolve(Schema::Core), Resolved::Str(_))
}

fn is_flow_safe(s: &Scalar) -> bool {
    if is_literal_safe(s) {
        return false;
    }
    s.style != Style::Plain || !s.text.contains([',', '[', ']', '{', '}'])
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar_text(s: &Scalar) -> String {
    let body = match s.style {
        Style::Plain if !s.text.is_empty() && !s.text.contains('\n') => s.text.clone(),
        Style::Plain if s.text.is_empty() => "\"\"".to_string(),
        _ => quoted(&s.text),
    };
    match &s.tag {
        Some(t) => format!("{t} {body}"),
        None => body,
    }
}

/// The flow form of a node, if it is short and simple enough to read well on one line.
fn flow(node: &Node) -> Option<String> {
    match &node.value {
        Value::Scalar(s) => is_flow_safe(s).then(|| scalar_text(s)),
        Value::Seq(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match &i.value {
                    Value::Scalar(s) => is_flow_safe(s).then(|| scalar_text(s)),
                    _ => None,
                })
                .collect();
            Some(format!("[{}]", parts?.join(", ")))
        }
        Value::Map(entries) => {
            let parts: Option<Vec<String>> = entries
                .iter()
                .map(|(k, v)| match (&k.value, &v.value) {
                    (Value::Scalar(ks), Value::Scalar(vs))
                        if is_flow_safe(ks) && is_flow_safe(vs) =>
                    {
                        Some(format!("{}: {}", scalar_text(ks), scalar_text(vs)))
                    }
                    _ => None,
                })
                .collect();
            Some(format!("{{{}}}", parts?.join(", ")))
        }
    }
}

/// Whether a block scalar can be written as a literal block (`|2` or `|2-`) and read back as
/// the same text: lines separated by `\n` with no other control character, ending in at most
/// one newline, and not empty.
fn is_literal_safe(s: &Scalar) -> bool {
    s.style == Style::Block
        && s.tag.is_none()
        && s.text.contains('\n')
        && !s.text.ends_with("\n\n")
        && !s.text.trim().is_empty()
        && !s.text.chars().any(|c| c.is_control() && c != '\n')
}

/// A mapping's value at `indent` (the mapping's own indent plus two): a literal block for a
/// block scalar that allows it, with an explicit indentation indicator (the content sits two
/// columns right of the mapping's keys, whatever its first line starts with).
fn write_map_value(out: &mut String, node: &Node, indent: usize) {
    if let Value::Scalar(s) = &node.value {
        if is_literal_safe(s) {
            let body = s.text.strip_suffix('\n');
            out.push_str(if body.is_some() { " |2\n" } else { " |2-\n" });
            let pad = " ".repeat(indent);
            for line in body.unwrap_or(&s.text).split('\n') {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
            return;
        }
    }
    write_value(out, node, indent);
}

/// Longest flow collection written on one line (after its key).
const FLOW_WIDTH: usize = 100;

fn write_value(out: &mut String, node: &Node, indent: usize) {
    // Called after "key:" or "-": writes " value\n" or "\n" + a block.
    match &node.value {
        Value::Scalar(s) => {
            out.push(' ');
            out.push_str(&scalar_text(s));
            out.push('\n');
        }
        Value::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Value::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        _ => {
            if let Some(f) = flow(node).filter(|f| f.len() <= FLOW_WIDTH) {
                out.push(' ');
                out.push_str(&f);
                out.push('\n');
                return;
            }
            out.push('\n');
            write_block(out, node, indent);
        }
    }
}

fn write_block(out: &mut String, node: &Node, indent: usize) {
    let pad = " ".repeat(indent);
    match &node.value {
        Value::Scalar(s) => {
            out.push_str(&pad);
            out.push_str(&scalar_text(s));
            out.push('\n');
        }
        Value::Seq(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match &item.value {
                    Value::Map(entries) if !entries.is_empty() => {
                        if let Some(f) = flow(item).filter(|f| f.len() <= FLOW_WIDTH) {
                            out.push(' ');
                            out.push_str(&f);
                            out.push('\n');
                            continue;
                        }
                        // The first entry on the dash's line, the rest under it.
                        out.push(' ');
                        let mut first = true;
                        for (k, v) in entries {
                            if !first {
                                out.push_str(&pad);
                                out.push_str("  ");
                            }
                            first = false;
                            out.push_str(&key_text(k));
                            out.push(':');
                            write_map_value(out, v, indent + 4);
                        }
                    }
                    _ => write_value(out, item, indent + 2),
                }
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                out.push_str(&pad);
                out.push_str(&key_text(k));
                out.push(':');
                write_map_value(out, v, indent + 2);
            }
        }
    }
}

fn key_text(k: &Node) -> String {
    match &k.value {
        Value::Scalar(s) => scalar_text(s),
        _ => "\"\"".to_string(),
    }
}

/// Writes a node as a YAML document body (no `---`).
pub fn to_string(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(e) if e.is_empty() => out.push_str("{}\n"),
        Value::Seq(v) if v.is_empty() => out.push_str("[]\n"),
        _ => write_block(&mut out, node, 0),
    }
    out
}
