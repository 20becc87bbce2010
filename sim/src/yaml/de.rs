//! A serde `Deserializer` over [`Node`] trees that locates every error.
//!
//! As serde_yaml did, the innermost `deserialize_*` call that fails gives the error its
//! position and field path; here the tree is at hand, so an error raised by a visitor after
//! it read the children (a cross-field check, a missing field) still carries the mapping's
//! position and path.
//!
//! Two modes: the scenario format's own fields (YAML 1.2 core schema; any scalar reads as
//! text where a string is wanted, as serde_yaml did) and Kubernetes objects (YAML 1.1, as
//! kubectl reads them; a string field takes only a string, as the API server requires). A
//! type opts into the second by deserializing through [`K8S_OBJECT`]: see
//! [`deserialize_k8s_object`].

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};

use super::{Mark, Node, Resolved, Scalar, Schema, Value};

/// The newtype-struct name through which a `Deserialize` impl asks for Kubernetes-object
/// mode (other deserializers see an ordinary newtype struct and pass it through).
pub const K8S_OBJECT: &str = "$__verdict_private_k8s_object";

/// Reads a Kubernetes object (a mapping with `apiVersion` and `kind`) in Kubernetes mode.
/// Under [`NodeDeserializer`] its `apiVersion` and `kind` entries come first, whatever the
/// order they were written in, so the visitor knows the kind before it meets `spec`.
pub fn deserialize_k8s_object<'de, D, V>(d: D, visitor: V) -> Result<V::Value, D::Error>
where
    D: Deserializer<'de>,
    V: Visitor<'de>,
{
    struct Wrap<V>(V);
    impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
        type Value = V::Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            self.0.expecting(f)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
            d.deserialize_map(self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.0.visit_map(map)
        }
    }
    d.deserialize_newtype_struct(K8S_OBJECT, Wrap(visitor))
}

/// A deserialization error with the position and field path of the node it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(Box<ErrorImpl>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct ErrorImpl {
    message: String,
    mark: Option<Mark>,
    path: Option<String>,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error(Box::new(ErrorImpl {
            message: message.into(),
            mark: None,
            path: None,
        }))
    }

    /// An error at a known node.
    pub fn at(message: impl Into<String>, mark: Mark, path: impl Into<String>) -> Self {
        Error(Box::new(ErrorImpl {
            message: message.into(),
            mark: Some(mark),
            path: Some(path.into()),
        }))
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn mark(&self) -> Option<Mark> {
        self.0.mark
    }

    /// The dotted field path (`spec.ingress[0].toPorts`), empty at the root.
    pub fn path(&self) -> &str {
        self.0.path.as_deref().unwrap_or("")
    }

    /// Gives the error a position and path unless an inner node already did.
    fn locate(mut self, mark: Mark, path: &Path<'_>) -> Self {
        if self.0.mark.is_none() {
            self.0.mark = Some(mark);
            self.0.path = Some(path.to_string());
        }
        self
    }

    /// Prefixes the path (a list item read on its own: `items[3]`).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            let p = self.0.path.take().unwrap_or_default();
            self.0.path = Some(if p.is_empty() {
                prefix.to_string()
            } else if p.starts_with('[') {
                format!("{prefix}{p}")
            } else {
                format!("{prefix}.{p}")
            });
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if !path.is_empty() {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.0.message)?;
        if let Some(m) = self.0.mark {
            write!(f, " at line {} column {}", m.line, m.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }
}

/// Where a node sits in its document, for error paths (rendered only on error).
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Seq { parent: &'a Path<'a>, index: usize },
    Map { parent: &'a Path<'a>, key: &'a str },
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Seq { parent, index } => write!(f, "{parent}[{index}]"),
            Path::Map { parent, key } => match parent {
                Path::Root => f.write_str(key),
                _ => write!(f, "{parent}.{key}"),
            },
        }
    }
}

/// How scalars are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    schema: Schema,
    /// Kubernetes objects: a string field takes only a string.
    strict: bool,
    /// A custom resource (validated by its CRD's OpenAPI schema) rather than a built-in kind
    /// (decoded by Go's encoding/json); they word type errors differently.
    crd: bool,
}

impl Mode {
    /// The scenario format's own fields.
    pub const SCENARIO: Mode = Mode {
        schema: Schema::Core,
        strict: false,
        crd: false,
    };

