//! Deserialization helpers that keep serde_yaml's error locations precise.
//!
//! serde_yaml attaches a line/column and a field path to an error in the innermost
//! `deserialize_*` call that fails. Validation that runs *after* a value was read (for
//! example `#[serde(try_from)]`) would be attributed to the enclosing node instead. The
//! helpers here therefore validate inside the visitor, while serde_yaml still considers the
//! node being read, so the error points at that node.

use serde::de::{
    self, value::MapAccessDeserializer, Deserialize, Deserializer, MapAccess, Visitor,
};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// Reads a mapping as `R` and converts it with `TryFrom`, reporting a conversion error at the
/// mapping itself (its first line, its path).
pub(crate) fn deserialize_validated<'de, D, R, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: Deserialize<'de>,
    T: TryFrom<R, Error = String>,
{
    struct V<R, T>(&'static str, PhantomData<fn() -> (R, T)>);
    impl<'de, R, T> Visitor<'de> for V<R, T>
    where
        R: Deserialize<'de>,
        T: TryFrom<R, Error = String>,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let raw = R::deserialize(MapAccessDeserializer::new(map))?;
            T::try_from(raw).map_err(de::Error::custom)
        }
    }
    deserializer.deserialize_map(V::<R, T>(expecting, PhantomData))
}

/// Implements `Deserialize` for `$ty` through `$raw` and `TryFrom<$raw>`.
macro_rules! validated_map {
    ($ty:ty, $raw:ty, $expecting:expr) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::api::de::deserialize_validated::<D, $raw, $ty>(d, $expecting)
            }
        }
    };
}
pub(crate) use validated_map;

/// Reads a scalar as a string and parses it with `FromStr`, reporting a parse error at the
/// scalar. YAML numbers and booleans are read as their text (`port: 80` is `"80"`).
pub(crate) fn deserialize_from_str<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct V<T>(&'static str, PhantomData<fn() -> T>);
    impl<'de, T: FromStr<Err = String>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    deserializer.deserialize_str(V::<T>(expecting, PhantomData))
}

/// Implements `Deserialize` for `$ty` through its `FromStr` (whose error is a `String`).
macro_rules! from_str_scalar {
    ($ty:ty, $expecting:expr) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::api::de::deserialize_from_str::<D, $ty>(d, $expecting)
            }
        }
    };
}
pub(crate) use from_str_scalar;

/// A value that can never be constructed: the type of fields that are always rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Never {}

/// Consumes nothing and fails at the current value with `message`, so the error carries the
/// value's line and path.
pub(crate) struct Reject(pub String);

impl<'de> Visitor<'de> for Reject {
    type Value = Never;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_none<E: de::Error>(self) -> Result<Never, E> {
        Err(E::custom(self.0))
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<Never, D::Error> {
        Err(de::Error::custom(self.0))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Never, A::Error> {
        Err(de::Error::custom(self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Never, A::Error> {
        Err(de::Error::custom(self.0))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Never, A::Error> {
        Err(de::Error::custom(self.0))
    }
}

/// A `DeserializeSeed` that fails at the value it is given (see [`Reject`]).
pub(crate) struct RejectSeed(pub String);

impl<'de> de::DeserializeSeed<'de> for RejectSeed {
    type Value = Never;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Never, D::Error> {
        d.deserialize_any(Reject(self.0))
    }
}

/// Defines `fn $fn_name` for `#[serde(deserialize_with)]` on an `Option<Never>` field that
/// this project does not model yet: any value, even an empty one, is an error at the value.
macro_rules! not_supported {
    ($fn_name:ident, $field:expr) => {
        fn $fn_name<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<$crate::api::de::Never>, D::Error> {
            d.deserialize_any($crate::api::de::Reject(format!(
                "not supported yet: {}",
                $field
            )))
            .map(|never| match never {})
        }
    };
}
pub(crate) use not_supported;

/// Defines `fn $fn_name` for `#[serde(deserialize_with)]` on an `Option<Never>` field that the
/// current CRD schema keeps only as `MaxItems=0` (a removed feature): `null` and `[]` are
/// accepted, as the API server accepts them, and any item is the API server's error at the
/// value, followed by `$why`.
macro_rules! removed_list {
    ($fn_name:ident, $why:expr) => {
        fn $fn_name<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<$crate::api::de::Never>, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Option<$crate::api::de::Never>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an empty list")
                }
                fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut n = 0usize;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    if n == 0 {
                        return Ok(None);
                    }
                    Err(serde::de::Error::custom(format!(
                        "Too many: {n}: must have at most 0 items ({})",
                        $why
                    )))
                }
            }
            d.deserialize_any(V)
        }
    };
}
pub(crate) use removed_list;