    /// A Kubernetes object, as kubectl and the API server read it.
    pub fn kubernetes(crd: bool) -> Mode {
        Mode {
            schema: Schema::Yaml11,
            strict: true,
            crd,
        }
    }
}

/// Deserializes one node.
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: Path<'a>,
    mode: Mode,
    /// Present `apiVersion` and `kind` first (a Kubernetes object's own mapping).
    object: bool,
}

impl<'a> NodeDeserializer<'a> {
    pub fn new(node: &'a Node, mode: Mode) -> Self {
        NodeDeserializer {
            node,
            path: Path::Root,
            mode,
            object: false,
        }
    }
}

/// Reads `T` from a node.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &Node, mode: Mode) -> Result<T, Error> {
    T::deserialize(NodeDeserializer::new(node, mode))
}

fn unexpected(node: &Node, schema: Schema) -> Unexpected<'_> {
    match &node.value {
        Value::Seq(_) => Unexpected::Seq,
        Value::Map(_) => Unexpected::Map,
        Value::Scalar(s) => match s.resolve(schema) {
            Resolved::Null => Unexpected::Unit,
            Resolved::Bool(b) => Unexpected::Bool(b),
            Resolved::Int(i) if i < 0 => Unexpected::Signed(i as i64),
            Resolved::Int(i) => Unexpected::Unsigned(i as u64),
            Resolved::Float(f) => Unexpected::Float(f),
            Resolved::Str(s) => Unexpected::Str(s),
        },
    }
}

/// The Kubernetes type of a node, as the API server names it.
fn k8s_type(node: &Node) -> &'static str {
    match &node.value {
        Value::Seq(_) => "array",
        Value::Map(_) => "object",
        Value::Scalar(s) => s.resolve(Schema::Yaml11).k8s_type(),
    }
}

/// Go's encoding/json name for a JSON value's kind ("cannot unmarshal number into ...").
fn json_kind(t: &str) -> &'static str {
    match t {
        "integer" | "number" => "number",
        "boolean" => "bool",
        "array" => "array",
        "object" => "object",
        "null" => "null",
        _ => "string",
    }
}

/// Why a plain scalar is not the string its text looks like, and how to write it.
fn quote_hint(s: &Scalar) -> String {
    match s.resolve(Schema::Yaml11) {
        Resolved::Bool(b) => format!(
            " (kubectl reads YAML 1.1, where an unquoted {:?} is the boolean {b}: quote it, {:?})",
            s.text, s.text
        ),
        Resolved::Null => format!(" (an unquoted {:?} is null: quote it)", s.text),
        _ => format!(" (quote it: {:?})", s.text),
    }
}

impl NodeDeserializer<'_> {
    fn scalar(&self) -> Option<&Scalar> {
        self.node.as_scalar()
    }

    /// The error the API server gives for a value of the wrong type.
    fn type_error(&self, want: &'static str) -> Error {
        let got = k8s_type(self.node);
        let mut msg = if self.mode.crd {
            format!("Invalid value: \"{got}\": must be of type {want}: \"{got}\"")
        } else {
            let go = match want {
                "integer" => "int32",
                "boolean" => "bool",
                "object" => "map",
                other => other,
            };
            format!(
                "json: cannot unmarshal {} into Go value of type {go}",
                json_kind(got)
            )
        };
        if want == "string" {
            if let Some(s) = self.scalar() {
                msg.push_str(&quote_hint(s));
            }
        }
        Error::new(msg)
    }

    fn visit_any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Scalar(s) => match s.resolve(self.mode.schema) {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Int(i) => match i64::try_from(i) {
                    Ok(v) if v < 0 => visitor.visit_i64(v),
                    _ => match u64::try_from(i) {
                        Ok(u) => visitor.visit_u64(u),
                        Err(_) => visitor.visit_i128(i),
                    },
                },
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str(t) => visitor.visit_str(t),
            },
            Value::Seq(_) => self.visit_seq_node(visitor),
            Value::Map(_) => self.visit_map_node(visitor),
        }
    }

    /// In Kubernetes mode a null where a list or an object is wanted reads as empty: Go's
    /// encoding/json leaves a nil slice or map, and a CRD's structural schema prunes the null.
    fn null_is_empty(&self) -> bool {
        self.mode.strict
            && self
                .scalar()
                .is_some_and(|s| s.resolve(self.mode.schema) == Resolved::Null)
    }

    fn visit_seq_node<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items: &[Node] = match &self.node.value {
            Value::Seq(items) => items,
            _ if self.null_is_empty() => &[],
            _ => return Err(self.type_mismatch(&visitor, "array")),
        };
        let mut access = SeqAcc {
            items,
            next: 0,
            path: &self.path,
            mode: self.mode,
        };
        let v = visitor.visit_seq(&mut access)?;
        if access.next < items.len() {
            return Err(de::Error::invalid_length(items.len(), &"fewer elements"));
        }
        Ok(v)
    }

    fn visit_map_node<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let entries: &[(Node, Node)] = match &self.node.value {
            Value::Map(entries) => entries,
            _ if self.null_is_empty() => &[],
            _ => return Err(self.type_mismatch(&visitor, "object")),
        };
        let order: Vec<usize> = if self.object {
            let first = ["apiVersion", "kind"];
            let pos = |k: &Node| {
                k.as_scalar()
                    .and_then(|s| first.iter().position(|f| *f == s.text))
            };
            let mut head: Vec<usize> = (0..entries.len())
                .filter(|&i| pos(&entries[i].0).is_some())
                .collect();
            head.sort_by_key(|&i| pos(&entries[i].0));
            head.extend((0..entries.len()).filter(|&i| pos(&entries[i].0).is_none()));
            head
        } else {
            (0..entries.len()).collect()
        };
        let mut access = MapAcc {
            entries,
            order,
            next: 0,
            path: &self.path,
            mode: self.mode,
        };
        visitor.visit_map(&mut access)
    }

    fn type_mismatch<'de, V: Visitor<'de>>(&self, visitor: &V, want: &'static str) -> Error {
        if self.mode.strict {
            self.type_error(want)
        } else {
            de::Error::invalid_type(unexpected(self.node, self.mode.schema), visitor)
        }
    }

    fn visit_string<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let Some(s) = self.scalar() else {
            return Err(self.type_mismatch(&visitor, "string"));
        };
        if !self.mode.strict {
            return visitor.visit_str(&s.text);
        }
        match s.resolve(self.mode.schema) {
            Resolved::Str(t) => visitor.visit_str(t),
            _ => Err(self.type_error("string")),
        }
    }

    fn visit_integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.scalar().map(|s| s.resolve(self.mode.schema)) {
            Some(Resolved::Int(i)) => match (i64::try_from(i), u64::try_from(i)) {
                (Ok(v), _) => visitor.visit_i64(v),
                (_, Ok(u)) => visitor.visit_u64(u),
                _ => visitor.visit_i128(i),
            },
            _ => Err(self.type_mismatch(&visitor, "integer")),
        }
    }
}

macro_rules! integer_methods {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let (mark, path) = (self.node.mark, self.path);
            self.visit_integer(visitor).map_err(|e| e.locate(mark, &path))
        })*
    };
}

impl<'de> Deserializer<'de> for NodeDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        self.visit_any(visitor).map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        let r = match self.scalar().map(|s| s.resolve(self.mode.schema)) {
            Some(Resolved::Bool(b)) => visitor.visit_bool(b),
            _ => Err(self.type_mismatch(&visitor, "boolean")),
        };
        r.map_err(|e| e.locate(mark, &path))
    }

    integer_methods!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        let r = match self.scalar().map(|s| s.resolve(self.mode.schema)) {
            Some(Resolved::Float(f)) => visitor.visit_f64(f),
            Some(Resolved::Int(i)) => visitor.visit_f64(i as f64),
            _ => Err(self.type_mismatch(&visitor, "number")),
        };
        r.map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        self.visit_string(visitor)
            .map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        let null = self
            .scalar()
            .is_some_and(|s| s.resolve(self.mode.schema) == Resolved::Null);
        let r = if null {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        };
        r.map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        let r = match self.scalar().map(|s| s.resolve(self.mode.schema)) {
            Some(Resolved::Null) => visitor.visit_unit(),
            _ => Err(self.type_mismatch(&visitor, "null")),
        };
        r.map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        let r = if name == K8S_OBJECT {
            let crd = self
                .node
                .get("apiVersion")
                .and_then(Node::as_str)
                .is_some_and(is_custom_resource_api);
            visitor.visit_newtype_struct(NodeDeserializer {
                node: self.node,
                path: self.path,
                mode: Mode::kubernetes(crd),
                object: true,
            })
        } else {
            visitor.visit_newtype_struct(self)
        };
        r.map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        self.visit_seq_node(visitor)
            .map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        self.visit_map_node(visitor)
            .map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        let r = match self.scalar() {
            Some(s)
                if !self.mode.strict || matches!(s.resolve(self.mode.schema), Resolved::Str(_)) =>
            {
                visitor.visit_enum(UnitEnum(&s.text))
            }
            Some(_) => Err(self.type_error("string")),
            None => Err(self.type_mismatch(&visitor, "string")),
        };
        r.map_err(|e| e.locate(mark, &path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// Whether an `apiVersion` names a custom resource (an API group outside Kubernetes' own).
pub fn is_custom_resource_api(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => false,
        Some((group, _)) => {
            !(group.ends_with(".k8s.io")
                || matches!(
                    group,
                    "apps" | "batch" | "policy" | "autoscaling" | "extensions"
                ))
        }
    }
}

struct UnitEnum<'a>(&'a str);

impl<'de> EnumAccess<'de> for UnitEnum<'_> {
    type Error = Error;
    type Variant = UnitOnly;
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, UnitOnly), Error> {
        let v = seed.deserialize(self.0.into_deserializer())?;
        Ok((v, UnitOnly))
    }
}

struct UnitOnly;

impl<'de> VariantAccess<'de> for UnitOnly {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _: S) -> Result<S::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"a newtype variant",
        ))
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"a tuple variant",
        ))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"a struct variant",
        ))
    }
}

struct SeqAcc<'a> {
    items: &'a [Node],
    next: usize,
    path: &'a Path<'a>,
    mode: Mode,
}

impl<'de> SeqAccess<'de> for SeqAcc<'_> {
    type Error = Error;
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some(node) = self.items.get(self.next) else {
            return Ok(None);
        };
        let index = self.next;
        self.next += 1;
        let path = Path::Seq {
            parent: self.path,
            index,
        };
        seed.deserialize(NodeDeserializer {
            node,
            path,
            mode: self.mode,
            object: false,
        })
        .map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct MapAcc<'a> {
    entries: &'a [(Node, Node)],
    order: Vec<usize>,
    next: usize,
    path: &'a Path<'a>,
    mode: Mode,
}

impl MapAcc<'_> {
    fn current(&self) -> &(Node, Node) {
        &self.entries[self.order[self.next - 1]]
    }
}

/// A mapping key. In Kubernetes mode a plain key that YAML 1.1 reads as a boolean or null is
/// refused: sigs.k8s.io/yaml would turn it into the JSON key "true" or "null".
struct KeyDeserializer<'a> {
    node: &'a Node,
    path: Path<'a>,
    mode: Mode,
}

impl<'de> Deserializer<'de> for KeyDeserializer<'_> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mark, path) = (self.node.mark, self.path);
        let Some(s) = self.node.as_scalar() else {
            return Err(Error::new("a mapping key must be a scalar").locate(mark, &path));
        };
        if self.mode.strict {
            match s.resolve(Schema::Yaml11) {
                Resolved::Bool(_) | Resolved::Null => {
                    let json = match s.resolve(Schema::Yaml11) {
                        Resolved::Bool(b) => b.to_string(),
                        _ => "null".to_string(),
                    };
                    return Err(Error::new(format!(
                        "the unquoted key {:?} is read by kubectl (YAML 1.1) as the key {json:?}: quote it",
                        s.text
                    ))
                    .locate(mark, &path));
                }
                _ => {}
            }
        }
        visitor
            .visit_str::<Error>(&s.text)
            .map_err(|e| e.locate(mark, &path))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for MapAcc<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(&i) = self.order.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let key = &self.entries[i].0;
        let text = key.as_scalar().map_or("", |s| s.text.as_str());
        let path = Path::Map {
            parent: self.path,
            key: text,
        };
        seed.deserialize(KeyDeserializer {
            node: key,
            path,
            mode: self.mode,
        })
        .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (key, value) = self.current();
        let text = key.as_scalar().map_or("", |s| s.text.as_str());
        let path = Path::Map {
            parent: self.path,
            key: text,
        };
        seed.deserialize(NodeDeserializer {
            node: value,
            path,
            mode: self.mode,
            object: false,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.order.len() - self.next)
    }
}
